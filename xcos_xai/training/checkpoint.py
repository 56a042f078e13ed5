"""Training checkpoints: written atomically, read back with ``weights_only=True``.

A checkpoint is one ``torch.save`` file of plain data (tensors, numbers, strings, lists and
dicts: model, optimisers, gradient scaler, schedule, sampler position, RNG states, the
configuration). It is written to a temporary file in the same folder, flushed and
``fsync``-ed, then moved over the old one with ``os.replace`` (and the folder is synced), so
a crash or ``SIGKILL`` at any moment leaves either the previous complete checkpoint or the
new complete one, never a torn file. Reading uses ``torch.load(weights_only=True)``: a
checkpoint that asks for code is refused. The writing is :mod:`xcos_xai._io`'s, the error
class :class:`~xcos_xai.models.checkpoints.CheckpointError` (one for every checkpoint).
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import torch
import torch.distributed as dist

from .._io import atomic_torch_save, remove_stale_tmp
from ..models.checkpoints import CheckpointError
from .config import ConfigError

__all__ = ["CheckpointError", "CheckpointManager", "atomic_torch_save", "load_checkpoint",
           "remove_stale_tmp"]

FORMAT = "xcos_xai.train/1"


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A training checkpoint written by :func:`atomic_torch_save` (weights-only load)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: give the run's "
                                "checkpoints/last.pt, or start without --resume")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile,
            OSError, ValueError, AttributeError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely ({type(err).__name__}"
                              f": {str(err)[:200]}): it is damaged or not a weights-only "
                              "xcos_xai training checkpoint") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an xcos_xai training checkpoint (format "
                              f"{FORMAT!r}); for backbone weights use model.pretrained")
    return obj


# --------------------------------------------------------------------------- a run's checkpoint


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


RESUME_KEYS = (  # a resumed run must not change these
    "run.recipe", "run.seed", "model", "data.format", "data.root",
                "data.min_images", "data.lfw_folds", "data.p_genuine", "data.flip",
                "optim.batch_size", "optim.accum_steps", "optim.epochs", "optim.lr",
                "optim.momentum", "optim.weight_decay", "optim.new_layers_lr",
                "optim.milestones", "optim.gamma", "optim.warmup_steps", "optim.attention_lr",
                "optim.alpha", "optim.grad_clip")


def lookup(d: dict, key: str):
    """``d["a"]["b"]`` for ``key = "a.b"``; a missing part raises ``KeyError("config.a.b")``."""
    try:
        for part in key.split("."):
            d = d[part]
    except (KeyError, TypeError):
        raise KeyError(f"config.{key}") from None
    return d


class CheckpointManager:
    """A run's checkpoint: where it is (``out/checkpoints/last.pt``, one file replaced
    atomically), what it holds (model, optimisers, scaler, schedule, sampler position,
    every rank's RNG state and log window, the configuration) and the checks before a run
    resumes from it (same processes and global batch, same data/model/optimiser settings).

    Args:
        out: the run's output folder.
        resume: ``None`` (a fresh run: an existing checkpoint is an error), ``"auto"``
            (``last.pt`` when it exists) or a checkpoint path.
    """

    def __init__(self, out: Path, resume: str | None = None):
        self.dir = Path(out) / "checkpoints"
        self.last = self.dir / "last.pt"
        self.resume_path = self._resume_path(self.last, resume)

    def remove_stale(self) -> int:
        """Delete what a process killed mid-write left; how many files."""
        return remove_stale_tmp(self.dir)

    @staticmethod
    def _resume_path(last: Path, resume):
        if resume is None:
            if last.exists():
                raise ConfigError(f"{last} exists: pass --resume to continue that "
                                  "run, or choose another run.out")
            return None
        if resume == "auto":
            return last if last.exists() else None
        return Path(resume)

    def state(self, t) -> dict:
        """Everything a resumed run needs (collective: every rank takes part)."""
        mine = (rng_state(t.d.device), {"sums": dict(t.log_sums),
                                             "count": t.log_count})
        if t.d.enabled:
            gathered = [None] * t.d.world
            dist.all_gather_object(gathered, mine)
        else:
            gathered = [mine]
        return {
            "format": FORMAT,
            "model": t.module.state_dict(),
            "optimizers": [o.state_dict() for o in t.optimizers],
            "scaler": t.scaler.state_dict(),
            "schedule": {"kind": "multistep", "global_step": t.global_step,
                         "steps_per_epoch": t.steps_per_epoch},
            "sampler": t.sampler.state_dict(),
            "progress": {"epoch": t.epoch, "step_in_epoch": t.step_in_epoch,
                         "global_step": t.global_step},
            "rng": [g[0] for g in gathered],
            "log_window": [g[1] for g in gathered],
            "world_size": t.d.world,
            "config": json.dumps(t.cfg.to_dict()),
            "frozen": list(t.frozen),
        }

    def save(self, t) -> None:
        """Write ``last.pt`` atomically (collective: every rank takes part)."""
        state = self.state(t)
        if t.d.main:
            atomic_torch_save(state, self.last)
        if t.d.enabled:
            dist.barrier()

    def restore(self, t, path: Path) -> None:
        """Check the checkpoint ``path`` against the run ``t`` and put its state in ``t``."""
        ck = load_checkpoint(path)
        try:
            self._restore_checked(t, path, ck)
        except KeyError as err:
            raise CheckpointError(f"checkpoint {path} has no entry {err.args[0]!r} although its "
                                  f"format is {FORMAT!r}: it is damaged or was written by "
                                  "another version of xcos_xai; start a new run.out") from None
        except (IndexError, TypeError, AttributeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"checkpoint {path} is malformed ({type(err).__name__}: "
                                  f"{str(err)[:200]}): start a new run.out") from None

    def _restore_checked(self, t, path: Path, ck: dict) -> None:
        saved = json.loads(ck["config"])
        world, gb = ck["world_size"], ck["sampler"].get("global_batch")
        if gb is None:  # not stored by every version: the same product from the saved config
            gb = (lookup(saved, "optim.batch_size") * world
                  * lookup(saved, "optim.accum_steps"))
        if (world, gb) != (t.d.world, t.sampler.global_batch):
            raise ConfigError(
                f"cannot resume {path}: it was written by {world} process(es) with a global "
                f"batch of {gb} pairs (optim.batch_size x processes x optim.accum_steps), and "
                f"this run has {t.d.world} with {t.sampler.global_batch}; its step "
                f"position counts steps of {gb} pairs: resume on {world} process(es) "
                f"(torchrun --nproc_per_node {world}, or no torchrun for 1) with the saved "
                f"configuration, or start a new run.out")
        now = t.cfg.to_dict()
        for key in RESUME_KEYS:
            if lookup(saved, key) != lookup(now, key):
                raise ConfigError(f"cannot resume {path}: {key} was {lookup(saved, key)!r} "
                                  f"and is now {lookup(now, key)!r}; resume with the saved "
                                  f"configuration ({t.out / 'config.toml'}) or start a "
                                  "new run.out")
        try:
            t.module.load_state_dict(ck["model"])
            for opt, sd in zip(t.optimizers, ck["optimizers"]):
                opt.load_state_dict(sd)
            t.scaler.load_state_dict(ck["scaler"])
            t.sampler.load_state_dict(ck["sampler"])
        except (RuntimeError, ValueError) as err:
            message = " ".join(str(err).split())[:300]
            raise CheckpointError(f"cannot resume {path}: {message}") from None
        p = ck["progress"]
        t.epoch, t.step_in_epoch, t.global_step = (p["epoch"], p["step_in_epoch"],
                                                           p["global_step"])
        set_rng_state(ck["rng"][t.d.rank], t.d.device)
        if "log_window" in ck:  # absent in checkpoints of earlier versions: an empty window
            window = ck["log_window"][t.d.rank]
            t.log_sums, t.log_count = dict(window["sums"]), int(window["count"])
