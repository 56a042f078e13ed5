"""``xcos-xai compare``: every pair explainer on the same LFW pairs, measured the same way.

This module runs the job (the pairs, the worker processes, the resumable records, the output
files); the measures are :mod:`xcos_xai.evaluation.faithfulness`, the figures
:mod:`xcos_xai.viz.compare_figures`, the options :mod:`xcos_xai.cli`.

For each selected LFW View-2 pair (balanced: genuine and impostor from every fold), with the
fold's held-out head of the chosen model (``load_pretrained(config.bundle, fold=k)``;
``--model dlib|sface``), on the faces that model's aligner makes:

- every method explains the pair score (``target``) for both faces, timed against one plain
  verification forward of the same pair in the same process;
- deletion (11 steps, 0..100 %) and insertion (6 steps) of face A's 10x10-pixel units, in map
  order, towards a Gaussian-blurred copy of face A (the stated baseline); genuine pairs rank
  the supporting part first, impostor pairs the opposing part; the deletion scores give the
  replacement FNMR/FMR curves at the fold's fixed threshold;
- on a subset of genuine pairs, the localisation game: one facial region (eyes, nose or
  mouth, in turn) of face B is replaced with another identity's, and the opposing part of
  the hybrid's map must find it (pointing game, IoU, restored fraction to flip back);
- on small subsets, Captum's ``sensitivity_max`` and the cascading model-randomisation check;
- the field's protocols (:mod:`xcos_xai.evaluation.field_protocols`): ROAD MoRF/LeRF on a
  balanced subset (``n_road``), cascading and independent layer randomisation (MPRT) on the
  randomisation subset, verification-accuracy deletion/insertion, FNMR/FMR 5-95 %, passes
  per pair, and ``cost_faithfulness.{html,png}`` (cost against faithfulness, Pareto fronts);
- over all pairs, how much of each map sits on xCos's static cells (the attention shortcut).

Per-pair records are appended to ``records.jsonl`` as they finish, so an interrupted run
resumes where it stopped. The table goes to ``table.{csv,md,json}``, plots to ``*.html`` and
``*.png``. Models and faces go to ``device``; under ``torchrun`` each rank runs a shard of
the pairs (:mod:`.compare_distributed`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .._io import atomic_path
from ..data.align import faces_to_tensor
from ..data.aligners import lfw_aligner_for
from ..data.lfw import LFW
from ..evaluation.differences import goal_margins, imitation_goals
from ..evaluation.faithfulness import (  # noqa: F401  (COLUMNS, to_markdown: this run's table)
    COLUMNS,
    RANDOMISATION_KEYS,
    REGIONS,
    CompareConfig,
    measure_pair,
    per_pair_measures,
    randomisation_measures,
    summarize,
    to_markdown,
)
from ..evaluation.field_protocols import in_road_subset, reseed_for_pair
from ..explainers import create_explainer, explainer_class, list_explainers
from ..explainers.metrics import randomised_copy, stage_module_names
from ..pretrained import bundle_input_spec, load_pretrained
from ..viz.compare_figures import curve_figure, save_curves_png, save_example_maps
from ..viz.cost_faithfulness import write_cost_faithfulness
from ..viz.writers import write_figure_html

# --------------------------------------------------------------------------- the pairs


def select_pairs(frame: pd.DataFrame, n_pairs: int, seed: int = 0) -> pd.DataFrame:
    """A balanced sample of View-2 pairs: ``n_pairs / 20`` genuine and as many impostor
    pairs from each of the 10 folds (seeded), in fold order.

    Returns the selected rows with their original row number in ``pair_id``.
    """
    if n_pairs < 20 or n_pairs % 20:
        raise ValueError(f"n_pairs={n_pairs}: give a multiple of 20 (the same number of "
                         "genuine and impostor pairs from each of the 10 folds)")
    per = n_pairs // 20
    rng = np.random.default_rng(seed)
    parts = []
    for fold in sorted(frame["fold"].unique()):
        for same in (True, False):
            rows = np.flatnonzero((frame["fold"] == fold).to_numpy()
                                  & (frame["same"] == same).to_numpy())
            if len(rows) < per:
                kind = "genuine" if same else "impostor"
                raise ValueError(f"fold {fold} has only {len(rows)} {kind} pairs, {per} "
                                 "asked: ask for fewer pairs")
            parts.append(np.sort(rng.choice(rows, per, replace=False)))
    chosen = np.concatenate(parts)
    out = frame.iloc[chosen].copy()
    out.insert(0, "pair_id", chosen)
    return out.reset_index(drop=True)


def build_jobs(lfw, pairs: pd.DataFrame, config: CompareConfig, workers: int = 1,
               progress: bool = True) -> list[dict]:
    """One job per pair: the aligned chips (by the aligner of ``config.bundle``'s backbone),
    and for localisation pairs the donor and region."""
    aligner = lfw_aligner_for(bundle_input_spec(config.bundle))
    paths = sorted(set(pairs["path_a"]) | set(pairs["path_b"]))
    faces = aligner.align_many([lfw.image_root / p for p in paths], workers=workers,
                               progress=progress)
    chip = {p: f.chip for p, f in zip(paths, faces)}
    rng = np.random.default_rng(config.seed + 1)
    jobs, n_loc, n_sens, n_rand, n_ex = [], 0, 0, 0, {True: 0, False: 0}
    per_fold = max(1, len(pairs) // 10)
    half = max(1, per_fold // 2)  # positions 0.. are genuine pairs, half.. impostor pairs
    loc_per_fold = -(-config.n_localisation // 10)
    for i, row in pairs.iterrows():
        same = bool(row["same"])
        job = {"i": int(i), "pair_id": int(row["pair_id"]), "fold": int(row["fold"]),
               "same": same, "path_a": row["path_a"], "path_b": row["path_b"],
               "chip_a": chip[row["path_a"]], "chip_b": chip[row["path_b"]]}
        k = i % per_fold  # position inside the fold
        if same and k < loc_per_fold and n_loc < config.n_localisation:
            # a donor of another identity from the same fold's impostor pairs
            donors = pairs[(pairs["fold"] == row["fold"]) & ~pairs["same"]
                           & (pairs["name_b"] != row["name_a"])]["path_b"].tolist()
            if donors:
                job["donor"] = chip[donors[int(rng.integers(len(donors)))]]
                job["region"] = REGIONS[n_loc % len(REGIONS)]
                n_loc += 1
        # subsets for the expensive checks: one genuine and one impostor pair per fold
        job["sensitivity"] = n_sens < config.n_sensitivity and k in (0, half)
        n_sens += job["sensitivity"]
        job["randomisation"] = (n_rand < config.n_randomisation
                                and k in (1 % per_fold, (half + 1) % per_fold))
        n_rand += job["randomisation"]
        job["road"] = in_road_subset(k, per_fold, half, config.n_road)
        job["example"] = n_ex[same] < config.n_examples // 2 and k in (0, half)
        n_ex[same] += job["example"]
        jobs.append(job)
    return jobs


# --------------------------------------------------------------------------- one pair


_WORKER: dict = {}


def _init_worker(config: CompareConfig, device: str = "cpu") -> None:
    torch.set_num_threads(config.threads)
    _WORKER.clear()
    _WORKER["config"] = config
    _WORKER["device"] = torch.device(device)


def _models(fold: int | None):
    """The fold's model, its explainers and randomised copies (kept for the last fold)."""
    config = _WORKER["config"]
    key = fold if config.fold_heads else None
    if _WORKER.get("key", "none") != key:
        model = load_pretrained(config.bundle, fold=key).to(_WORKER.get("device", "cpu"))
        _WORKER.update(key=key, model=model, explainers={
            m: create_explainer(m, model, **config.method_kwargs(m)) for m in config.methods},
            randomised=None)
    return _WORKER["model"], _WORKER["explainers"]


def _randomised_models():
    if _WORKER.get("randomised") is None:
        model = _WORKER["model"]
        _WORKER["randomised"] = [(stage, randomised_copy(model, names, seed=1))
                                 for stage, names in stage_module_names(model)]
    return _WORKER["randomised"]


def _to_input(model, chip: np.ndarray) -> torch.Tensor:
    x = model.input_spec.normalize(faces_to_tensor([chip]))
    return x.to(model.threshold.device)


def evaluate_pair(job: dict) -> dict:
    """All measurements of one pair (runs in a worker; returns plain data)."""
    config: CompareConfig = _WORKER["config"]
    model, explainers = _models(job["fold"])
    record = {k: job[k] for k in ("i", "pair_id", "fold", "same", "path_a", "path_b")}
    record.update(measure_pair(
        model, explainers, _to_input(model, job["chip_a"]), _to_input(model, job["chip_b"]),
        job["same"], config,
        donor=_to_input(model, job["donor"]) if "donor" in job else None,
        region=job.get("region"), check_sensitivity=job["sensitivity"],
        randomised_models=_randomised_models if job["randomisation"] else None,
        keep_maps=job["example"], pair_index=job["i"], road=job.get("road", False)))
    return record


# --------------------------------------------------------------------------- the records


class RecordStore:
    """The per-pair records of a run, ``<folder>/records.jsonl``.

    The first line is the run's configuration (JSON); then one JSON record per finished pair,
    appended and flushed as pairs finish. An interrupted run resumes where it stopped (a
    line cut by the interruption is skipped); a run of another configuration starts the file
    afresh. Other processes may read the file while a run appends to it.
    """

    FILE = "records.jsonl"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / self.FILE

    def read(self) -> tuple[dict, dict[int, dict]]:
        """``(configuration, {pair index: record})`` of the records written so far."""
        if not self.path.is_file():
            raise FileNotFoundError(f"no comparison records at {self.path}: run `xcos-xai "
                                    f"compare --out {self.folder}` first")
        lines = self.path.read_text(encoding="utf-8").splitlines()
        records = {}
        for line in lines[1:]:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by an interruption, or being written
                continue
            records[rec["i"]] = rec
        return json.loads(lines[0]), records

    def resume(self, config: dict) -> dict[int, dict]:
        """The records a run of ``config`` has finished (none for a new or changed run, whose
        file is then started with ``config`` as its first line)."""
        stamp = json.dumps(config, sort_keys=True)
        if self.path.exists():
            with open(self.path, encoding="utf-8") as fh:
                first = fh.readline().rstrip("\n")
            if first == stamp:
                return self.read()[1]
            self.path.unlink()
        with atomic_path(self.path) as tmp:
            tmp.write_text(stamp + "\n", encoding="utf-8")
        return {}

    @contextmanager
    def appending(self) -> Iterator[Callable[[dict], None]]:
        """``with store.appending() as append: append(record)`` (each record flushed)."""
        with open(self.path, "a", encoding="utf-8") as fh:
            def append(record: dict) -> None:
                fh.write(json.dumps(record) + "\n")
                fh.flush()

            yield append


# --------------------------------------------------------------------------- the outputs


def write_outputs(out: Path, table: pd.DataFrame, curves: dict, config: CompareConfig,
                  extra: dict | None = None, per_pair: pd.DataFrame | None = None
                  ) -> dict[str, Path]:
    """``table.csv``, ``table.md``, ``table.json`` (with the config and the summary),
    ``curves.html`` (plotly.js inlined: one page to share), ``curves.png``, and with
    ``per_pair`` (:func:`~xcos_xai.evaluation.faithfulness.per_pair_measures`) ``per_pair.csv``
    and ``goals.md`` (the default xCos map's goals with paired 95 % intervals,
    :func:`~xcos_xai.evaluation.differences.goal_margins`); each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "table.csv", "md": out / "table.md", "json": out / "table.json",
             "html": out / "curves.html", "png": out / "curves.png"}
    with atomic_path(paths["csv"]) as tmp:
        table.to_csv(tmp, index=False, float_format="%.5f")
    if per_pair is not None:
        paths["per_pair"] = out / "per_pair.csv"
        with atomic_path(paths["per_pair"]) as tmp:
            per_pair.to_csv(tmp, index=False, float_format="%.5f")
        goals = goal_margins(per_pair)  # empty without xcos or the goals' references
        if len(goals):
            target = {}
            if TARGET in set(per_pair["method"]):  # the measurement the default imitates
                target = {"goals_of_target": goal_margins(per_pair, TARGET),
                          "imitation": goal_margins(per_pair, goals=imitation_goals(TARGET))}
            paths["goals"] = out / "goals.md"
            with atomic_path(paths["goals"]) as tmp:
                tmp.write_text(goals_markdown(goals, config, **target), encoding="utf-8")
    s = curves["summary"]
    note = (f"{s['pairs']} LFW View-2 pairs ({s['genuine']} genuine, {s['impostor']} "
            f"impostor, folds {s['folds'][0]}-{s['folds'][-1]}), model `{config.bundle}`, "
            f"target `{config.target}`, "
            f"{'fold-held-out heads' if config.fold_heads else 'the default head'}; "
            f"replacement baseline: Gaussian-blurred face A ({config.baseline}); units "
            f"{config.unit}x{config.unit} px; localisation on {s['localisation_pairs']} "
            f"hybrids ({s['localisation_flipped']} flipped the decision); sensitivity on "
            f"{s['sensitivity_pairs']} pairs, randomisation on {s['randomisation_pairs']}.\n\n")
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text(note + to_markdown(table), encoding="utf-8")
    payload = {"config": asdict(config), "summary": s, "table": table.to_dict("records"),
               "curves": {k: v for k, v in curves.items() if k != "summary"},
               **(extra or {})}
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, default=float), encoding="utf-8")
    controls = [m for m in curves["methods"] if explainer_class(m).control]
    fig, panels = curve_figure(curves, controls)
    write_figure_html(fig, paths["html"])
    save_curves_png(curves, panels, paths["png"], controls)
    for path in write_cost_faithfulness(out, table):  # cost against faithfulness
        paths[path.name] = path
    return paths


def write_tables(out: Path, records: list[dict], config: CompareConfig, extra: dict
                 ) -> tuple[pd.DataFrame, dict]:
    """:func:`summarize` the records and :func:`write_outputs` (with the per-pair measures)."""
    per_pair = per_pair_measures(records, config)
    table, curves = summarize(records, config, per_pair)
    write_outputs(out, table, curves, config, extra=extra, per_pair=per_pair)
    return table, curves


#: the measured occlusion that the default xCos map predicts in one forward
TARGET = "occlusion_blocks"


def _goal_rows(goals: pd.DataFrame, method: str = "xcos") -> list[str]:
    lines = [f"| goal | pairs | {method} | reference | difference [95 % interval] | verdict |",
             "|---|---:|---:|---|---:|---|"]
    for _, g in goals.iterrows():
        arrow = "≥" if g["better"] == "higher" else "≤"
        lines.append(f"| {g['measure']} {arrow} {g['reference']} | {g['pairs']} | "
                     f"{g['mean']:.4f} | {g['reference']} {g['mean_reference']:.4f} | "
                     f"{g['difference'] + 0.0:+.4f} [{g['ci_low'] + 0.0:+.4f}, "  # (no -0)
                     f"{g['ci_high'] + 0.0:+.4f}] | {g['verdict']} |")
    return lines


def goals_markdown(goals: pd.DataFrame, config: CompareConfig,
                   goals_of_target: pd.DataFrame | None = None,
                   imitation: pd.DataFrame | None = None) -> str:
    """``goals.md``: the default xCos map against each goal's reference, pair by pair; with
    the run's ``occlusion_blocks`` (what the default map predicts), that measurement against
    the same goals (``goals_of_target``) and the default against it (``imitation``)."""
    lines = [f"# The default xCos map's faithfulness goals, `{config.bundle}`", "",
             "Each goal compares the default map (`xcos`) with a reference method on the same "
             "pairs: the mean difference and its 95 % interval from 10000 bootstrap resamples "
             "of the pairs (seed 0). *tied*: worse on these pairs, but the interval includes "
             "no difference. Made by `xcos-xai compare` from `per_pair.csv`.", "",
             *_goal_rows(goals)]
    if goals_of_target is not None and len(goals_of_target):
        lines += ["", f"## The measurement the default map imitates (`{TARGET}`)", "",
                  "The same goals for the measured occlusion of the blocks the default map "
                  "predicts in one forward (what a perfect imitation would reach):", "",
                  *_goal_rows(goals_of_target, TARGET)]
    if imitation is not None and len(imitation):
        lines += ["", f"The default map against `{TARGET}` (its imitation error):", "",
                  *_goal_rows(imitation)]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the run


def run_compare(out: str | Path, root=None, config: CompareConfig | None = None,
                workers: int = 1, progress: bool = True, reverse: bool = False,
                skip_done_in: list[str | Path] = (), first: int = 0, images=None,
                device: str = "cpu", shard: tuple[int, int] | None = None
                ) -> tuple[pd.DataFrame, dict]:
    """Run every method on ``config.n_pairs`` LFW View-2 pairs and write the results.

    Args:
        out: output folder (``records.jsonl`` there makes the run resumable).
        root: the LFW folder (default ``$XCOS_XAI_DATA/lfw``; a clear error when absent).
        config: a :class:`CompareConfig`.
        workers: processes, each running ``config.threads`` torch threads.
        reverse: work from the last pair backwards (a second process on another machine
            or core can then share a run: see ``skip_done_in`` and :func:`summarize_records`).
        skip_done_in: other output folders of the same configuration whose finished pairs
            are not recomputed (checked once at the start).
        first: start at this pair index (another process takes the pairs before it).
        images: the LFW image folder (a name inside ``root`` or a path; see :class:`LFW`).
        device: where the models and faces go (``"cpu"``, ``"cuda:0"``...).
        shard: ``(rank, world)``: only the pairs ``i % world == rank`` (one shard per
            torchrun rank, see :mod:`.compare_distributed`); with ``world > 1`` only the
            records are written, and ``(None, None)`` is returned.
    """
    config = config or CompareConfig()
    unknown = [m for m in config.methods if m not in list_explainers()]
    if unknown:
        raise ValueError(f"unknown explainer(s) {unknown}: choose from {list_explainers()}")
    bundle_input_spec(config.bundle)  # an unknown bundle fails here, with the choices
    if config.target not in ("xcos", "model_cosine"):
        raise ValueError(f"target must be 'xcos' or 'model_cosine', got {config.target!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lfw = LFW(root, images=images)  # DataNotFoundError names the folder and the fix
    pairs = select_pairs(lfw.pairs_frame(), config.n_pairs, config.seed)
    jobs = build_jobs(lfw, pairs, config, workers=workers, progress=progress)
    store = RecordStore(out)
    done = store.resume(config.stamp())
    elsewhere = set()
    for other in skip_done_in:
        other_config, other_records = read_records(other)
        if other_config.stamp() == config.stamp():
            elsewhere |= {r["i"] for r in other_records}
    todo = [j for j in jobs if j["i"] not in done and j["i"] not in elsewhere
            and j["i"] >= first and (shard is None or j["i"] % shard[1] == shard[0])]
    if reverse:
        todo = todo[::-1]
    start = time.perf_counter()
    with store.appending() as append, \
            tqdm(total=len(jobs), initial=len(done), desc="compare", unit="pair",
                 disable=not progress) as bar:
        def keep(rec):
            done[rec["i"]] = rec
            append(rec)
            bar.update(1)

        if workers <= 1:
            _init_worker(config, device)
            for job in todo:
                keep(evaluate_pair(job))
        else:
            # fold-ordered chunks: each worker keeps its fold's model between pairs
            with ProcessPoolExecutor(workers, initializer=_init_worker,
                                     initargs=(config, device)) as pool:
                for rec in pool.map(evaluate_pair, todo, chunksize=1):
                    keep(rec)
    wall = time.perf_counter() - start
    if shard is not None and shard[1] > 1:  # a torchrun rank: rank 0 merges the shards
        return None, None
    records = [done[j["i"]] for j in jobs if j["i"] in done
               and (shard is None or j["i"] % shard[1] == shard[0])]
    table, curves = write_tables(out, records, config, extra={
        "wall_time_s": wall, "workers": workers, "cpu_count": os.cpu_count(),
        "resumed_pairs": len(jobs) - len(todo)})
    save_example_maps(records, {j["i"]: (j["chip_a"], j["chip_b"]) for j in jobs}, out)
    return table, curves


def read_records(out: str | Path) -> tuple[CompareConfig, list[dict]]:
    """The configuration and the finished pair records of a (possibly running) comparison."""
    config, records = RecordStore(out).read()
    config = CompareConfig(**config)
    return config, [records[i] for i in sorted(records)]


def summarize_records(out: str | Path, dest: str | Path | None = None,
                      also: list[str | Path] = ()):
    """Table and curves from the records written so far (e.g. of an unfinished run), merged
    with the records of other folders ``also`` that ran the same configuration."""
    config, records = read_records(out)
    merged = {r["i"]: r for r in records}
    for other in also:
        other_config, other_records = read_records(other)
        if other_config.stamp() != config.stamp():
            raise ValueError(f"{other} ran another configuration than {out}: not merged")
        for r in other_records:
            merged.setdefault(r["i"], r)
    records = [merged[i] for i in sorted(merged)]
    return write_tables(Path(dest or out), records, config,
                        extra={"partial": len(records) < config.n_pairs})


# --------------------------------------------------------------------------- runs of runs


def _write_records(out: Path, config: CompareConfig, records: list[dict]) -> None:
    """``records.jsonl`` of ``config`` and ``records``, written atomically."""
    lines = [json.dumps(config.stamp(), sort_keys=True)] + [json.dumps(r) for r in records]
    with atomic_path(Path(out) / RecordStore.FILE) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def merge_method_runs(folders: list[str | Path], dest: str | Path, tolerance: float = 1e-5,
                      replace: tuple[str, ...] = ()) -> tuple[pd.DataFrame, dict]:
    """One run of every method from runs of the same pairs and settings with different
    methods (e.g. the expensive methods run later, or on another machine).

    The runs' configurations must be equal but for ``methods`` and hold the same pairs; a
    method in several runs must have measured the same curves (to ``tolerance``: a check that
    the runs saw the same faces, heads and seeds), and the first run's measures are kept.
    Methods named in ``replace`` (e.g. ``xcos`` measured again after its map statistics were
    re-fitted) are taken from the last run that has them, unchecked. The times of methods
    taken from a later run are rescaled by the two runs' forward times of each pair, so their
    cost in forwards is their own run's (the runs may have met other loads).
    ``dest`` gets the merged ``records.jsonl`` (methods in the runs' order) and every output
    of :func:`write_outputs`.
    """
    if len(folders) < 2:
        raise ValueError("merge needs two or more comparison folders")
    runs = [read_records(f) for f in folders]
    missing = set(replace) - {m for c, _ in runs[1:] for m in c.methods}
    if missing:
        raise ValueError(f"replace names {sorted(missing)}, which no run after {folders[0]} "
                         "measured: list methods of a later run")
    base_config, base = runs[0]
    pairs = {r["i"]: r for r in base}
    methods = list(base_config.methods)

    def without_methods(c: CompareConfig) -> dict:
        return {k: v for k, v in c.stamp().items() if k != "methods"}

    for folder, (config, records) in zip(folders[1:], runs[1:]):
        differ = {k for k, v in without_methods(config).items()
                  if without_methods(base_config).get(k) != v}
        if differ:
            raise ValueError(f"{folder} ran other settings than {folders[0]} ({sorted(differ)}):"
                             " only runs that differ in their methods can be merged")
        if {r["i"] for r in records} != set(pairs):
            raise ValueError(f"{folder} holds other pairs than {folders[0]}: finish both runs "
                             "(same --pairs and --seed) before merging")
        for r in records:
            mine = pairs[r["i"]]
            if (r["pair_id"], r["path_a"], r["path_b"]) != (mine["pair_id"], mine["path_a"],
                                                            mine["path_b"]):
                raise ValueError(f"pair {r['i']} differs between {folders[0]} and {folder}")
            for name, m in r["methods"].items():
                if name in mine["methods"] and name not in replace:
                    gap = max(np.abs(np.subtract(m[k], mine["methods"][name][k])).max()
                              for k in ("deletion", "insertion"))
                    if gap > tolerance:
                        raise ValueError(
                            f"{name} measured differently in {folders[0]} and {folder} on pair "
                            f"{r['i']} (curves differ by {gap:.2g}): not the same faces, heads "
                            "or seeds, so the runs cannot be merged")
                    continue
                if r.get("forward_s") and mine.get("forward_s"):
                    # its cost relative to a forward stays its own run's (load differs)
                    m = {**m, "time_s": m["time_s"] * mine["forward_s"] / r["forward_s"]}
                mine["methods"][name] = m
                if name in r.get("example_maps", {}):
                    mine.setdefault("example_maps", {})[name] = r["example_maps"][name]
        methods += [m for m in config.methods if m not in methods]
    config = CompareConfig(**{**asdict(base_config), "methods": methods})
    merged = [pairs[i] for i in sorted(pairs)]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    _write_records(dest, config, merged)
    extra = {"merged_from": [str(f) for f in folders]}
    if replace:
        extra["replaced"] = sorted(replace)
    return _write_all(dest, merged, config, extra)


def _write_all(out: Path, records: list[dict], config: CompareConfig, extra: dict,
               root=None, images=None) -> tuple[pd.DataFrame, dict]:
    table, curves = write_tables(out, records, config, extra)
    if any("example_maps" in r for r in records):
        lfw = LFW(root, images=images)
        aligner = lfw_aligner_for(bundle_input_spec(config.bundle))
        shown = [r for r in records if "example_maps" in r]
        paths = sorted({p for r in shown for p in (r["path_a"], r["path_b"])})
        faces = dict(zip(paths, aligner.align_many([lfw.image_root / p for p in paths],
                                                   progress=False)))
        save_example_maps(records, {r["i"]: (faces[r["path_a"]].chip, faces[r["path_b"]].chip)
                                    for r in shown}, out)
    return table, curves


def redo_randomisation(out: str | Path, root=None, images=None, device: str = "cpu",
                       progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """Measure the randomisation checks of a finished run again, for every method on the
    run's randomisation pairs, and rewrite its records and outputs.

    For runs whose randomised models were made another way than the models now declare
    (:func:`~xcos_xai.explainers.metrics.randomisation_init`, e.g. SFace runs made before it
    declared ``"permute"``): nothing else of the records changes.
    """
    out = Path(out)
    config, records = read_records(out)
    if len(records) < config.n_pairs:
        raise ValueError(f"{out} holds {len(records)} of {config.n_pairs} pairs: finish the run "
                         "(run the same compare command again) first")
    lfw = LFW(root, images=images)
    pairs = select_pairs(lfw.pairs_frame(), config.n_pairs, config.seed)
    jobs = [j for j in build_jobs(lfw, pairs, config, progress=progress) if j["randomisation"]]
    by_index = {r["i"]: r for r in records}
    _init_worker(config, device)
    for job in tqdm(jobs, desc="randomisation", unit="pair", disable=not progress):
        model, explainers = _models(job["fold"])
        x_a, x_b = _to_input(model, job["chip_a"]), _to_input(model, job["chip_b"])
        for name, explainer in explainers.items():
            reseed_for_pair(explainer, job["i"], config.seed)
            r = explainer.attribute(x_a, x_b, target=config.target)
            m = by_index[job["i"]]["methods"][name]
            for key in RANDOMISATION_KEYS:
                m.pop(key, None)
            m.update(randomisation_measures(model, name, r, x_a, x_b, config,
                                            _randomised_models))
    _write_records(out, config, records)
    return _write_all(out, records, config, {"randomisation_redone": len(jobs)}, root, images)
