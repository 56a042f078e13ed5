"""The training engine on CPU: loss, recipes, DDP equivalence (torchrun, gloo), exact
resume after SIGKILL, atomic checkpoints. Real subprocesses where the claim is about them."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from xcos_xai.core import CosFaceHead, XCosHead
from xcos_xai.testing import TinyFaceNet
from xcos_xai.training import engine, validation
from xcos_xai.training.checkpoint import CheckpointError, atomic_torch_save, load_checkpoint
from xcos_xai.training.config import ConfigError, load_config
from xcos_xai.training.engine import Trainer, train
from xcos_xai.training.model import XCosTrainModule, freeze_unused_parameters
from xcos_xai.training.synthetic import write_identity_folders

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_assets")
    write_identity_folders(root / "data", n_identities=8, n_images=6, size=32, seed=0)
    torch.manual_seed(0)
    save_file(TinyFaceNet().state_dict(), str(root / "teacher.safetensors"))
    return root


def _overrides(assets, out, **extra) -> list[str]:
    base = {"run.out": str(out), "run.recipe": "paper", "model.backbone": "tiny_facenet",
            "model.pretrained": str(assets / "teacher.safetensors"), "model.margin": "cosface",
            "data.root": str(assets / "data"), "data.workers": 0, "optim.batch_size": 4,
            "optim.lr": 0.05, "optim.milestones": [100], "engine.log_every": 1,
            "engine.progress": False, "engine.tensorboard": False}
    base.update(extra)
    return [f"{k}={v if isinstance(v, str) else _toml(v)}" for k, v in base.items()]


def _toml(v) -> str:
    """A TOML literal (the override syntax) for plain values."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(v)


def _log(out: Path, kind: str = "train") -> list[dict]:
    path = out / "log.jsonl"
    if not path.exists():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["type"] == kind]


_TIMING = ("pairs_per_s", "cpu_s", "wall_s")


def _untimed(records: list[dict]) -> list[dict]:
    """Log records without their timing fields (those differ between any two runs)."""
    return [{k: v for k, v in r.items() if k not in _TIMING} for r in records]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


def _train_cmd(*args) -> list[str]:
    return [sys.executable, str(REPO / "training" / "train.py"), "--import", "xcos_xai.testing",
            *args]


# ----------------------------------------------------------------------------- in-process


def test_loss_is_the_papers_and_hand_checkable():
    torch.manual_seed(0)
    trunk = TinyFaceNet()
    head = XCosHead(trunk.grid_channels, 4, attention="uniform")
    margin = CosFaceHead(4 * 4 * 4, 3)
    module = XCosTrainModule(trunk, head, margin, alpha=0.3).eval()
    x = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 0])
    target = torch.tensor([0.2, -0.1])
    loss, stats = module(x, labels, target)
    feats = head.adapter(trunk.forward_features(x))
    fa, fb = feats.chunk(2)
    xcos = F.cosine_similarity(fa, fb, dim=1).mean((1, 2))  # uniform W: mean patch cosine
    logits = margin(feats.flatten(1), labels)
    expected = 0.3 * F.cross_entropy(logits, labels) + 0.7 * ((xcos - target) ** 2).mean()
    assert torch.allclose(loss, expected, atol=1e-5)
    # scratch target: the detached cosine of the two ID vectors
    _, st = module(x, labels, None)
    ids = F.normalize(feats.flatten(1), dim=1)
    own = (ids[:2] * ids[2:]).sum(1)
    assert torch.allclose(st["l_cos"], ((xcos - own) ** 2).mean(), atol=1e-5)


def test_unused_head_of_the_trunk_is_frozen():
    torch.manual_seed(0)
    trunk = TinyFaceNet()
    module = XCosTrainModule(trunk, XCosHead(trunk.grid_channels, 8),
                             CosFaceHead(8 * 16, 5))
    assert freeze_unused_parameters(module, 5) == ["trunk.fc.weight", "trunk.fc.bias"]
    assert not trunk.fc.weight.requires_grad and trunk.body[0][0].weight.requires_grad
    assert all(p.grad is None for p in module.parameters())


def test_tiny_paper_recipe_loss_falls_and_teacher_stays_frozen(assets, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    cfg = load_config(None, _overrides(assets, out, **{"optim.epochs": 4}))
    trainer = Trainer(cfg)
    teacher_before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    trainer.fit()
    losses = [r["loss"] for r in _log(out)]
    assert len(losses) == 4 * 12  # 48 images, 4 pairs a step
    assert np.mean(losses[-8:]) < 0.6 * np.mean(losses[:8])
    assert all(torch.equal(teacher_before[k], v) for k, v in trainer.teacher.state_dict().items())
    assert not trainer.teacher.training
    saved = load_file(str(out / "model.safetensors"))
    assert torch.equal(saved["trunk.fc.weight"], teacher_before["fc.weight"])  # frozen, unused
    assert not torch.equal(saved["trunk.body.0.0.weight"], teacher_before["body.0.0.weight"])
    assert (out / "config.toml").read_text() == cfg.to_toml()


def test_scratch_recipe_runs_with_validation_on_a_bin(assets, tmp_path):
    import io

    from PIL import Image

    from xcos_xai.data.insightface import write_bin
    from xcos_xai.training.synthetic import synthetic_images

    images, labels = synthetic_images(4, 10, size=32, seed=9)
    encoded = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, "PNG")
        encoded.append(buf.getvalue())
    pairs, same = [], []
    for k in range(20):  # alternate genuine / impostor pairs, both classes in every fold
        i = k
        j = (k + 1) % 10 + (labels[i] * 10 if k % 2 == 0 else ((labels[i] + 1) % 4) * 10)
        pairs += [encoded[i], encoded[int(j)]]
        same.append(bool(labels[i] == labels[int(j)]))
    write_bin(tmp_path / "val.bin", pairs, same)
    out = tmp_path / "scratch"
    cfg = load_config(None, _overrides(assets, out, **{
        "run.recipe": "scratch", "optim.max_steps": 6,
        "val.sets": [{"name": "syn", "format": "bin", "path": str(tmp_path / "val.bin")}]}))
    summary = train(cfg)
    val = summary["val"]["syn"]
    assert set(val) >= {"xcos", "id_cosine", "pairs"} and val["pairs"] == 20
    assert 0.0 <= val["xcos"]["acc"] <= 1.0
    assert _log(out, "val")[-1]["step"] == 6


def test_fresh_run_into_a_used_folder_and_changed_resume_are_refused(assets, tmp_path):
    out = tmp_path / "r"
    train(load_config(None, _overrides(assets, out, **{"optim.max_steps": 2})))
    with pytest.raises(ConfigError, match="pass --resume"):
        Trainer(load_config(None, _overrides(assets, out, **{"optim.max_steps": 3})))
    with pytest.raises(ConfigError, match="optim.lr was 0.05 and is now 0.1"):
        Trainer(load_config(None, _overrides(assets, out, **{"optim.lr": 0.1})), resume="auto")


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_checkpoint_asking_for_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": "xcos_xai.train/1", "x": _Evil(str(marker))}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(tmp_path / "last.pt")
    assert not marker.exists()
    (tmp_path / "raw.pt").write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "raw.pt")
    assert not marker.exists()


def test_setup_device_gives_set_device_an_indexed_gpu(monkeypatch):
    from torch.cuda._utils import _get_device_index

    calls = []

    def set_device(device):  # as strict as the real one: a device without index raises
        calls.append(_get_device_index(device))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert engine.setup_device("cuda").device == torch.device("cuda", 0)
    assert engine.setup_device("auto").device == torch.device("cuda", 0)
    assert engine.setup_device("cuda:1").device == torch.device("cuda", 1)
    assert calls == [0, 0, 1]
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun: GPU LOCAL_RANK, whatever was asked
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(engine.dist, "is_initialized", lambda: True)
    d = engine.setup_device("cuda")
    assert (d.rank, d.world, d.device, calls[-1]) == (1, 2, torch.device("cuda", 1), 1)
    assert engine.setup_device("cpu").device == torch.device("cpu") and len(calls) == 4


def _edit_checkpoint(path: Path, edit) -> None:
    ck = load_checkpoint(path)
    edit(ck)
    atomic_torch_save(ck, path)


def test_resume_on_another_world_size_or_global_batch_is_refused(assets, tmp_path):
    out = tmp_path / "r"
    cfg = load_config(None, _overrides(assets, out, **{"optim.max_steps": 2}))
    train(cfg)
    last = out / "checkpoints" / "last.pt"
    ck = load_checkpoint(last)
    assert (ck["world_size"], ck["sampler"]["global_batch"]) == (1, 4)

    def as_if_two_ranks(ck):  # what 2 processes x 4 pairs write
        ck["world_size"], ck["sampler"]["global_batch"] = 2, 8
        ck["rng"], ck["log_window"] = ck["rng"] * 2, ck["log_window"] * 2

    _edit_checkpoint(last, as_if_two_ranks)
    with pytest.raises(ConfigError, match=r"written by 2 process\(es\) with a global batch "
                                          r"of 8 pairs .* this run has 1 with 4; .*"
                                          r"torchrun --nproc_per_node 2"):
        Trainer(cfg, resume="auto")

    def other_batch(ck):  # same world, another global batch
        ck["world_size"], ck["sampler"]["global_batch"] = 1, 8

    _edit_checkpoint(last, other_batch)
    with pytest.raises(ConfigError, match=f"cannot resume {last}: .*global batch of 8 pairs"):
        Trainer(cfg, resume="auto")

    def older_version(ck):  # no global_batch, no log_window: derived / empty
        del ck["sampler"]["global_batch"], ck["log_window"]

    _edit_checkpoint(last, older_version)
    assert Trainer(cfg, resume="auto").global_step == 2


def test_checkpoint_missing_entries_is_one_clear_error(assets, tmp_path, capsys):
    from xcos_xai import cli

    out = tmp_path / "r"
    overrides = _overrides(assets, out, **{"optim.max_steps": 2})
    cfg = load_config(None, overrides)
    train(cfg)
    last = out / "checkpoints" / "last.pt"
    good = load_checkpoint(last)
    _edit_checkpoint(last, lambda ck: ck.pop("progress"))
    with pytest.raises(CheckpointError, match=f"checkpoint {last} has no entry 'progress' "
                                              "although its format is 'xcos_xai.train/1'"):
        Trainer(cfg, resume="auto")

    def old_config(ck):  # a configuration without a key this version compares
        saved = json.loads(good["config"])
        del saved["optim"]["grad_clip"]
        ck.update(good, config=json.dumps(saved))

    _edit_checkpoint(last, old_config)
    with pytest.raises(CheckpointError, match="has no entry 'config.optim.grad_clip'"):
        Trainer(cfg, resume="auto")
    capsys.readouterr()
    assert cli.main(["train", *sum((["--set", o] for o in overrides), []), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"xcos-xai train: error: checkpoint {last} has no entry "
                          "'config.optim.grad_clip'")


def test_diverging_loss_ends_as_one_line(assets, tmp_path, capsys):
    from xcos_xai import cli
    from xcos_xai.training import run

    for name, main, prefix in (("cli", cli.main, ["train"]), ("run", run.main, [])):
        args = sum((["--set", o] for o in _overrides(assets, tmp_path / name, **{
            "optim.lr": 1e30, "optim.max_steps": 4})), [])
        assert main([*prefix, *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        label = "xcos-xai train" if name == "cli" else "train"
        assert err.startswith(f"{label}: error: loss is nan at step 1: lower optim.lr")


def test_rank_without_validation_pairs_contributes_nothing():
    # 3 pairs on 4 ranks: rank r scores pairs r::4, rank 3 gets none and sends {}
    shards = [{"xcos": (np.array([0]), np.array([0.5])),
               "teacher_cosine": (np.array([0]), np.array([0.4]))},
              {"xcos": (np.array([1]), np.array([-0.25])),
               "teacher_cosine": (np.array([1]), np.array([-0.1]))},
              {"xcos": (np.array([2]), np.array([0.75])),
               "teacher_cosine": (np.array([2]), np.array([0.9]))},
              {}]
    merged = validation.merge_shards(shards, 3)
    assert sorted(merged) == ["teacher_cosine", "xcos"]
    assert merged["xcos"].tolist() == [0.5, -0.25, 0.75]
    assert merged["teacher_cosine"].tolist() == [0.4, -0.1, 0.9]
    assert validation.merge_shards([{}, {}], 0) == {}
    two = validation.merge_shards([{"xcos": (np.array([0, 2]), np.array([1.0, 3.0]))},
                                {"xcos": (np.array([1]), np.array([2.0]))}], 3)
    assert two["xcos"].tolist() == [1.0, 2.0, 3.0]


def test_resume_inside_a_log_window_gives_the_uninterrupted_log(assets, tmp_path,
                                                                monkeypatch):
    # log every 3 steps, checkpoint every 5: the step-5 checkpoint holds steps 4-5 of the
    # window that the step-6 record averages; the crash at step 8 leaves records 3 and 6
    extra = {"optim.max_steps": 12, "engine.log_every": 3, "engine.checkpoint_every": 5}
    ref = tmp_path / "ref"
    train(load_config(None, _overrides(assets, ref, **extra)))
    out = tmp_path / "crashed"
    cfg = load_config(None, _overrides(assets, out, **extra))
    real_step = Trainer._step

    def crash_at_8(self, batches):
        if self.global_step == 7:
            raise KeyboardInterrupt("crash")
        return real_step(self, batches)

    monkeypatch.setattr(Trainer, "_step", crash_at_8)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg).fit()
    monkeypatch.undo()
    assert [r["step"] for r in _log(out)] == [3, 6]
    assert load_checkpoint(out / "checkpoints" / "last.pt")["log_window"][0]["count"] == 2
    train(cfg, resume="auto")
    assert [r["step"] for r in _log(out)] == [3, 6, 9, 12]
    assert _untimed(_log(out)) == _untimed(_log(ref))


# ----------------------------------------------------------------------------- subprocesses


def test_two_process_torchrun_equals_one_process_same_global_batch(assets, tmp_path,
                                                                   one_thread):
    """2 ranks x 4 pairs (gloo DDP) == 1 rank x 2 micro-batches of 4 (accumulation)."""
    steps = {"optim.max_steps": 6, "optim.batch_size": 4}
    one = tmp_path / "one"
    two = tmp_path / "two"
    train(load_config(None, _overrides(assets, one, **steps, **{"optim.accum_steps": 2})))
    proc = subprocess.run([str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node", "2",
                           str(REPO / "training" / "train.py"), "--import", "xcos_xai.testing",
                           *sum((["--set", o] for o in _overrides(assets, two, **steps)), [])],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world 2 on cpu" in proc.stdout
    a = load_file(str(one / "model.safetensors"))
    b = load_file(str(two / "model.safetensors"))
    start = load_file(str(assets / "teacher.safetensors"))
    params = [k for k in a if "running_" not in k and "num_batches" not in k]
    moved = 0
    for k in params:
        assert torch.allclose(a[k], b[k], atol=2e-5, rtol=1e-4), k
        if k.startswith("trunk.") and k[6:] in start and not torch.equal(a[k], start[k[6:]]):
            moved += 1
    assert moved > 5  # the runs really trained the trunk
    la, lb = _log(one), _log(two)
    assert [r["step"] for r in la] == [r["step"] for r in lb]
    assert np.allclose([r["loss"] for r in la], [r["loss"] for r in lb], rtol=1e-4)


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(assets, tmp_path, one_thread):
    # 48 images, 2 pairs a step: 24 steps an epoch, 48 steps; checkpoints every 5 steps.
    # The reference runs in this process on one thread, like the OMP_NUM_THREADS=1 children.
    extra = {"optim.epochs": 2, "optim.batch_size": 2, "engine.checkpoint_every": 5,
             "optim.milestones": [1.5]}
    ref = tmp_path / "ref"
    train(load_config(None, _overrides(assets, ref, **extra)))
    out = tmp_path / "killed"
    args = sum((["--set", o] for o in _overrides(assets, out, **extra)), [])
    proc = subprocess.Popen(_train_cmd(*args), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        log = _log(out)
        if log and log[-1]["step"] >= 9:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    state = load_checkpoint(out / "checkpoints" / "last.pt")["progress"]
    assert 0 < state["step_in_epoch"] and state["global_step"] < 48  # killed mid-epoch
    subprocess.run(_train_cmd(*args, "--resume"), check=True, env=_env(), capture_output=True,
                   timeout=300)
    a = load_file(str(ref / "model.safetensors"))
    b = load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the log holds every step once, the resumed steps equal to the uninterrupted run's
    assert [r["step"] for r in _log(out)] == list(range(1, 49))
    assert [r["loss"] for r in _log(out)] == [r["loss"] for r in _log(ref)]
    assert _untimed(_log(out)) == _untimed(_log(ref))


_WRITER = r"""
import sys, torch
from xcos_xai.training.checkpoint import atomic_torch_save
path = sys.argv[1]
i = 0
while True:
    i += 1
    atomic_torch_save({"i": i, "x": torch.full((4_000_000,), float(i))}, path)
    print(i, flush=True)
"""


def test_sigkill_during_checkpoint_writes_never_leaves_a_torn_checkpoint(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    rng = np.random.default_rng(0)
    hit_mid_write = 0
    for round_ in range(6):
        if hit_mid_write and round_ >= 2:
            break
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], env=_env(),
                                stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # one complete checkpoint exists
        time.sleep(float(rng.uniform(0.0, 0.3)))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        proc.stdout.close()
        hit_mid_write += bool(list(path.parent.glob("*.tmp")))
        obj = torch.load(path, weights_only=True)
        assert torch.equal(obj["x"], torch.full((4_000_000,), float(obj["i"])))
        for tmp in path.parent.glob("*.tmp"):
            tmp.unlink()
    assert hit_mid_write >= 1  # at least one kill landed inside a write


def test_checkpoint_write_that_fails_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_torch_save({"v": torch.tensor(1)}, path)

    def broken_save(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"v": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["v"].item() == 1
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_paths_train_on_cpu(assets, tmp_path, amp):
    out = tmp_path / amp
    cfg = load_config(None, _overrides(assets, out, **{"optim.max_steps": 3,
                                                       "engine.amp": amp}))
    trainer = Trainer(cfg)
    before = trainer.module.trunk.body[2][0].weight.detach().clone()
    trainer.fit()
    assert trainer.amp_dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    assert all(np.isfinite(r["loss"]) for r in _log(out))
    assert not torch.equal(before, trainer.module.trunk.body[2][0].weight)
    scaler = load_checkpoint(out / "checkpoints" / "last.pt")["scaler"]
    assert (scaler.get("scale") is not None) == (amp == "fp16")  # GradScaler only for fp16
