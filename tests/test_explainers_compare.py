"""``xcos-xai compare`` end to end on a few real LFW pairs (cheap methods, coarse steps)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from xcos_xai.apps.compare import CompareConfig, read_records, run_compare
from xcos_xai.cli import main


@pytest.mark.data
@pytest.mark.slow
def test_compare_on_lfw_pairs(lfw_root, tmp_path, one_thread):
    config = CompareConfig(n_pairs=20, methods=["xcos", "gradcam", "random"], fold_heads=False,
                           deletion_step=0.5, insertion_step=0.5, n_localisation=2,
                           n_sensitivity=0, n_randomisation=0, n_examples=2)
    table, curves = run_compare(tmp_path, root=lfw_root, config=config, progress=False)
    assert table["method"].tolist() == ["xcos", "gradcam", "random"]
    s = curves["summary"]
    assert (s["pairs"], s["genuine"], s["impostor"]) == (20, 10, 10)
    assert s["folds"] == list(range(10)) and s["localisation_pairs"] == 2
    assert s["xcos_accuracy"] >= 0.8  # the default head on LFW pairs
    _, records = read_records(tmp_path)
    for r in records:
        for m in r["methods"].values():
            # nothing replaced yet = the pair's own score; everything replaced = the baseline
            assert m["deletion"][0] == pytest.approx(r["score"], abs=1e-5)
            assert m["insertion"][-1] == pytest.approx(r["score"], abs=1e-5)
            assert m["deletion"][-1] == pytest.approx(r["methods"]["random"]["deletion"][-1],
                                                      abs=1e-5)
            # feature-space cell deletion: nothing replaced = the score; all 16 cells replaced
            # by the mean face = the same end for every map
            assert len(m["cell_deletion"]) == 17
            assert m["cell_deletion"][0] == pytest.approx(r["score"], abs=1e-5)
            assert m["cell_deletion"][-1] == pytest.approx(
                r["methods"]["random"]["cell_deletion"][-1], abs=1e-5)
    # the table's AUCs are the mean of the per-pair trapezoids
    same = np.array([r["same"] for r in records])
    d = np.array([r["methods"]["xcos"]["deletion"] for r in records])
    auc = (d[:, 0] / 2 + d[:, 1] + d[:, 2] / 2) / 2
    assert table.loc[0, "del_auc_genuine"] == pytest.approx(auc[same].mean())
    for name in ("table.csv", "table.md", "table.json", "curves.html", "curves.png",
                 "per_pair.csv"):
        assert (tmp_path / name).stat().st_size > 200
    # the per-pair measures are what the table averages
    per_pair = pd.read_csv(tmp_path / "per_pair.csv")
    assert len(per_pair) == 20 * 3
    genuine = per_pair[per_pair["same"]].groupby("method").mean(numeric_only=True)
    by_method = table.set_index("method")
    for m in ("xcos", "gradcam", "random"):
        assert genuine.loc[m, "del_auc"] == pytest.approx(by_method.loc[m, "del_auc_genuine"],
                                                          abs=1e-5)
        assert genuine.loc[m, "ins_auc"] == pytest.approx(by_method.loc[m, "ins_auc_genuine"],
                                                          abs=1e-5)
        assert 1 - genuine.loc[m, "accepted_at_30pct"] == pytest.approx(
            by_method.loc[m, "fnmr_at_30pct"])
        assert genuine.loc[m, "pointing"] == pytest.approx(by_method.loc[m, "pointing"])
    assert per_pair["pointing"].notna().sum() == 2 * 3  # the 2 localisation hybrids
    assert len(list(tmp_path.glob("example_*.png"))) == 2
    payload = json.loads((tmp_path / "table.json").read_text())
    assert payload["config"]["n_pairs"] == 20 and len(payload["table"]) == 3
    # a second run resumes from the records instead of recomputing
    again, _ = run_compare(tmp_path, root=lfw_root, config=config, progress=False)
    assert json.loads((tmp_path / "table.json").read_text())["resumed_pairs"] == 20
    assert again.equals(table)


def test_compare_without_lfw_is_one_clear_error(tmp_path, capsys):
    code = main(["compare", "--lfw", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"),
                 "--pairs", "20"])
    assert code == 2
    err = capsys.readouterr().err
    assert "LFW images not found" in err and "XCOS_XAI_DATA" in err
    code = main(["compare", "--methods", "xcos,lime", "--out", str(tmp_path / "o")])
    assert code == 2 and "unknown explainer(s) ['lime']" in capsys.readouterr().err


@pytest.mark.data
@pytest.mark.slow
def test_compare_runs_the_field_methods_and_protocols(lfw_root, tmp_path, one_thread):
    config = CompareConfig(n_pairs=20, methods=["xssab", "corrrise", "random"],
                           fold_heads=False, deletion_step=0.5, insertion_step=0.5,
                           n_localisation=0, n_sensitivity=0, n_randomisation=2,
                           n_examples=0, corrrise_masks=40, n_road=20,
                           road_fractions=[0.0, 0.5], mprt_layers=2)
    table, curves = run_compare(tmp_path, root=lfw_root, config=config, progress=False)
    assert curves["summary"]["road_pairs"] == 20
    for col in ("acc_del_auc", "acc_ins_auc", "fnmr_mean_5_95", "road_morf_auc",
                "road_lerf_auc", "road_gap", "mprt_cascading_last", "mprt_independent_mean",
                "passes"):
        assert col in table.columns and np.isfinite(table[col]).all(), col
    assert table.set_index("method")["passes"].to_dict() == {"xssab": 6.0,
                                                             "corrrise": 2 * 40 + 2.0,
                                                             "random": 0.0}
    _, records = read_records(tmp_path)
    for r in records:
        for m in r["methods"].values():
            # nothing removed yet: the pair's own score, in both ROAD orders
            assert m["road_morf"][0] == pytest.approx(r["score"], abs=1e-5)
            assert m["road_lerf"][0] == pytest.approx(r["score"], abs=1e-5)
    mprt = [m["mprt_cascading"] for r in records for m in r["methods"].values()
            if "mprt_cascading" in m]
    assert len(mprt) == 2 * 3 and all(list(d)[0].startswith("head") for d in mprt)
    assert all(list(d)[-1] == "backbone.stem_conv" for d in mprt)  # the bottom layer
    md = (tmp_path / "table.md").read_text()
    assert "ROAD LeRF - MoRF" in md and "accuracy deletion AUC" in md


@pytest.mark.data
@pytest.mark.slow
def test_compare_under_torchrun_merges_to_the_one_process_table(lfw_root, tmp_path):
    """2 gloo ranks, each a shard of the pairs; rank 0's merged table equals a one-process
    run's (all but the measured times)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    args = ["compare", "--lfw", str(lfw_root), "--pairs", "20", "--methods",
            "xcos,xssab,random", "--default-head", "--deletion-step", "0.5",
            "--insertion-step", "0.5", "--localisation", "0", "--sensitivity", "0",
            "--randomisation", "2", "--road", "20", "--mprt-layers", "2", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    one = subprocess.run([sys.executable, "-m", "xcos_xai.cli", *args, "--out",
                          str(tmp_path / "one")], env=env, capture_output=True, text=True,
                         timeout=900)
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = Path(sys.executable).parent / "torchrun"
    two = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m",
                          "xcos_xai.cli", *args, "--out", str(tmp_path / "two")], env=env,
                         capture_output=True, text=True, timeout=900)
    assert two.returncode == 0, two.stderr[-3000:]
    _, shard0 = read_records(tmp_path / "two" / "rank0")
    _, shard1 = read_records(tmp_path / "two" / "rank1")
    assert {r["i"] % 2 for r in shard0} == {0} and {r["i"] % 2 for r in shard1} == {1}
    assert len(shard0) == len(shard1) == 10
    a = pd.read_csv(tmp_path / "one" / "table.csv")
    b = pd.read_csv(tmp_path / "two" / "table.csv")
    timing = ["time_s", "cost_x_forward"]
    pd.testing.assert_frame_equal(a.drop(columns=timing), b.drop(columns=timing),
                                  check_exact=False, rtol=1e-6, atol=1e-8)
    assert "road_gap" in a.columns and a["road_gap"].notna().all()


@pytest.mark.data
@pytest.mark.slow
def test_runs_of_other_methods_merge_into_one_run_and_randomisation_is_redone(
        lfw_root, tmp_path, one_thread):
    from xcos_xai.apps.compare import merge_method_runs, redo_randomisation

    common = dict(n_pairs=20, fold_heads=False, deletion_step=0.5, insertion_step=0.5,
                  n_localisation=2, n_sensitivity=0, n_randomisation=2, n_examples=2,
                  n_road=0, mprt_layers=2)
    runs = {}
    for name, methods in (("a", ["xcos", "random"]), ("b", ["random", "saliency"]),
                          ("all", ["xcos", "random", "saliency"])):
        runs[name], _ = run_compare(tmp_path / name, root=lfw_root,
                                    config=CompareConfig(methods=methods, **common),
                                    progress=False)
    merged, _ = merge_method_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "merged")
    timing = [c for c in merged.columns if "time" in c or c in ("cost_x_forward",)]
    together = runs["all"].drop(columns=timing).set_index("method")
    assert merged["method"].tolist() == ["xcos", "random", "saliency"]
    pd.testing.assert_frame_equal(merged.drop(columns=timing).set_index("method"), together,
                                  check_exact=False, atol=1e-6)
    # a method from a later run keeps that run's cost in forwards (its times are rescaled)
    own = runs["b"].set_index("method").loc["saliency", "cost_x_forward"]
    assert merged.set_index("method").loc["saliency", "cost_x_forward"] == pytest.approx(own)
    config, records = read_records(tmp_path / "merged")
    assert config.methods == ["xcos", "random", "saliency"] and len(records) == 20
    assert len(list((tmp_path / "merged").glob("example_*.png"))) == 2
    # redoing the randomisation (dlib's layers re-initialised the same way) reproduces it
    before = {r["i"]: r for r in records}
    redo_randomisation(tmp_path / "merged", root=lfw_root, progress=False)
    _, again = read_records(tmp_path / "merged")
    redone = [(r, name) for r in again for name in r["methods"]
              if "mprt_cascading" in r["methods"][name]]
    assert len(redone) == 2 * 3
    for r, name in redone:
        old, new = before[r["i"]]["methods"][name], r["methods"][name]
        for key in ("randomisation", "mprt_cascading", "mprt_independent"):
            np.testing.assert_allclose(list(new[key].values()), list(old[key].values()),
                                       atol=1e-6, err_msg=f"{name} {key}")
    # runs of other settings, or of other pairs, are refused with the reason
    run_compare(tmp_path / "c", root=lfw_root, progress=False,
                config=CompareConfig(methods=["saliency"], **{**common, "deletion_step": 0.25}))
    with pytest.raises(ValueError, match=r"other settings.*deletion_step"):
        merge_method_runs([tmp_path / "a", tmp_path / "c"], tmp_path / "bad")
    # a method measured again (e.g. after its statistics were re-fitted) replaces the old one
    # only when named; otherwise the disagreement is refused
    again_dir = tmp_path / "a_again"
    again_dir.mkdir()
    lines = (tmp_path / "a" / "records.jsonl").read_text().splitlines()
    first = json.loads(lines[1])
    first["methods"]["xcos"]["deletion"] = [v + 0.1 for v in first["methods"]["xcos"]["deletion"]]
    (again_dir / "records.jsonl").write_text("\n".join([lines[0], json.dumps(first), *lines[2:]])
                                             + "\n")
    with pytest.raises(ValueError, match=r"xcos measured differently"):
        merge_method_runs([tmp_path / "a", again_dir], tmp_path / "bad2")
    with pytest.raises(ValueError, match=r"replace names \['saliency'\]"):
        merge_method_runs([tmp_path / "a", again_dir], tmp_path / "bad3", replace=("saliency",))
    merge_method_runs([tmp_path / "a", again_dir], tmp_path / "replaced", replace=("xcos",))
    _, replaced = read_records(tmp_path / "replaced")
    by_i = {r["i"]: r for r in replaced}
    np.testing.assert_allclose(by_i[first["i"]]["methods"]["xcos"]["deletion"],
                               first["methods"]["xcos"]["deletion"])
    assert json.loads((tmp_path / "replaced" / "table.json").read_text())["replaced"] == ["xcos"]
