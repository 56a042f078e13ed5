"""Training configuration: files, overrides, strict keys and types, fuzzed parsers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xcos_xai.training.config import (
    ConfigError,
    TrainConfig,
    config_from_dict,
    load_config,
    parse_override,
)

BASE = """
[run]
recipe = "scratch"
[data]
root = "/data/casia"
[optim]
lr = 0.1
milestones = [2, 4]
"""


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(BASE)
    cfg = load_config(path, ["optim.lr=0.01", "model.backbone=iresnet18", "optim.epochs=3",
                             "val.sets=[{name = 'lfw', format = 'bin', path = '/x/lfw.bin'}]"])
    assert cfg.optim.lr == 0.01 and cfg.optim.milestones == [2, 4]
    assert cfg.model.backbone == "iresnet18" and cfg.optim.epochs == 3
    assert cfg.val.sets[0].name == "lfw" and cfg.val.sets[0].path == "/x/lfw.bin"


def test_yaml_equals_toml(tmp_path):
    (tmp_path / "c.toml").write_text(BASE)
    (tmp_path / "c.yaml").write_text("run: {recipe: scratch}\ndata: {root: /data/casia}\n"
                                     "optim: {lr: 0.1, milestones: [2, 4]}\n")
    assert load_config(tmp_path / "c.toml") == load_config(tmp_path / "c.yaml")


def test_saved_toml_reloads_identically(tmp_path):
    cfg = load_config(None, ["run.recipe=scratch", "data.root=/d", "model.margin_m=0.4",
                             "val.sets=[{name = 'a', format = 'lfw', folds = [0, 1]}]"])
    (tmp_path / "saved.toml").write_text(cfg.to_toml())
    assert load_config(tmp_path / "saved.toml") == cfg


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=0.1", "unknown key optim.lrr"),
    ("optimm.lr=0.1", "unknown key optimm"),
    ("optim.lr='fast'", "optim.lr = 'fast' is a str; expected float"),
    ("optim.epochs=2.5", "expected int"),
    ("run.recipe=magic", "run.recipe = 'magic'"),
    ("optim.alpha=2", r"optim.alpha = 2.0: give a weight in \[0, 1\]"),
    ("lr", "write section.key=value"),
    ("optim.lr=nan", "optim.lr = nan is not a finite number: give a finite value"),
    ("optim.lr=inf", "optim.lr = inf is not a finite number"),
    ("optim.gamma=-inf", "optim.gamma = -inf is not a finite number"),
    ("optim.milestones=['a']", r"optim.milestones\[0\] = 'a': give finite numbers"),
    ("optim.milestones=[4, true]", r"optim.milestones\[1\] = True: give finite numbers"),
    ("optim.milestones=[4, nan]", r"optim.milestones\[1\] = nan: give finite numbers"),
    ("data.lfw_folds=[2, 10]", r"data.lfw_folds\[1\] = 10: give fold numbers, integers 0-9"),
    ("data.lfw_folds=['0']", r"data.lfw_folds\[0\] = '0': give fold numbers"),
    ("val.sets=[{name = 'a', format = 'lfw', folds = [0.5]}]",
     r"val.sets\[0\].folds\[0\] = 0.5: give fold numbers"),
    ("model.freeze=[1]", r"model.freeze\[0\] = 1: give parameter-name prefixes as strings"),
    ("head_only={lr = nan}", "head_only.lr = nan is not a finite number"),
])
def test_bad_settings_give_one_clear_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["run.recipe=scratch", "data.root=/d", override])


def test_non_finite_numbers_from_yaml_and_huge_ints_are_refused(tmp_path):
    (tmp_path / "c.yaml").write_text("run: {recipe: scratch}\ndata: {root: /d}\n"
                                     "optim: {lr: .nan}\n")
    with pytest.raises(ConfigError, match="c.yaml: optim.lr = nan is not a finite number"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="optim.lr = inf is not a finite number"):
        config_from_dict({"run": {"recipe": "scratch"}, "data": {"root": "/d"},
                          "optim": {"lr": 10 ** 400}})  # beyond float range
    cfg = load_config(None, ["run.recipe=scratch", "data.root=/d",
                             "optim.milestones=[0.5, 2]", "data.lfw_folds=[0, 9]"])
    assert cfg.optim.milestones == [0.5, 2] and cfg.data.lfw_folds == [0, 9]


def test_head_only_recipe_needs_data_root_except_for_lfw():
    teacher = {"pretrained": "/m/teacher.safetensors"}
    with pytest.raises(ConfigError, match=r"data.root is empty \(data.format = 'folders'\)"):
        config_from_dict({"run": {"recipe": "head_only"}, "model": teacher})
    with pytest.raises(ConfigError, match=r"data.root is empty \(data.format = 'rec'\)"):
        config_from_dict({"run": {"recipe": "head_only"}, "model": teacher,
                          "data": {"format": "rec"}})
    cfg = config_from_dict({"run": {"recipe": "head_only"}, "model": teacher,
                            "data": {"format": "lfw"}})  # "" = $XCOS_XAI_DATA/lfw
    assert cfg.data.root == ""


def test_paper_recipe_needs_a_teacher():
    with pytest.raises(ConfigError, match="needs a pretrained teacher"):
        config_from_dict({"data": {"root": "/d"}})


def test_overrides_are_data_never_code():
    keys, value = parse_override("model.pretrained=__import__('os').system('x')")
    assert keys == ["model", "pretrained"] and value == "__import__('os').system('x')"
    assert parse_override("engine.compile=true") == (["engine", "compile"], True)


def test_int_accepted_for_float():
    cfg = config_from_dict({"run": {"recipe": "scratch"}, "data": {"root": "/d"},
                            "optim": {"lr": 1}})
    assert isinstance(cfg.optim.lr, float) and cfg.optim.lr == 1.0
    assert isinstance(TrainConfig().optim.lr, float)


_FUZZ = settings(max_examples=200, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(st.text(max_size=200))
def test_fuzz_toml_files(tmp_path, text):
    path = tmp_path / "f.toml"
    path.write_bytes(text.encode("utf-8", "replace"))
    try:
        load_config(path)
    except ConfigError:
        pass


@_FUZZ
@given(st.text(max_size=200))
def test_fuzz_yaml_files(tmp_path, text):
    path = tmp_path / "f.yaml"
    path.write_bytes(text.encode("utf-8", "replace"))
    try:
        load_config(path)
    except ConfigError:
        pass


@_FUZZ
@given(st.lists(st.text(max_size=40), max_size=4))
def test_fuzz_overrides(overrides):
    try:
        load_config(None, ["run.recipe=scratch", "data.root=/d", *overrides])
    except ConfigError:
        pass


@_FUZZ
@given(st.dictionaries(st.sampled_from(["run", "model", "data", "optim", "engine", "val"]),
                       st.dictionaries(st.text(max_size=12),
                                       st.one_of(st.none(), st.booleans(), st.integers(),
                                                 st.floats(), st.text(max_size=5),
                                                 st.lists(st.integers(), max_size=3)),
                                       max_size=3), max_size=3))
def test_fuzz_structures(data):
    try:
        config_from_dict(data)
    except ConfigError:
        pass


@pytest.mark.parametrize("path", sorted(
    (Path(__file__).resolve().parents[1] / "training" / "configs").glob("*.*")),
    ids=lambda p: p.name)
def test_shipped_configs_load_and_freeze_what_they_say(path):
    """Every config in training/configs loads and validates (as `xcos-xai train` reads it)."""
    config = load_config(path)
    assert config.run.recipe in ("paper", "head_only", "scratch")
    if path.name == "lfw_dlib_cpu_8x8.toml":  # direction 4 of issue 13: the 8x8 stage trains
        assert config.model.backbone_kwargs == {"grid": "8x8"}
        assert "trunk.units.6." in config.model.freeze
        assert not any(f.startswith("trunk.units.7") for f in config.model.freeze)
