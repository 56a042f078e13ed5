"""Loading the released xCos checkpoints (official layout) into our XCosModel.

The test writes its own checkpoint in the official layout (random weights with the names and
shapes of ``reference/state_dict_layouts.json``), loads it strictly, and recomputes the
score from the file's tensors with plain functional ops.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _layouts import random_state_dict

from xcos_xai.core import XCosModel
from xcos_xai.models.checkpoints import (
    CheckpointError,
    StateDictMismatchError,
    load_into,
    strip_prefix,
)
from xcos_xai.models.official_release import (
    OFFICIAL_THRESHOLD,
    build_official_xcos,
    from_official_state_dict,
    load_official_xcos,
    to_official_state_dict,
)
from xcos_xai.models.registry import ARCFACE_BGR

pytestmark = pytest.mark.usefixtures("one_thread")

OFFICIAL = "official_xcos_release/checkpoint['state_dict']"






@pytest.fixture(scope="module")
def official(layouts, tmp_path_factory):
    """(path, state dict) of a checkpoint written like the release: {'state_dict': sd}."""
    state = random_state_dict(layouts[OFFICIAL])
    path = tmp_path_factory.mktemp("official") / "20200217_accu_9931_Arcface.pth"
    torch.save({"state_dict": state}, path)
    return path, state


@pytest.fixture(scope="module")
def loaded(official):
    return load_official_xcos(official[0])


def test_architecture_layout_equals_reference(layouts):
    model = build_official_xcos()
    got = [[k, list(v.shape)] for k, v in to_official_state_dict(model).items()]
    assert got == layouts[OFFICIAL]
    assert model.input_spec == ARCFACE_BGR


def test_loads_every_tensor_unchanged(official, loaded):
    _, state = official
    assert isinstance(loaded, XCosModel) and not loaded.training
    parts = {  # our submodule -> its prefix in the file
        loaded.backbone: "backbone.", loaded.head.adapter.conv1x1: "backbone.conv1x1.",
        loaded.head.attention: "attention.", loaded.teacher: "backbone_target.",
    }
    for module, prefix in parts.items():
        expected = {k: v for k, v in strip_prefix(state, prefix).items()
                    if not (prefix == "backbone." and k.startswith("conv1x1."))}
        own = module.state_dict()
        assert list(own) == list(expected), prefix
        for key, value in expected.items():
            assert torch.equal(own[key], value), prefix + key
    back = to_official_state_dict(loaded)  # and back to the file's layout, in its order
    assert list(back) == list(state)
    assert all(torch.equal(back[k], v) for k, v in state.items())
    assert loaded.threshold.item() == pytest.approx(OFFICIAL_THRESHOLD)
    assert loaded.input_spec.channel_order == "BGR"
    assert not any(p.requires_grad for p in loaded.teacher.parameters())


def _bn(x, state, prefix):
    return F.batch_norm(x, state[prefix + "running_mean"], state[prefix + "running_var"],
                        state[prefix + "weight"], state[prefix + "bias"], training=False,
                        eps=1e-5)


def _block(x, state, prefix, first, padding):
    """conv (index ``first``) -> BN -> PReLU, straight from the file's tensors."""
    x = F.conv2d(x, state[f"{prefix}{first}.weight"], state.get(f"{prefix}{first}.bias"),
                 padding=padding)
    x = _bn(x, state, f"{prefix}{first + 1}.")
    return F.prelu(x, state[f"{prefix}{first + 2}.weight"])


def test_score_equals_sum_of_s_times_w(official, loaded):
    """One forward of the loaded model; S, W and the score recomputed from the file's
    tensors (adapter and attention as plain functional ops) on the trunk's grids."""
    _, state = official
    captured = {}
    hooks = [
        loaded.backbone.body.register_forward_hook(
            lambda m, i, o: captured.__setitem__("grids", o.detach())),
        loaded.teacher.register_forward_hook(
            lambda m, i, o: captured.__setitem__("teacher", o.detach())),
    ]
    torch.manual_seed(0)
    x_a = torch.rand(1, 3, 112, 112) * 2 - 1
    x_b = torch.rand(1, 3, 112, 112) * 2 - 1
    try:
        with torch.no_grad():
            out = loaded(x_a, x_b)
    finally:
        for hook in hooks:
            hook.remove()

    grid_a, grid_b = captured["grids"].chunk(2)  # the trunk ran once on [x_a; x_b]
    fa = _block(grid_a, state, "backbone.conv1x1.", 0, 0)  # 1x1 conv, BN, PReLU(32)
    fb = _block(grid_b, state, "backbone.conv1x1.", 0, 0)
    s = F.cosine_similarity(fa, fb, dim=1)  # (1, 7, 7)
    ea = _block(fa, state, "attention.embedding_net.", 0, 1)
    eb = _block(fb, state, "attention.embedding_net.", 0, 1)
    z = _block(torch.cat([ea, eb], dim=1), state, "attention.attention.", 0, 1)
    z = _block(z, state, "attention.attention.", 3, 1)  # (1, 1, 7, 7) logits
    w = torch.softmax(z.flatten(1), dim=1).view(1, 7, 7)
    score = (s * w).sum(dim=(1, 2))
    emb_a, emb_b = captured["teacher"].chunk(2)

    assert w.std() > 0 and s.abs().max() > 0  # non-trivial maps
    torch.testing.assert_close(out.cos_map, s, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.attention, w, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(out.score, score, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.contribution.sum(dim=(1, 2)), out.score)
    torch.testing.assert_close(out.model_cosine, F.cosine_similarity(emb_a, emb_b, dim=1))
    assert captured["teacher"].shape == (2, 512)


def test_strictness_in_memory(official):
    """Every key of the file must be used, and every weight of the model filled."""
    _, state = official
    model = build_official_xcos()
    thresholds = {k: model.state_dict()[k] for k in ("threshold", "model_threshold")}

    extra = {**state, "backbone.extra.weight": torch.zeros(1)}
    with pytest.raises(StateDictMismatchError, match=r"unexpected key\(s\): backbone\.extra"):
        load_into(model, {**from_official_state_dict(extra), **thresholds})

    missing = {k: v for k, v in state.items() if k != "attention.attention.5.weight"}
    with pytest.raises(StateDictMismatchError, match=r"head\.attention\.attention\.5\.weight"):
        load_into(model, {**from_official_state_dict(missing), **thresholds})

    with pytest.raises(CheckpointError, match="not an official xCos checkpoint"):
        from_official_state_dict({**state, "optimizer.lr": torch.zeros(1)})


def test_wrong_file_is_refused(tmp_path):
    path = tmp_path / "model_ir_se50.pth"
    torch.save({"input_layer.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(CheckpointError, match="not an official xCos checkpoint"):
        load_official_xcos(path)
