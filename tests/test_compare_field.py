"""The field's protocols in compare's table (evaluation/field_protocols.py), on records
written by hand; the cost-faithfulness figure file; the example pages (offline, atomic); the
device choice."""

from __future__ import annotations

import numpy as np
import pytest

from xcos_xai.evaluation.faithfulness import CompareConfig, to_markdown
from xcos_xai.evaluation.field_protocols import field_columns, in_road_subset, spread_layers
from xcos_xai.viz.cost_faithfulness import write_cost_faithfulness


def test_road_subset_is_balanced_per_fold():
    chosen = [k for k in range(30) if in_road_subset(k, 30, 15, 60)]
    assert chosen == [0, 1, 2, 15, 16, 17]  # 3 genuine + 3 impostor per fold: 60 of 300
    assert [k for k in range(2) if in_road_subset(k, 2, 1, 60)] == [0, 1]
    assert spread_layers(list("abcdefg"), 3) == ["a", "d", "g"]
    assert spread_layers(list("ab"), 5) == ["a", "b"] and spread_layers(list("ab"), 0) == []


def test_field_columns_by_hand(tmp_path):
    config = CompareConfig(methods=["m"], deletion_step=0.5, insertion_step=0.5,
                           road_fractions=[0.0, 0.5])
    genuine = {"deletion": [0.9, 0.4, 0.1], "insertion": [0.1, 0.6, 0.9], "passes": 6,
               "road_morf": [0.9, 0.3], "road_lerf": [0.9, 0.8],
               "mprt_cascading": {"l1": 0.5, "l2": 0.1},
               "mprt_independent": {"l1": 0.4, "l2": 0.2}}
    impostor = {"deletion": [0.2, 0.6, 0.7], "insertion": [0.7, 0.3, 0.2], "passes": 6,
                "road_morf": [0.2, 0.6], "road_lerf": [0.2, 0.3]}
    records = [{"methods": {"m": genuine}}, {"methods": {"m": impostor}}]
    same = np.array([True, False])
    f = np.array([0.0, 0.5, 1.0])
    cols, curves = field_columns(records, "m", config, same, np.array([0.5, 0.5]), f, f)
    # deletion: both right at 0, both wrong at 50 % and 100 %: (1 + 0) / 2 * 0.5 / 1
    assert curves["accuracy_deletion"] == [1.0, 0.0, 0.0]
    assert cols["acc_del_auc"] == pytest.approx(0.25)
    # insertion: both wrong at 0 (0.1 rejected, 0.7 accepted), both right from 50 %
    assert curves["accuracy_insertion"] == [0.0, 1.0, 1.0]
    assert cols["acc_ins_auc"] == pytest.approx(0.75)
    # only 50 % lies in 5..95 %: the genuine pair is rejected there, the impostor accepted
    assert cols["fnmr_mean_5_95"] == 1.0 and cols["fmr_mean_5_95"] == 1.0
    assert cols["road_morf_auc"] == pytest.approx(0.6)  # genuine only: (0.9 + 0.3) / 2
    assert cols["road_lerf_auc"] == pytest.approx(0.85)
    # genuine: LeRF - MoRF = 0.25; impostor: MoRF 0.4 - LeRF 0.25 = 0.15; mean 0.2
    assert cols["road_gap"] == pytest.approx(0.2)
    assert cols["mprt_cascading_last"] == pytest.approx(0.1)
    assert cols["mprt_independent_mean"] == pytest.approx(0.3)
    assert cols["passes"] == 6
    import pandas as pd

    table = pd.DataFrame([{"method": "m", **cols, "time_s": 0.5, "del_auc_genuine": 0.9},
                          {"method": "n", **cols, "time_s": 2.0, "del_auc_genuine": 0.8}])
    md = to_markdown(table)
    assert "ROAD LeRF - MoRF (imp.: MoRF - LeRF) ↑" in md and "| m |" in md and "| 6 |" in md
    assert write_cost_faithfulness(tmp_path, table) == [tmp_path / "cost_faithfulness.html",
                                                        tmp_path / "cost_faithfulness.png"]
    assert (tmp_path / "cost_faithfulness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "cost_faithfulness.html").read_text()
    assert html.count("Pareto front") == 4  # road gap, accuracy AUC, deletion AUC, FNMR


def test_example_pages_load_one_local_plotly_js_and_writes_are_atomic(tmp_path,
                                                                        monkeypatch):
    """compare's example pages work offline: each loads the one ``plotly.min.js`` written
    beside them (a relative path, never the CDN), written once; the curves page inlines it.
    A write failing midway leaves no partial page and no temporary file."""
    import re

    import plotly.graph_objects as go

    from xcos_xai.viz import writers
    from xcos_xai.viz.compare_figures import save_example_maps

    rng = np.random.default_rng(0)
    chip = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    maps = {name: [rng.normal(size=(16, 16)).tolist()] * 2 for name in ("xcos", "random")}
    records = [{"i": i, "same": i == 0, "score": 0.5, "path_a": "a.jpg", "path_b": "b.jpg",
                "example_maps": maps} for i in range(2)]
    written = save_example_maps(records, {0: (chip, chip), 1: (chip, chip)}, tmp_path)
    pages = [p for p in written if p.suffix == ".html"]
    assert len(pages) == 2 and len([p for p in written if p.suffix == ".png"]) == 2
    js = tmp_path / writers.PLOTLY_JS
    assert js.read_text(encoding="utf-8") == writers.get_plotlyjs()
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", text) == ["plotly.min.js"]
        assert "cdn.plot.ly" not in text and len(text) < 200_000  # plotly.js not inlined
    stamp = js.stat().st_mtime_ns
    save_example_maps(records[:1], {0: (chip, chip)}, tmp_path)
    assert js.stat().st_mtime_ns == stamp  # written once, then reused
    curves = writers.write_figure_html(go.Figure(go.Scatter(y=[1, 2])), tmp_path / "c.html")
    text = curves.read_text(encoding="utf-8")
    assert "<script src" not in text and 'src="http' not in text and len(text) > 1_000_000

    before = sorted(p.name for p in tmp_path.iterdir())

    def torn_savefig(self, fname, *args, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", torn_savefig)
    records[0]["i"] = 7  # a new page
    with pytest.raises(OSError, match="No space"):
        save_example_maps(records[:1], {7: (chip, chip)}, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no example_007_*, no *.tmp


def test_device_choice_and_its_error(tmp_path, capsys, monkeypatch):
    import torch

    from xcos_xai.cli import main
    from xcos_xai.core.device import resolve_device

    assert resolve_device("cpu") == "cpu"
    if torch.cuda.is_available():  # pragma: no cover - GPU machines
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("LOCAL_RANK", "1")
        assert resolve_device("auto") == "cuda:1"
        return
    assert resolve_device("auto") == "cpu"
    bad = tmp_path / "a.jpg"
    bad.write_bytes(b"x")
    assert main(["explain", str(bad), str(bad), "--device", "cuda:0", "--out",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "--device cpu" in err


def test_field_method_options_come_from_the_explainer_classes():
    """CorrRISE's masks and seed are its class's ``compare_options``, not a branch on its
    name; the new methods carry their own short labels."""
    from xcos_xai.explainers import explainer_class

    config = CompareConfig(corrrise_masks=40, seed=3)
    assert config.method_kwargs("corrrise") == {"baseline": "blur", "n_masks": 40, "seed": 3}
    assert config.method_kwargs("xssab") == {"baseline": "blur"}
    labels = {explainer_class(n).short_label for n in ("xssab", "corrrise", "fggb",
                                                       "multiscale_occlusion")}
    assert len(labels) == 4 and "pair explainer" not in labels
