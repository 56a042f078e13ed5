"""What a reader sees: detection notes as one short line (no warning dump with paths) in the
command line and the figures; attribution rows clipped at a percentile, one colour bar each."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from xcos_xai.viz.notes import face_notes, is_alignment_failure, notes_line, padding_share


def test_padding_share_counts_black_rows_or_columns():
    chip = np.full((20, 20, 3), 90, np.uint8)
    assert padding_share(chip) == 0.0
    chip[:, :4] = 0  # 4 of 20 columns black: the crop ran past the photo's left edge
    assert padding_share(chip) == pytest.approx(0.2)
    chip[:5] = 3  # 5 of 20 rows (nearly) black too: the larger share counts
    assert padding_share(chip) == pytest.approx(0.25)
    chip = np.full((20, 20, 3), 90, np.uint8)
    chip[::2, :6] = 0  # half-dark columns (a dark pattern, not padding) do not count
    assert padding_share(chip) == 0.0


def test_face_notes_and_line():
    clean = {"n_faces_found": 1, "reason": "one face detected"}
    grey = np.full((10, 10, 3), 100, np.uint8)
    banded = grey.copy()
    banded[:, :2] = 0
    assert face_notes(clean, grey) == []
    assert face_notes(clean, banded) == ["black band: 20 % outside the photo"]
    assert face_notes({"n_faces_found": 3, "reason": "3 faces detected: ..."}) == [
        "3 faces: took the largest"]

    class Pair:  # what notes_line reads of a PairExplanation
        info = {"face_a": clean, "face_b": {"n_faces_found": 0,
                                           "reason": "no face detected: fallback box (1, 2)"}}
        face_a = face_b = grey

    assert notes_line(Pair()) == "face B: no face found: fixed box"
    assert is_alignment_failure(notes_line(Pair()))
    assert not is_alignment_failure("")


@pytest.mark.slow
def test_cli_explain_prints_a_note_not_a_warning(tmp_path, capsys):
    from xcos_xai.apps.photo_demo import shipped_photos
    from xcos_xai.cli import main

    hopper, astronaut = shipped_photos().values()  # the astronaut photo has 2 detections
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["explain", str(hopper), str(astronaut), "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "note: face B: 2 faces: took the largest" in out.splitlines()
    assert err == "" and not [w for w in caught if "faces detected" in str(w.message)]
    assert (tmp_path / "explanation.png").stat().st_size > 10_000


def test_attribution_rows_clip_at_a_percentile_with_one_colour_bar_each():
    from xcos_xai.viz.attribution_figure import attribution_figure

    face = np.full((10, 10, 3), 128, np.uint8)
    gradient = np.zeros((10, 10))
    gradient[0, 0] = 100.0  # one extreme pixel ...
    gradient[5:] = -1.0  # ... and a map that would be invisible beside it
    cells = np.array([[0.2, -0.1], [0.05, 0.0]])
    fig = attribution_figure(face, face, [("xCos", cells, cells),
                                          ("Saliency", gradient, -gradient)], percentile=98)
    heat = [t for t in fig.data if t.type == "heatmap"]
    # row 1: |values| of both maps 0.2, 0.1, 0.05, 0 twice each; sorted, the 98th percentile
    # sits at position 0.98 * 7 = 6.86, between the two 0.2s
    assert heat[0].zmax == pytest.approx(0.2) and heat[0].zmin == pytest.approx(-0.2)
    # row 2: 200 values, 98 are 0, 100 are 1 and 2 are 100; the 98th percentile sits at
    # position 0.98 * 199 = 195.02, among the 1s: the half-map of -1 is drawn fully coloured
    # and only the outliers saturate
    assert heat[2].zmax == pytest.approx(1.0) and heat[3].zmin == pytest.approx(-1.0)
    assert np.abs(np.asarray(heat[2].z)).max() == 100.0  # hover keeps the true values
    assert [t.showscale for t in heat] == [False, True, False, True]  # one bar per row
    assert fig.layout.title.yref == "container" and fig.layout.title.pad.t >= 30
