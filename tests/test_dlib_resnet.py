"""dlib's face ResNet in PyTorch against dlib itself, and the .dat reader's errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xcos_xai.models import create_backbone
from xcos_xai.models.dlib_dat import model_file, read_dlib_network
from xcos_xai.models.dlib_resnet import DlibResNet

dlib = pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def port():
    return create_backbone("dlib_resnet_v1", pretrained=True).eval()


@pytest.fixture(scope="module")
def lfw_chips(lfw_root):
    """10 real LFW chips made by dlib itself (HOG detector, 5 landmarks, get_face_chip)."""
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))
    chips = []
    for path in sorted((lfw_root / "lfw-deepfunneled").glob("A*/*.jpg"))[:40:4]:
        img = dlib.load_rgb_image(str(path))
        faces = det(img, 1)
        if faces:
            chips.append(dlib.get_face_chip(img, sp(img, faces[0]), size=150, padding=0.25))
    assert len(chips) >= 8
    return np.stack(chips)


def test_descriptor_equals_dlib(port, lfw_chips):
    facerec = dlib.face_recognition_model_v1(
        str(model_file("dlib_face_recognition_resnet_model_v1.dat")))
    reference = np.array([np.array(facerec.compute_face_descriptor(c)) for c in lfw_chips])
    x = port.input_spec.normalize(torch.from_numpy(lfw_chips).permute(0, 3, 1, 2))
    with torch.no_grad():
        ours = port(x).numpy()
    assert np.abs(ours - reference).max() <= 1e-4


@pytest.mark.parametrize("grid,shape", [("8x8", (128, 8, 8)), ("4x4", (256, 4, 4))])
def test_grids_and_head_compose_to_the_descriptor(grid, shape):
    torch.manual_seed(0)
    model = create_backbone("dlib_resnet_v1", pretrained=True, grid=grid).eval()
    x = torch.randn(2, 3, 150, 150) * 0.3
    with torch.no_grad():
        g = model.forward_features(x)
        assert tuple(g.shape[1:]) == shape == (model.grid_channels, *model.grid_size)
        torch.testing.assert_close(model.forward_head(g), model(x))
        everything = model.forward_all(x)
        torch.testing.assert_close(everything[grid], g)
        torch.testing.assert_close(everything["embedding"], model(x))


def test_gradients_reach_the_input(port):
    x = torch.randn(1, 3, 150, 150, requires_grad=True)
    port.forward_features(x).sum().backward()
    assert x.grad.abs().sum() > 0


def test_file_structure_matches_the_published_facts():
    net = read_dlib_network(model_file("dlib_face_recognition_resnet_model_v1.dat"))
    assert len(net.layers) == 108
    assert sum(layer.kind == "con" for layer in net.layers) == 29
    assert net.input_size == (150, 150)
    assert net.distance_threshold == pytest.approx(0.6)
    np.testing.assert_allclose(net.input_mean, (122.782, 117.001, 104.298), atol=1e-3)
    assert sum(p.numel() for p in DlibResNet().parameters()) == pytest.approx(5.6e6, rel=0.02)


def test_reader_rejects_truncated_and_garbage_files(tmp_path):
    data = model_file("dlib_face_recognition_resnet_model_v1.dat").read_bytes()
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.dat.*truncated"):
        read_dlib_network(truncated)
    garbage = tmp_path / "garbage.dat"
    garbage.write_bytes(b"\x7f" * 100)
    with pytest.raises(ValueError, match="garbage.dat"):
        read_dlib_network(garbage)
    with pytest.raises(FileNotFoundError):
        read_dlib_network(tmp_path / "missing.dat")
