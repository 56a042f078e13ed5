"""dlib's face ResNet in PyTorch: against dlib-bin itself on real LFW chips, the grids and
head split, gradients, and the ``.dat`` reader's facts and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xcos_xai.models import create_backbone, list_backbones
from xcos_xai.models.dlib_dat import model_file, parse_dlib_dat, read_dlib_dat
from xcos_xai.models.dlib_resnet import (
    DLIB_MODEL_FILE,
    ConvAffine,
    DlibResNet,
    add_zero_padded,
    dlib_resnet_v1_layout,
)

dlib = pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def dat_path():
    return model_file(DLIB_MODEL_FILE)


@pytest.fixture(scope="module")
def port():
    return create_backbone("dlib_resnet_v1", pretrained=True).eval()


@pytest.fixture(scope="module")
def lfw_chips(lfw_root):
    """``(N, 150, 150, 3)`` uint8 chips of 12 different LFW people, made by dlib itself
    (HOG detector, 5-point landmarks, ``get_face_chip(size=150, padding=0.25)``)."""
    images = lfw_root / "lfw-deepfunneled"
    people = sorted(p for p in images.iterdir() if p.is_dir())[::480][:12]
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))
    chips = []
    for person in people:
        img = dlib.load_rgb_image(str(sorted(person.glob("*.jpg"))[0]))
        faces = detector(img, 1)
        if faces:
            box = max(faces, key=lambda r: r.area())
            chips.append(dlib.get_face_chip(img, predictor(img, box), size=150, padding=0.25))
    assert len(chips) >= 8, f"dlib found faces in only {len(chips)} of {len(people)} photos"
    return np.stack(chips)


def test_descriptor_equals_dlibs_own(port, lfw_chips, dat_path):
    facerec = dlib.face_recognition_model_v1(str(dat_path))
    reference = np.array([np.array(facerec.compute_face_descriptor(c)) for c in lfw_chips])
    x = port.input_spec.normalize(torch.from_numpy(lfw_chips).permute(0, 3, 1, 2))
    with torch.no_grad():
        ours = port(x).double().numpy()
    worst = np.abs(ours - reference).max()
    print(f"max |port - dlib| over {len(lfw_chips)} LFW chips: {worst:.2e}")
    assert worst <= 1e-4
    nchw = DlibResNet(weights=dat_path, channels_last=False).eval()  # the plain layout
    with torch.no_grad():
        assert np.abs(nchw(x).double().numpy() - reference).max() <= 1e-4
    # dlib's own protocol number survives: distances agree far below its 0.6 threshold.
    d_ours = np.linalg.norm(ours[:, None] - ours[None], axis=-1)
    d_ref = np.linalg.norm(reference[:, None] - reference[None], axis=-1)
    assert np.abs(d_ours - d_ref).max() <= 1e-4


@pytest.mark.parametrize("grid,shape", [("8x8", (128, 8, 8)), ("4x4", (256, 4, 4))])
def test_grid_and_head_compose_to_the_descriptor(grid, shape):
    model = create_backbone("dlib_resnet_v1", pretrained=True, grid=grid).eval()
    assert (model.grid_channels, *model.grid_size) == shape
    assert model.embedding_dim == 128
    assert model.input_spec.size == (150, 150) and model.input_spec.channel_order == "RGB"
    assert model.input_spec.mean == (122.782, 117.001, 104.298)
    assert model.input_spec.std == (256.0, 256.0, 256.0)
    x = torch.randn(2, 3, 150, 150, generator=torch.Generator().manual_seed(0)) * 0.3
    with torch.no_grad():
        g = model.forward_features(x)
        assert tuple(g.shape) == (2, *shape)
        embedding = model(x)
        assert tuple(embedding.shape) == (2, 128)
        torch.testing.assert_close(model.forward_head(g), embedding, rtol=0, atol=1e-6)
        everything = model.forward_all(x)
    assert set(everything) == {"8x8", "4x4", "4x4-local", "embedding"}
    assert tuple(everything["8x8"].shape) == (2, 128, 8, 8)
    assert tuple(everything["4x4"].shape) == (2, 256, 4, 4)
    torch.testing.assert_close(everything[grid], g, rtol=0, atol=1e-6)
    torch.testing.assert_close(everything["embedding"], embedding, rtol=0, atol=1e-6)


@pytest.mark.parametrize("pretrained", [True, False])
def test_local_descriptors_average_exactly_to_the_descriptor(pretrained):
    """Grid "4x4-local": 16 local descriptors whose mean is dlib's descriptor, and the
    split computed by hand from the 4x4 map (the unit's branch lands on the top-left cell
    of the 2x2 map only; the other quadrants are plain means)."""
    torch.manual_seed(0)
    local = create_backbone("dlib_resnet_v1", pretrained=pretrained, grid="4x4-local").eval()
    plain = create_backbone("dlib_resnet_v1", pretrained=False).eval()
    plain.load_state_dict(local.state_dict())
    assert (local.grid_channels, *local.grid_size) == (128, 4, 4)
    x = torch.randn(3, 3, 150, 150, generator=torch.Generator().manual_seed(1)) * 0.3
    with torch.no_grad():
        e = local.forward_features(x)
        descriptor = plain(x)
        torch.testing.assert_close(e.mean(dim=(2, 3)), descriptor, rtol=0, atol=1e-5)
        torch.testing.assert_close(local(x), descriptor, rtol=0, atol=1e-5)
        g = plain.forward_features(x)
        assert (g >= 0).all()  # a relu output: why the three plain quadrants stay linear
        unit = plain.units[-1]
        branch = unit.conv2(F.relu(unit.conv1(g)))[:, :, 0, 0]
        quads = g.unfold(2, 2, 2).unfold(3, 2, 2).mean(dim=(-1, -2))  # (B, C, 2, 2)
        top_left = F.relu(quads[:, :, 0, 0] + branch)
        by_hand = plain.fc((top_left + quads[:, :, 0, 1] + quads[:, :, 1, 0]
                            + quads[:, :, 1, 1]) / 4)
        torch.testing.assert_close(by_hand, descriptor, rtol=0, atol=1e-5)
        # cells outside the top-left quadrant are the fc of the cell itself
        torch.testing.assert_close(e[:, :, 3, 3], plain.fc(g[:, :, 3, 3]), rtol=0, atol=1e-5)
        torch.testing.assert_close(plain.forward_all(x)["4x4-local"], e, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(B, 256, 4, 4\) map"):
        local.local_descriptors(torch.zeros(1, 128, 8, 8))


def test_wrong_shapes_are_one_clear_error(port):
    with pytest.raises(ValueError, match=r"\(B, 3, 150, 150\)"):
        port(torch.zeros(1, 3, 112, 112))
    with pytest.raises(ValueError, match=r"\(B, 256, 4, 4\)"):
        port.forward_head(torch.zeros(1, 128, 8, 8))
    with pytest.raises(ValueError, match="grid"):
        DlibResNet(grid="2x2")


def test_gradients_reach_the_input_and_the_weights(port):
    x = torch.randn(1, 3, 150, 150, generator=torch.Generator().manual_seed(1)) * 0.3
    x.requires_grad_(True)
    port.zero_grad()
    port(x).pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    trainable = dict(port.named_parameters())
    assert len(trainable) == 29 * 2 + 1  # conv weights and biases, the fc's weight
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.values())
    port.zero_grad()


def test_conv_affine_folds_the_affine_and_follows_weight_changes():
    conv = ConvAffine(2, 3, (3, 3), (1, 1), (1, 1))
    with torch.no_grad():
        conv.scale.copy_(torch.tensor([1.0, -2.0, 0.5]))
        conv.shift.copy_(torch.tensor([0.1, 0.2, -0.3]))
    x = torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(3))

    def conv_then_affine():  # dlib's order: convolution, then the per-channel affine
        y = F.conv2d(x, conv.weight, conv.bias, padding=1)
        return y * conv.scale.view(1, -1, 1, 1) + conv.shift.view(1, -1, 1, 1)

    with torch.no_grad():
        torch.testing.assert_close(conv(x), conv_then_affine())
        conv(x.contiguous(memory_format=torch.channels_last))  # the other cached layout
        conv.weight.mul_(2.0)  # an optimiser step edits in place: the cache must notice
        torch.testing.assert_close(conv(x), conv_then_affine())
        conv.shift.add_(1.0)  # ... and so may a buffer edit
        torch.testing.assert_close(conv(x), conv_then_affine())
    assert conv(x).requires_grad  # with gradients on, the filters stay in the graph


def test_add_prev_zero_pads_at_the_end():
    a = torch.arange(1.0, 5.0).view(1, 1, 2, 2)  # 1 channel, 2x2
    b = torch.full((1, 2, 3, 3), 10.0)  # 2 channels, 3x3
    out = add_zero_padded(a, b)
    expected = torch.full((1, 2, 3, 3), 10.0)
    expected[0, 0, :2, :2] += torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(add_zero_padded(b, a), expected)


def test_file_facts(dat_path):
    net = read_dlib_dat(dat_path)
    assert net.loss == "loss_metric_2"
    assert net.distance_threshold == pytest.approx(0.6)
    assert net.input_layer == "input_rgb_image_sized" and net.input_size == (150, 150)
    np.testing.assert_allclose(net.input_mean, (122.782, 117.001, 104.298), atol=1e-4)
    assert len(net.layers) == 108
    kinds = [layer.kind for layer in net.layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29
    assert kinds.count("add_prev") == 14 and kinds.count("fc") == 1
    assert net.layers[0].params["weight"].shape == (32, 3, 7, 7)
    assert net.layers[-1].params["weight"].shape == (128, 256)
    assert "bias" not in net.layers[-1].params
    # The random-init layout is the file's, kind by kind and setting by setting.
    layout = dlib_resnet_v1_layout()
    assert [r.kind for r in layout] == kinds
    for mine, theirs in zip(layout, net.layers):
        assert {k: theirs.attrs[k] for k in mine.attrs} == mine.attrs
    n_params = sum(p.numel() for p in DlibResNet().parameters())
    assert n_params == pytest.approx(5.6e6, rel=0.01)


def test_random_init_and_safetensors_round_trip(port, tmp_path):
    from safetensors.torch import save_file

    fresh = create_backbone("dlib_resnet_v1", pretrained=False)
    assert fresh.state_dict().keys() == port.state_dict().keys()
    assert not torch.equal(fresh.fc.weight, port.fc.weight)
    path = tmp_path / "dlib.safetensors"
    save_file(port.state_dict(), str(path))
    loaded = create_backbone("dlib_resnet_v1", pretrained=str(path)).eval()
    for name, value in port.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert "dlib_resnet_v1" in list_backbones()


def test_reader_rejects_truncated_and_garbage_files(dat_path, tmp_path):
    data = dat_path.read_bytes()
    for name, content, why in [
        ("truncated.dat", data[: len(data) // 2], "truncated"),
        ("header_only.dat", data[:40], "truncated"),
        ("garbage.dat", np.random.default_rng(0).bytes(4096), "not a valid dlib network"),
        ("text.dat", b"<html>404 not found</html>", "not a valid dlib network"),
        ("trailing.dat", data + b"\x00\x01", "unexpected bytes after the last layer"),
        ("empty.dat", b"", "truncated"),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=why) as err:
            read_dlib_dat(path)
        assert str(path) in str(err.value)
    # A corrupt layer name is named as such, with the record it happened in.
    bad = bytearray(data)
    at = data.index(b"con_4")
    bad[at:at + 5] = b"zzz_9"
    with pytest.raises(ValueError, match=r"unknown layer 'zzz_9'.*layer record 0"):
        parse_dlib_dat(bytes(bad), "bad-name.dat")
    with pytest.raises(FileNotFoundError, match="missing.dat"):
        read_dlib_dat(tmp_path / "missing.dat")
    with pytest.raises(ValueError, match="trailing.dat"):  # the factory passes it on
        create_backbone("dlib_resnet_v1", pretrained=str(tmp_path / "trailing.dat"))


def test_model_file_names_the_package_to_install():
    with pytest.raises(FileNotFoundError, match="pip install"):
        model_file("no_such_model.dat")
