"""Short notes on how each face of a pair was found: what a reader needs, not a warning dump.

The aligner warns (``MultipleFacesWarning``) for developers; figures, widgets, notebooks and
the command line show these one-line notes instead, and a badge on the face in the figure.
"""

from __future__ import annotations

import numpy as np

# a chip row/column counts as padding when this share of its pixels is (near) black
_DARK, _BAND_LINE, _BAND_MIN = 8, 0.9, 0.05


def padding_share(chip: np.ndarray) -> float:
    """The share ``[0, 1]`` of an ``(h, w, 3)`` uint8 chip taken by black padding bands: the
    larger of the shares of its rows and of its columns that are (almost) all black, which is
    what ``dlib.get_face_chip`` fills in where the crop runs past the photo's edge.

    Example:
        >>> chip = np.full((10, 10, 3), 120, np.uint8)
        >>> chip[:, :3] = 0  # three black columns
        >>> padding_share(chip)
        0.3
    """
    dark = np.asarray(chip).max(axis=2) < _DARK
    return float(max((dark.mean(axis=1) > _BAND_LINE).mean(),
                     (dark.mean(axis=0) > _BAND_LINE).mean()))


def face_notes(info: dict | None, chip: np.ndarray | None = None) -> list[str]:
    """Notes on one face: ``info`` as in ``PairExplanation.info["face_a"]`` (``n_faces_found``,
    ``reason``), ``chip`` the aligned face. ``[]`` when the face was found cleanly.

    Example:
        >>> face_notes({"n_faces_found": 2, "reason": "2 faces detected: took ..."})
        ['2 faces: took the largest']
        >>> face_notes({"n_faces_found": 0, "reason": "no face detected: fallback box (1, 2)"})
        ['no face found: fixed box']
        >>> face_notes({"n_faces_found": 1, "reason": "one face detected"})
        []
    """
    notes = []
    info = info or {}
    n, reason = info.get("n_faces_found"), str(info.get("reason", ""))
    if n is not None and n > 1:
        notes.append(f"{int(n)} faces: took the largest")
    elif reason.startswith("no face detected"):
        notes.append("no face found: fixed box")
    if chip is not None:
        share = padding_share(chip)
        if share >= _BAND_MIN:
            notes.append(f"black band: {100 * share:.0f} % outside the photo")
    return notes


def detection_notes(explanation) -> dict[str, list[str]]:
    """``{"A": [...], "B": [...]}``: the notes of both faces of a ``PairExplanation``."""
    info = getattr(explanation, "info", None) or {}
    return {side: face_notes(info.get(f"face_{side.lower()}"),
                             getattr(explanation, f"face_{side.lower()}", None))
            for side in ("A", "B")}


def notes_line(explanation) -> str:
    """One line for a reader, e.g. ``"face B: no face found: fixed box"``; ``""``
    when both faces were found cleanly."""
    return "; ".join(f"face {side}: {note}" for side, notes in
                     detection_notes(explanation).items() for note in notes)


def is_alignment_failure(notes: str) -> bool:
    """Whether a notes line (:func:`notes_line`) says a face was not found cleanly: no
    detection (a fixed box was used) or a black band (the crop runs past the photo). Several
    faces alone is not a failure: the right one is usually taken.

    Example:
        >>> is_alignment_failure("face A: 2 faces: took the largest")
        False
        >>> is_alignment_failure("face A: 2 faces: took the largest; face B: no face found: "
        ...                      "fixed box")
        True
    """
    return any(part.split(": ", 1)[-1].startswith(("no face found", "black band"))
               for part in notes.split("; "))


def alignment_suspect(explanation) -> bool:
    """Whether a face of the pair was not found cleanly (:func:`is_alignment_failure`): then
    the alignment is a likelier cause of a wrong decision than the faces themselves."""
    return is_alignment_failure(notes_line(explanation))
