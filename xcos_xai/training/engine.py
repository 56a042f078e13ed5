"""The training engine: one code path for 1 CPU, 1 GPU or N GPUs under ``torchrun``.

- **Device**: ``run.device = "auto"`` takes CUDA when present. On CUDA: mixed precision
  (``bf16``, or ``fp16`` with a ``GradScaler``), channels-last memory, optional
  ``torch.compile``.
- **DDP**: under ``torchrun`` (``WORLD_SIZE > 1``) the process group is NCCL on GPUs and
  gloo on CPUs; every rank draws the same epoch of pairs and takes its own slice
  (:class:`~xcos_xai.data.samplers.AnchorPairSampler`), gradients are averaged by DDP and
  logged metrics are all-reduced. A step's *global batch* is ``batch_size * world_size *
  accum_steps`` pairs whatever the layout.
- **Checkpoints** (``checkpoints/last.pt``, atomic) hold the model, both optimisers, the
  gradient scaler, the schedule position, the sampler position (epoch, step in epoch),
  every rank's RNG state and its open logging window; ``resume`` continues exactly,
  mid-epoch too, on the same number of processes and global batch (else it is refused: the
  saved step position counts steps of that global batch), and first drops the records of
  ``log.jsonl`` past the checkpoint's step, so a resumed run's log equals an uninterrupted
  one's (timing fields aside).
- **Validation** every ``val.every`` steps and at the end: 10-fold accuracy of xCos, of the
  trained model's ID-vector cosine and of the teacher's cosine, via
  :func:`xcos_xai.evaluation.protocol.ten_fold_accuracy`.
- **Logs**: ``log.jsonl`` (one JSON object per line), TensorBoard events in ``tb/`` (when
  the ``tensorboard`` package is installed), a tqdm bar.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._io import atomic_path, atomic_save_safetensors
from ..data.samplers import AnchorPairSampler
from ..evaluation.features import compute_features
from ..models.registry import create_backbone
from .checkpoint import CheckpointManager
from .config import ConfigError, TrainConfig
from .data import PairDataset, build_source, build_val_set, to_chip
from .model import build_train_module, freeze_unused_parameters, split_decay
from .plugin import PluginConfig, config_dict, train_plugin_head
from .validation import protocol_results, validation_scores

__all__ = ["Trainer", "lr_factor", "train"]


# ----------------------------------------------------------------------------- helpers


class DistInfo:
    def __init__(self, rank=0, world=1, local_rank=0, device=None):
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.device = device if device is not None else torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_device(preference: str) -> DistInfo:
    """The device and, under torchrun, the process group (NCCL on CUDA, gloo on CPU).

    ``preference``: ``"auto"``, ``"cpu"``, ``"cuda"`` (GPU 0) or ``"cuda:N"``; under torchrun
    (``WORLD_SIZE > 1``) a CUDA rank always takes GPU ``LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"run.device = {preference!r} but CUDA is not available: "
                              "install a CUDA build of PyTorch or set run.device = 'cpu'")
        device = torch.device("cuda", local) if world > 1 else torch.device(preference)
        if device.index is None:  # set_device needs an index: "cuda" means GPU 0
            device = torch.device("cuda", 0)
        torch.cuda.set_device(device)
    else:
        device = torch.device(preference)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, device)


def lr_factor(step: int, steps_per_epoch: int, milestones, gamma: float,
              warmup_steps: int = 0) -> float:
    """The SGD learning-rate factor at optimiser step ``step`` (0-based): linear warm-up, then
    multiplied by ``gamma`` at each milestone epoch (fractional epochs allowed).

    Example:
        >>> [lr_factor(s, 10, [1, 2], 0.1) for s in (0, 9, 10, 19, 20)]
        [1.0, 1.0, 0.1, 0.1, 0.010000000000000002]
    """
    epoch = step / steps_per_epoch
    factor = gamma ** sum(1 for m in milestones if epoch >= m)
    if warmup_steps and step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return factor


def _amp_dtype(amp: str, device: torch.device):
    if amp == "none" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def _truncate_log(path: Path, step: int) -> None:
    """Keep the records of ``log.jsonl`` up to optimiser step ``step`` (a resumed run writes
    the later ones again; a fresh run, ``step = 0``, keeps none). A torn line is dropped."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    keep = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= step:
            keep.append(line)
    if keep == lines:
        return
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{line}\n" for line in keep), encoding="utf-8")


def _freeze_prefixes(module: torch.nn.Module, prefixes: list) -> list[str]:
    """Freeze parameters whose names start with one of ``prefixes`` (``model.freeze``)."""
    names = [n for n, _ in module.named_parameters()]
    for prefix in prefixes:
        if not isinstance(prefix, str) or not any(n.startswith(prefix) for n in names):
            raise ConfigError(f"model.freeze: {prefix!r} matches no parameter; names look "
                              f"like {', '.join(names[:3])}, ...")
    frozen = []
    for n, p in module.named_parameters():
        if p.requires_grad and any(n.startswith(pre) for pre in prefixes):
            p.requires_grad_(False)
            frozen.append(n)
    return frozen


# ----------------------------------------------------------------------------- trainer


class Trainer:
    """Trains an xCos model as configured; see the module notes.

    Args:
        cfg: a checked :class:`TrainConfig` (recipe ``paper`` or ``scratch``).
        resume: ``None`` (fresh run; an existing checkpoint in the output folder is an
            error), ``"auto"`` (continue from ``out/checkpoints/last.pt`` if it exists) or a
            checkpoint path.
    """

    def __init__(self, cfg: TrainConfig, resume: str | None = None):
        if cfg.run.recipe not in ("paper", "scratch"):
            raise ConfigError(f"Trainer runs recipes 'paper' and 'scratch', not "
                              f"{cfg.run.recipe!r}: use train() for 'head_only'")
        self.cfg = cfg
        self.d = setup_device(cfg.run.device)
        self.out = Path(cfg.run.out)
        self.checkpoints = CheckpointManager(self.out, resume)
        self.resume_path = self.checkpoints.resume_path
        torch.manual_seed(cfg.run.seed)  # identical initial weights on every rank
        self._build()
        torch.manual_seed(cfg.run.seed + 1000 * self.d.rank)  # per-rank stream (dropout)
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.log_sums: dict[str, float] = {}  # this rank's metrics since the last log record
        self.log_count = 0
        self.teacher_val: dict[str, np.ndarray] = {}
        if self.resume_path is not None:
            self.checkpoints.restore(self, self.resume_path)

    # -- construction

    def _build(self) -> None:
        cfg, d = self.cfg, self.d
        m = cfg.model
        self.source = build_source(cfg.data)
        if cfg.run.recipe == "paper":
            teacher = create_backbone(m.backbone, pretrained=m.pretrained, **m.backbone_kwargs)
            trunk = copy.deepcopy(teacher)  # the trunk starts from the teacher's weights
            self.teacher = teacher.eval().requires_grad_(False).to(d.device)
        else:
            trunk = create_backbone(m.backbone, pretrained=False, **m.backbone_kwargs)
            self.teacher = None
        self.input_spec = trunk.input_spec
        margin_kwargs = {k: v for k, v in (("scale", m.margin_scale), ("margin", m.margin_m))
                         if v is not None}
        module = build_train_module(trunk, self.source.num_classes, m.channels, m.attention,
                                    m.temperature, m.margin, margin_kwargs, cfg.optim.alpha,
                                    m.detach_cos_map).to(d.device)
        self.frozen = freeze_unused_parameters(module, self.source.num_classes)
        self.frozen += _freeze_prefixes(module, m.freeze)
        self.amp_dtype = _amp_dtype(cfg.engine.amp, d.device)
        self.channels_last = cfg.engine.channels_last and d.device.type == "cuda"
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
            if self.teacher is not None:
                self.teacher = self.teacher.to(memory_format=torch.channels_last)
        self.module = module
        o = cfg.optim
        groups = []
        new_lr = o.new_layers_lr if o.new_layers_lr is not None else o.lr
        for part, base_lr in ((module.trunk, o.lr),
                              (torch.nn.ModuleList([module.head.adapter, module.margin_head]),
                               new_lr)):
            decay, no_decay = split_decay([part])
            groups += [{"params": decay, "weight_decay": o.weight_decay, "base_lr": base_lr},
                       {"params": no_decay, "weight_decay": 0.0, "base_lr": base_lr}]
        self.sgd = torch.optim.SGD([g for g in groups if g["params"]], lr=o.lr,
                                   momentum=o.momentum)
        att = [p for p in module.head.attention.parameters() if p.requires_grad]
        self.adam = torch.optim.Adam(att, lr=o.attention_lr) if att else None
        self.optimizers = [self.sgd] + ([self.adam] if self.adam else [])
        self.scaler = torch.amp.GradScaler(d.device.type,
                                           enabled=self.amp_dtype == torch.float16)
        wrapped = module
        if d.enabled:
            wrapped = torch.nn.parallel.DistributedDataParallel(
                module, device_ids=[d.device.index] if d.device.type == "cuda" else None)
        self.ddp = wrapped if d.enabled else None
        self.forward = torch.compile(wrapped) if cfg.engine.compile else wrapped
        self.sampler = AnchorPairSampler(self.source.labels, o.batch_size, cfg.run.seed,
                                         d.world, d.rank, o.accum_steps, cfg.data.p_genuine,
                                         cfg.data.flip)
        self.steps_per_epoch = self.sampler.steps_per_epoch
        total = o.epochs * self.steps_per_epoch
        self.total_steps = min(total, o.max_steps) if o.max_steps else total
        self.loader = torch.utils.data.DataLoader(
            PairDataset(self.source, self.input_spec.size), batch_size=o.batch_size,
            sampler=self.sampler, num_workers=cfg.data.workers,
            pin_memory=d.device.type == "cuda", drop_last=False,
            # workers > 0: kept across epochs (no re-spawn and re-copy of the data set at
            # every epoch start); each prefetches 2 batches
            persistent_workers=cfg.data.workers > 0)
        self.val_sets = [build_val_set(s) for s in cfg.val.sets]

    def save(self) -> None:
        """Write the checkpoint (collective: every rank takes part)."""
        self.checkpoints.save(self)

    # -- one step

    def _inputs(self, batch):
        chips_a, chips_b, la, lb = batch
        dev = self.d.device
        x = torch.cat([chips_a, chips_b]).to(dev, non_blocking=True)
        x = self.input_spec.normalize(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, torch.cat([la, lb]).to(dev, non_blocking=True)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.d.device.type, dtype=self.amp_dtype)

    @torch.no_grad()
    def _teacher_cos(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.teacher is None:
            return None
        with self._autocast():
            emb = self.teacher(x).float()
        ea, eb = F.normalize(emb, dim=1).chunk(2)
        return (ea * eb).sum(1)

    def _set_lr(self) -> float:
        o = self.cfg.optim
        f = lr_factor(self.global_step, self.steps_per_epoch, o.milestones, o.gamma,
                      o.warmup_steps)
        for group in self.sgd.param_groups:
            group["lr"] = group["base_lr"] * f
        return o.lr * f

    def _step(self, batches) -> dict:
        lr = self._set_lr()
        n = len(batches)
        sums = {"loss": 0.0, "l_id": 0.0, "l_cos": 0.0, "id_acc": 0.0}
        for i, batch in enumerate(batches):
            x, labels = self._inputs(batch)
            target = self._teacher_cos(x)
            sync = self.ddp is None or i == n - 1
            ctx = contextlib.nullcontext() if sync else self.ddp.no_sync()
            with ctx:
                with self._autocast():
                    loss, stats = self.forward(x, labels, target)
                self.scaler.scale(loss / n).backward()
            sums["loss"] += loss.item() / n
            for k in ("l_id", "l_cos", "id_acc"):
                sums[k] += stats[k].item() / n
        if self.cfg.optim.grad_clip > 0:
            for opt in self.optimizers:
                self.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.module.parameters() if p.requires_grad],
                self.cfg.optim.grad_clip)
        for opt in self.optimizers:
            self.scaler.step(opt)
        self.scaler.update()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        if not math.isfinite(sums["loss"]):
            raise FloatingPointError(f"loss is {sums['loss']} at step {self.global_step}: "
                                     "lower optim.lr, or use engine.amp = 'bf16'/'none'")
        sums["lr"] = lr
        return sums

    # -- validation

    @torch.no_grad()
    def validate(self) -> dict:
        """10-fold accuracy on every validation set (pairs sharded across ranks)."""
        results = {}
        self.module.eval()
        try:
            for vs in self.val_sets:
                results[vs.name] = self._validate_one(vs)
        finally:
            self.module.train()
        return results

    def _validate_one(self, vs) -> dict:
        want_teacher = self.teacher is not None and vs.name not in self.teacher_val
        no_labels = torch.zeros(0, dtype=torch.long)

        def scorer(chips_a, chips_b):
            x, _ = self._inputs((chips_a, chips_b, no_labels, no_labels))
            xa, xb = x.chunk(2)
            with self._autocast():
                s = self.module.scores(xa, xb)
            out = {"xcos": s["xcos"], "id_cosine": s["id_cosine"]}
            if want_teacher:
                out["teacher_cosine"] = self._teacher_cos(x)
            return out

        scores = validation_scores(vs, scorer, self.input_spec.size, self.cfg.val.batch_size,
                                   self.cfg.data.workers, self.d.rank, self.d.world)
        if "teacher_cosine" in scores:
            self.teacher_val[vs.name] = scores.pop("teacher_cosine")
        if vs.name in self.teacher_val:
            scores["teacher_cosine"] = self.teacher_val[vs.name]
        out = protocol_results(scores, vs)
        if "teacher_cosine" in scores:
            out["pearson_xcos_teacher"] = float(np.corrcoef(scores["xcos"],
                                                            scores["teacher_cosine"])[0, 1])
        out["pairs"] = len(vs)
        return out

    # -- the loop

    def _reduce(self, values: dict, count: int) -> dict:
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys] + [count], dtype=torch.float64,
                         device=self.d.device if self.d.device.type == "cuda" else "cpu")
        if self.d.enabled:
            dist.all_reduce(t)
        return {k: float(t[i] / t[-1]) for i, k in enumerate(keys)}

    def fit(self) -> dict:
        """Train to ``total_steps``; returns the final summary (also ``summary.json``)."""
        cfg, d = self.cfg, self.d
        logger = _Logger(self.out, d.main, cfg.engine.tensorboard, self.global_step)
        if d.main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.checkpoints.remove_stale()
            with atomic_path(self.out / "config.toml") as tmp:
                tmp.write_text(cfg.to_toml(), encoding="utf-8")
            print(f"# configuration ({self.out / 'config.toml'})\n{cfg.to_toml()}")
            print(f"{len(self.source)} images of {self.source.num_classes} identities; "
                  f"{self.steps_per_epoch} steps/epoch of {self.sampler.global_batch} pairs; "
                  f"world {d.world} on {d.device}; amp {self.amp_dtype}; frozen (unused by "
                  f"the loss): {len(self.frozen)} tensors; resume from "
                  f"{self.resume_path or '-'} at step {self.global_step}")
        bar = tqdm(total=self.total_steps, initial=self.global_step, unit="step",
                   desc="train", disable=not (cfg.engine.progress and d.main))
        try:
            last_val = self._loop(logger, bar)
        finally:
            bar.close()
            logger.close()
        summary = {"steps": self.global_step, "epochs": self.global_step / self.steps_per_epoch,
                   "images": len(self.source), "identities": self.source.num_classes,
                   "world_size": d.world, "wall_s": time.perf_counter() - self._start,
                   "cpu_s": time.process_time(), "val": last_val}
        if d.main:
            self.export()
            with atomic_path(self.out / "summary.json") as tmp:
                tmp.write_text(json.dumps(summary, indent=1), encoding="utf-8")
        return summary

    def _loop(self, logger: _Logger, bar) -> dict | None:
        cfg = self.cfg
        t0 = self._start = time.perf_counter()
        pairs, it, last_val = 0, None, None
        while self.global_step < self.total_steps:
            if it is None:
                self.sampler.set_epoch(self.epoch, self.step_in_epoch)
                it = iter(self.loader)
            batches = [next(it) for _ in range(cfg.optim.accum_steps)]
            stats = self._step(batches)
            self.global_step += 1
            self.step_in_epoch += 1
            pairs += self.sampler.global_batch
            if self.step_in_epoch == self.steps_per_epoch:
                self.epoch, self.step_in_epoch, it = self.epoch + 1, 0, None
            for k, v in stats.items():
                self.log_sums[k] = self.log_sums.get(k, 0.0) + v
            self.log_count += 1
            bar.update(1)
            done = self.global_step == self.total_steps
            if self.global_step % cfg.engine.log_every == 0 or done:
                mean = self._reduce(self.log_sums, self.log_count)
                dt = time.perf_counter() - t0
                rec = {"type": "train", "step": self.global_step,
                       "epoch": self.global_step / self.steps_per_epoch, **mean,
                       "pairs_per_s": pairs / dt if dt > 0 else None,
                       "cpu_s": time.process_time(), "wall_s": time.perf_counter() - self._start}
                logger.log(rec)
                bar.set_postfix(loss=f"{mean['loss']:.3f}", l_cos=f"{mean['l_cos']:.4f}")
                self.log_sums, self.log_count, t0, pairs = {}, 0, time.perf_counter(), 0
            if self.val_sets and ((cfg.val.every and self.global_step % cfg.val.every == 0)
                                  or done):
                last_val = self.validate()
                logger.log({"type": "val", "step": self.global_step,
                            "epoch": self.global_step / self.steps_per_epoch, **last_val})
            # after validation: its records and its RNG draws (DataLoader seeds) are in the
            # checkpoint, so a resumed run neither repeats nor skips them
            if (self.global_step % cfg.engine.checkpoint_every == 0
                    or self.step_in_epoch == 0 or done):
                self.checkpoints.save(self)
        return last_val

    def export(self) -> Path:
        """The trained network as safetensors (trunk.*, head.*, margin_head.*)."""
        path = self.out / "model.safetensors"
        tensors = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        atomic_save_safetensors(tensors, path, metadata={
            "config": json.dumps(self.cfg.to_dict()), "global_step": str(self.global_step)})
        return path


class _Logger:
    """JSONL (+ TensorBoard) on the main rank."""

    def __init__(self, out: Path, main: bool, tensorboard: bool, step: int = 0):
        """``step``: the optimiser step the run starts after (0, or the resumed checkpoint's);
        records past it, from an interrupted run, are dropped (TensorBoard: purged)."""
        self.main = main
        self.tb = None
        if not main:
            return
        out.mkdir(parents=True, exist_ok=True)
        _truncate_log(out / "log.jsonl", step)
        self.fh = open(out / "log.jsonl", "a")  # noqa: SIM115
        if tensorboard:
            try:  # optional and slow to import: loaded only when asked for
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tb"), purge_step=step + 1 if step else None)
            except ImportError:
                print("tensorboard is not installed: logging to log.jsonl only",
                      file=sys.stderr)

    def log(self, rec: dict) -> None:
        if not self.main:
            return
        self.fh.write(json.dumps(rec) + "\n")
        self.fh.flush()
        if self.tb is not None:
            step = rec["step"]
            for key, value in _flatten(rec).items():
                if isinstance(value, (int, float)) and key not in ("step", "type"):
                    self.tb.add_scalar(f"{rec['type']}/{key}", value, step)

    def close(self) -> None:
        if self.main:
            self.fh.close()
            if self.tb is not None:
                self.tb.close()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ----------------------------------------------------------------------------- head only


def source_features(backbone, source, device, progress: bool = True
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grids (N, C, H, W) float16, embeddings (N, D) float32)`` of the frozen backbone for
    every training image, in the source's order.

    A source that names its image files and its aligner (LFW people) goes through the
    feature cache (:func:`~xcos_xai.evaluation.features.compute_features`: keyed by the
    weights, the alignment and the files; shared with the LFW jobs), so a second run, or
    another head on the same backbone, skips the backbone; other sources (folders of
    aligned chips, ``.rec``, arrays) are computed here.
    """
    paths, aligner = getattr(source, "paths", None), getattr(source, "aligner", None)
    if (paths is not None and hasattr(aligner, "align_many")
            and getattr(aligner, "chip_size", None) == backbone.input_spec.size[0]):
        features = compute_features(backbone, paths, aligner, progress=progress, device=device)
        name = getattr(backbone, "grid", None)
        grids = features.grids[name if name in features.grids else "grid"]
        return grids, features.embeddings
    grids, embs = [], []
    with torch.inference_mode():
        for s in tqdm(range(0, len(source), 64), desc="features", disable=not progress):
            chips = torch.stack([to_chip(source.load(i), backbone.input_spec.size)
                                 for i in range(s, min(s + 64, len(source)))])
            x = backbone.input_spec.normalize(chips.to(device))
            g = backbone.forward_features(x)
            grids.append(g.half().cpu())
            embs.append(backbone.forward_head(g).float().cpu())
    return torch.cat(grids), torch.cat(embs)


def train_head_only(cfg: TrainConfig) -> dict:
    """Recipe ``head_only``: the plug-in head on the frozen backbone's cached features,
    trained by :func:`xcos_xai.training.plugin.train_plugin_head`."""
    known = set(PluginConfig.__dataclass_fields__)
    unknown = sorted(set(cfg.head_only) - known)
    if unknown:
        raise ConfigError(f"unknown key head_only.{unknown[0]}; valid keys: "
                          f"{', '.join(sorted(known))}")
    d = setup_device(cfg.run.device)
    if d.enabled:
        raise ConfigError("recipe 'head_only' runs in one process: start it without torchrun")
    pcfg = PluginConfig(**{**cfg.head_only, "seed": cfg.run.seed, "device": str(d.device)})
    out = Path(cfg.run.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "config.toml") as tmp:
        tmp.write_text(cfg.to_toml(), encoding="utf-8")
    m = cfg.model
    backbone = create_backbone(m.backbone, pretrained=m.pretrained, **m.backbone_kwargs)
    backbone = backbone.eval().requires_grad_(False).to(d.device)
    source = build_source(cfg.data)
    grids_t, embs_t = source_features(backbone, source, d.device, cfg.engine.progress)
    head, history = train_plugin_head(grids_t, embs_t, torch.from_numpy(source.labels),
                                      pcfg, progress=cfg.engine.progress)
    atomic_save_safetensors({k: v.cpu() for k, v in head.state_dict().items()},
                            out / "head.safetensors",
                            metadata={"plugin_config": json.dumps(config_dict(pcfg))})
    with open(out / "log.jsonl", "a") as fh:
        for rec in history:
            fh.write(json.dumps({"type": "train", **rec}) + "\n")
    val = {}
    for spec in cfg.val.sets:
        vs = build_val_set(spec)

        def scorer(chips_a, chips_b):
            x = backbone.input_spec.normalize(torch.cat([chips_a, chips_b]).to(d.device))
            g = backbone.forward_features(x)
            ga, gb = g.chunk(2)
            ea, eb = F.normalize(backbone.forward_head(g).float(), dim=1).chunk(2)
            return {"xcos": head(ga, gb).score, "model_cosine": (ea * eb).sum(1)}

        scores = validation_scores(vs, scorer, backbone.input_spec.size, cfg.val.batch_size,
                                   cfg.data.workers)
        val[vs.name] = {**protocol_results(scores, vs), "pairs": len(vs)}
    summary = {"recipe": "head_only", "images": len(source), "history": history, "val": val,
               "plugin_config": asdict(pcfg)}
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def train(cfg: TrainConfig, resume: str | None = None) -> dict:
    """Run the configured recipe; returns its summary."""
    if cfg.run.recipe == "head_only":
        return train_head_only(cfg)
    trainer = Trainer(cfg, resume=resume)
    try:
        return trainer.fit()
    finally:
        if trainer.d.enabled and dist.is_initialized():
            dist.destroy_process_group()
