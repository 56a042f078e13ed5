"""Labeled Faces in the Wild: the View 1 and View 2 protocol files and the image paths.

View 2 (``pairs.txt``): 10 folds of 300 matched then 300 mismatched pairs; ``people.txt``
lists the same 10 folds' people (identity-disjoint folds). View 1 (``pairsDevTrain.txt``,
``pairsDevTest.txt``) is for development. Parsers are pure functions of the text, and every
malformed line raises one :class:`ValueError` naming the file, the line and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .._env import DataNotFoundError, dataset_dir


@dataclass(frozen=True)
class FacePair:
    fold: int
    same: bool
    name_a: str
    index_a: int
    name_b: str
    index_b: int

    @property
    def path_a(self) -> str:
        return image_relpath(self.name_a, self.index_a)

    @property
    def path_b(self) -> str:
        return image_relpath(self.name_b, self.index_b)


def image_relpath(name: str, index: int) -> str:
    """``Name/Name_000N.jpg``, the standard LFW file name of image ``index`` of ``name``."""
    return f"{name}/{name}_{index:04d}.jpg"


def _int(token: str, source: str, line_no: int, what: str, minimum: int = 1) -> int:
    try:
        value = int(token)
    except ValueError:
        raise ValueError(f"{source} line {line_no}: {what} {token!r} is not an integer; "
                         "fix or re-extract the file") from None
    if value < minimum:
        raise ValueError(f"{source} line {line_no}: {what} must be >= {minimum}, got {value}; "
                         "fix or re-extract the file")
    return value


def _lines(text: str) -> list[tuple[int, list[str]]]:
    return [(i + 1, line.split()) for i, line in enumerate(text.splitlines()) if line.strip()]


def _pair_line(fields, source, line_no, fold, want_same) -> FacePair:
    if len(fields) == 3 and want_same:
        name, a, b = fields
        return FacePair(fold, True, name, _int(a, source, line_no, "image index"), name,
                        _int(b, source, line_no, "image index"))
    if len(fields) == 4 and not want_same:
        na, a, nb, b = fields
        return FacePair(fold, False, na, _int(a, source, line_no, "image index"), nb,
                        _int(b, source, line_no, "image index"))
    kind = "matched 'name n1 n2'" if want_same else "mismatched 'name1 n1 name2 n2'"
    raise ValueError(f"{source} line {line_no}: expected a {kind} pair, got {' '.join(fields)!r}; "
                     "the file is malformed or the header counts are wrong")


def parse_pairs(text: str, source: str = "pairs.txt") -> list[FacePair]:
    """Pairs in file order. The header is ``folds n`` (View 2) or ``n`` (View 1, one fold):
    each fold holds ``n`` matched then ``n`` mismatched pairs."""
    lines = _lines(text)
    if not lines:
        raise ValueError(f"{source} is empty: give the LFW pairs file")
    line_no, header = lines[0]
    if len(header) == 2:
        folds = _int(header[0], source, line_no, "fold count")
        per = _int(header[1], source, line_no, "pairs per fold")
    elif len(header) == 1:
        folds, per = 1, _int(header[0], source, line_no, "pair count")
    else:
        raise ValueError(f"{source} line {line_no}: expected a header 'folds n' or 'n', got "
                         f"{' '.join(header)!r}")
    body = lines[1:]
    if len(body) != 2 * folds * per:
        raise ValueError(f"{source}: the header promises {2 * folds * per} pairs but "
                         f"{len(body)} lines follow; the file is truncated or malformed")
    pairs = []
    for k, (ln, fields) in enumerate(body):
        fold, pos = divmod(k, 2 * per)
        pairs.append(_pair_line(fields, source, ln, fold, pos < per))
    return pairs


def parse_people(text: str, source: str = "people.txt") -> list[tuple[int, str, int]]:
    """``(fold, name, n_images)`` rows. ``people.txt`` is a fold count, then per fold a count
    line and that many ``name n`` lines; the View 1 lists are a count and ``name n`` lines."""
    lines = _lines(text)
    if not lines:
        raise ValueError(f"{source} is empty: give the LFW people file")
    i = 0

    def take_block(fold: int):
        nonlocal i
        if i >= len(lines) or len(lines[i][1]) != 1:
            ln = lines[i][0] if i < len(lines) else "end"
            raise ValueError(f"{source} line {ln}: expected a count line for fold {fold}")
        count = _int(lines[i][1][0], source, lines[i][0], "person count", minimum=0)
        i += 1
        rows = []
        for _ in range(count):
            if i >= len(lines):
                raise ValueError(f"{source}: fold {fold} promises {count} people but the file "
                                 "ends early; it is truncated")
            ln, fields = lines[i]
            if len(fields) != 2:
                raise ValueError(f"{source} line {ln}: expected 'name n_images', got "
                                 f"{' '.join(fields)!r}")
            rows.append((fold, fields[0], _int(fields[1], source, ln, "image count")))
            i += 1
        return rows

    rows = []
    second_is_count = len(lines) > 1 and len(lines[1][1]) == 1
    if second_is_count:  # View 2: number of folds first
        folds = _int(lines[0][1][0], source, lines[0][0], "fold count")
        i = 1
        for fold in range(folds):
            rows += take_block(fold)
    else:
        rows = take_block(0)
    if i != len(lines):
        raise ValueError(f"{source} line {lines[i][0]}: unexpected extra content after the "
                         "last fold; the counts do not match the lines")
    return rows


class LFW:
    """LFW on disk. ``root`` holds the protocol files and the image folder.

    Args:
        root: the LFW folder; default ``$XCOS_XAI_DATA/lfw``.
        images: the image folder's name (``lfw-deepfunneled``; ``lfw`` for the originals).
    """

    def __init__(self, root: str | Path | None = None, images: str = "lfw-deepfunneled"):
        self.root = Path(root) if root is not None else dataset_dir("lfw")
        self.image_root = self.root / images
        if not self.image_root.is_dir():
            raise DataNotFoundError(f"LFW images not found at {self.image_root}: point "
                                    "XCOS_XAI_DATA (or root=) at the folder holding "
                                    f"{images}/ and pairs.txt")

    def _read(self, name: str) -> str:
        path = self.root / name
        if not path.is_file():
            raise DataNotFoundError(f"LFW protocol file {path} is missing: put {name} beside "
                                    f"{self.image_root.name}/")
        return path.read_text(encoding="utf-8")

    def pairs(self, view: int = 2) -> list[FacePair]:
        """View 2: the 6000 pairs of ``pairs.txt``; View 1: ``pairsDevTest.txt``."""
        name = {2: "pairs.txt", 1: "pairsDevTest.txt"}[view]
        return parse_pairs(self._read(name), name)

    def dev_train_pairs(self) -> list[FacePair]:
        return parse_pairs(self._read("pairsDevTrain.txt"), "pairsDevTrain.txt")

    def people(self, view: int = 2) -> list[tuple[int, str, int]]:
        """View 2: ``people.txt`` (10 folds); View 1: DevTrain people as fold 0, DevTest 1."""
        if view == 2:
            return parse_people(self._read("people.txt"), "people.txt")
        train = parse_people(self._read("peopleDevTrain.txt"), "peopleDevTrain.txt")
        test = parse_people(self._read("peopleDevTest.txt"), "peopleDevTest.txt")
        return [(0, n, c) for _, n, c in train] + [(1, n, c) for _, n, c in test]

    def image_path(self, name: str, index: int) -> Path:
        return self.image_root / image_relpath(name, index)

    def images(self) -> list[Path]:
        """Every image of ``people.txt``, sorted by relative path."""
        return [self.image_root / p for p in sorted(
            image_relpath(n, i) for _, n, c in self.people() for i in range(1, c + 1))]

    def identities(self) -> list[str]:
        return sorted({n for _, n, _ in self.people()})

    def pairs_frame(self, view: int = 2) -> pd.DataFrame:
        rows = [{"fold": p.fold, "same": p.same, "name_a": p.name_a, "index_a": p.index_a,
                 "name_b": p.name_b, "index_b": p.index_b, "path_a": p.path_a,
                 "path_b": p.path_b} for p in self.pairs(view)]
        return pd.DataFrame(rows)

    def check_fold_disjointness(self) -> None:
        """Every View-2 pair uses people of its own ``people.txt`` fold only (raises if not)."""
        fold_of = {n: f for f, n, _ in self.people()}
        for p in self.pairs():
            for name in (p.name_a, p.name_b):
                if fold_of.get(name) != p.fold:
                    raise ValueError(f"pairs.txt fold {p.fold} uses {name}, who is in "
                                     f"people.txt fold {fold_of.get(name)}")
