"""``xcos-xai compare`` end to end on a few real LFW pairs (cheap methods, coarse steps)."""

from __future__ import annotations

import json

import numpy as np
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
    # the table's AUCs are the mean of the per-pair trapezoids
    same = np.array([r["same"] for r in records])
    d = np.array([r["methods"]["xcos"]["deletion"] for r in records])
    auc = (d[:, 0] / 2 + d[:, 1] + d[:, 2] / 2) / 2
    assert table.loc[0, "del_auc_genuine"] == pytest.approx(auc[same].mean())
    for name in ("table.csv", "table.md", "table.json", "curves.html", "curves.png"):
        assert (tmp_path / name).stat().st_size > 200
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
