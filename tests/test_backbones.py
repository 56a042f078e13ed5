"""IResNet (arcface_torch) and IR-SE (TreB1eN) backbones, and safe checkpoint loading.

The layouts are checked against ``reference/state_dict_layouts.json`` next to the data
directory (``$XCOS_XAI_DATA/../reference``): names and shapes, in order, of the checkpoints
users already have, so that they load with ``strict=True``.
"""

from __future__ import annotations

import os
import pickle
import shlex

import pytest
import torch
from _layouts import random_state_dict

from xcos_xai.models import create_backbone, list_backbones
from xcos_xai.models.checkpoints import (
    CheckpointError,
    StateDictMismatchError,
    UnsafeCheckpointError,
    load_into,
    load_state_dict_file,
    unwrap_state_dict,
)
from xcos_xai.models.irse import IR_UNITS, IRNet
from xcos_xai.models.registry import ARCFACE_BGR, ARCFACE_RGB

pytestmark = pytest.mark.usefixtures("one_thread")

# Registry name -> entry of state_dict_layouts.json.
LAYOUTS = {
    "iresnet18": "insightface_arcface_torch/iresnet18",
    "iresnet34": "insightface_arcface_torch/iresnet34",
    "iresnet50": "insightface_arcface_torch/iresnet50",
    "iresnet100": "insightface_arcface_torch/iresnet100",
    "ir_se50": "treb1en_ir_se50/model_ir_se50.pth",
}





def assert_same_tensors(model, state):
    own = model.state_dict()
    assert list(own) == list(state)
    for key, value in state.items():
        assert torch.equal(own[key], value), key


# --------------------------------------------------------------------------- layouts


def test_registry_names():
    names = set(list_backbones())
    assert {"iresnet18", "iresnet34", "iresnet50", "iresnet100", "ir_se50", "ir50",
            "ir_se100"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("name", list_backbones())
def test_every_registered_backbone_keeps_the_contract(name):
    """Every registry entry (a new one too, without editing this test): the grid and the
    embedding have the advertised shapes and forward == forward_head(forward_features)."""
    torch.manual_seed(0)
    model = create_backbone(name, pretrained=False).eval()
    h, w = model.input_spec.size
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        grid = model.forward_features(x)
        emb = model.forward_head(grid)
        assert grid.shape == (1, model.grid_channels, *model.grid_size)
        assert emb.shape == (1, model.embedding_dim)
        # (random deep nets in eval mode may overflow: NaN where the two paths both give NaN)
        torch.testing.assert_close(model(x), emb, equal_nan=True)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_layout_equals_reference(name, layouts):
    model = create_backbone(name)
    got = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert got == layouts[LAYOUTS[name]]
    assert model.grid_channels == 512 and tuple(model.grid_size) == (7, 7)
    assert model.embedding_dim == 512
    assert model.input_spec == (ARCFACE_BGR if name == "ir_se50" else ARCFACE_RGB)


def test_ir_variants_follow_the_ir_se50_layout(layouts):
    """IR-50 is IR-SE-50 without the SE convs; IR-SE-100 has 3/13/30/3 units."""
    reference = [(k, s) for k, s in layouts[LAYOUTS["ir_se50"]] if ".res_layer.5." not in k]
    ir50 = create_backbone("ir50")
    assert [(k, list(v.shape)) for k, v in ir50.state_dict().items()] == reference
    assert IR_UNITS[100] == (3, 13, 30, 3) and IR_UNITS[152] == (3, 8, 36, 3)
    assert len(IRNet(IR_UNITS[100]).body) == sum(IR_UNITS[100])


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_arcface_torch_checkpoint_loads_strictly(fmt, layouts, tmp_path):
    state = random_state_dict(layouts[LAYOUTS["iresnet18"]])
    path = tmp_path / f"backbone.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    model = create_backbone("iresnet18", pretrained=str(path))
    assert_same_tensors(model, state)


def test_common_wrappers_are_unwrapped(tmp_path):
    state = {"conv1.weight": torch.randn(64, 3, 3, 3), "fc.bias": torch.randn(512)}
    wrapped = [
        {"state_dict": state, "epoch": 3, "arch": "r18"},
        {"model": {"state_dict": state}},
        {f"module.{k}": v for k, v in state.items()},  # nn.DataParallel
        {"state_dict": {f"module.{k}": v for k, v in state.items()}, "optimizer": {}},
    ]
    for obj in wrapped:
        got = unwrap_state_dict(obj)
        assert list(got) == list(state) and all(got[k] is state[k] for k in state)
    path = tmp_path / "wrapped.pth"
    torch.save(wrapped[0], path)
    assert list(load_state_dict_file(path)) == list(state)


def test_treb1en_ir_se50_checkpoint_loads_strictly(layouts, tmp_path):
    state = random_state_dict(layouts[LAYOUTS["ir_se50"]], seed=1)
    path = tmp_path / "model_ir_se50.pth"
    torch.save(state, path)
    model = create_backbone("ir_se50", pretrained=path)
    assert_same_tensors(model, state)


def test_pretrained_true_needs_a_path():
    with pytest.raises(ValueError, match="path"):
        create_backbone("iresnet18", pretrained=True)


def test_wrong_layout_reports_everything_in_one_error(layouts):
    """Loading arcface_torch weights into IR-SE-50: missing, unexpected and a layout hint."""
    state = random_state_dict(layouts[LAYOUTS["iresnet18"]])
    with pytest.raises(StateDictMismatchError) as err:
        load_into(IRNet(IR_UNITS[50]), state)
    message = str(err.value)
    assert "missing key(s)" in message and "unexpected key(s)" in message
    assert "input_layer.0.weight" in message and "conv1.weight" in message
    assert "arcface_torch iresnet18" in message


def test_shape_mismatch_is_reported_even_when_not_strict():
    model = create_backbone("iresnet18")
    state = model.state_dict()
    state["fc.weight"] = torch.zeros(256, 25088)
    del state["features.bias"]
    with pytest.raises(StateDictMismatchError, match=r"fc\.weight: \(256, 25088\)"):
        load_into(model, state, strict=False)
    state["fc.weight"] = model.fc.weight.detach().clone()
    report = load_into(model, state, strict=False)
    assert report.missing_keys == ["features.bias"] and report.unexpected_keys == []


class _RunsAShellCommand:
    """A pickle payload: unpickling it would run ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


@pytest.mark.parametrize("writer", ["torch_save", "raw_pickle"])
def test_malicious_pickle_is_refused_without_running(writer, tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "backbone.pth"
    payload = {"conv1.weight": torch.zeros(64, 3, 3, 3), "x": _RunsAShellCommand(marker)}
    if writer == "torch_save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_state_dict_file(path)
    message = str(err.value)
    assert "code or Python objects beyond tensors" in message
    assert "never unpickles" in message and "safetensors" in message
    assert isinstance(err.value, ValueError)
    with pytest.raises(UnsafeCheckpointError):
        create_backbone("iresnet18", pretrained=path)
    assert not marker.exists()


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_state_dict_file(tmp_path / "nope.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_state_dict_file(text)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_state_dict_file(bad)
    meta = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, meta)
    with pytest.raises(CheckpointError, match="holds no state dict.*'epoch': int"):
        load_state_dict_file(meta)
    with pytest.raises(CheckpointError, match="single tensor"):
        unwrap_state_dict(torch.zeros(3))


# --------------------------------------------------------------------------- forward


def test_iresnet18_forward_shapes_and_gradients():
    torch.manual_seed(0)
    model = create_backbone("iresnet18").train()
    x = torch.randn(2, 3, 112, 112, requires_grad=True)
    grid = model.forward_features(x)
    assert grid.shape == (2, 512, 7, 7)
    emb = model.forward_head(grid)
    assert emb.shape == (2, 512)
    emb.pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        # arcface_torch's head: bn2 -> flatten -> dropout -> fc -> features.
        by_hand = model.features(model.fc(torch.flatten(model.bn2(grid), 1)))
        torch.testing.assert_close(model.forward_head(grid), by_hand)


def test_iresnet_options():
    model = create_backbone("iresnet18", dropout=0.2, num_features=128, fp16=True)
    assert model.embedding_dim == 128 and model.dropout.p == 0.2 and model.fp16
    assert not model.features.weight.requires_grad  # fixed at 1, as in arcface_torch
    with torch.no_grad():  # the head under autocast still returns float32 (fc in float)
        emb = model.eval().forward_head(torch.randn(1, 512, 7, 7))
    assert emb.shape == (1, 128) and emb.dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(B, 3, 112, 112\)"):
        model.forward_features(torch.zeros(1, 3, 96, 96))
    zero = create_backbone("iresnet18", zero_init_residual=True)
    assert all(block.bn3.weight.abs().sum() == 0 for block in zero.layer1)


def test_ir_se50_forward_shapes_and_gradients():
    torch.manual_seed(0)
    model = create_backbone("ir_se50").eval()
    x = torch.randn(1, 3, 112, 112, requires_grad=True)
    grid = model.forward_features(x)
    assert grid.shape == (1, 512, 7, 7)
    emb = model.forward_head(grid)
    assert emb.shape == (1, 512)
    emb.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\(B, 512, 7, 7\)"):
        model.forward_head(torch.zeros(1, 256, 7, 7))
