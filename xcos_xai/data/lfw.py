"""Labeled Faces in the Wild: the View 1 and View 2 protocol files and the image paths.

View 2 (``pairs.txt``): a header ``10<TAB>300``, then 10 folds of 300 matched pairs
(``name n1 n2``) followed by 300 mismatched pairs (``name1 n1 name2 n2``); ``people.txt``
lists the same 10 folds' people (the folds are identity-disjoint). View 1
(``pairsDevTrain.txt``, ``pairsDevTest.txt``; ``peopleDevTrain.txt``, ``peopleDevTest.txt``)
is for development: a header ``n``, then ``n`` matched and ``n`` mismatched pairs.
Image ``n`` of ``Name`` is ``<images>/Name/Name_%04d.jpg`` (indices start at 1).

The parsers are pure functions of the text. Every malformed input raises one
:class:`ValueError` naming the file, the line and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .._env import DataNotFoundError, dataset_dir

__all__ = [
    "LFW",
    "FacePair",
    "image_relpath",
    "parse_pairs",
    "parse_people",
]

PAIRS_FILES = {2: "pairs.txt", 1: "pairsDevTest.txt"}
DEV_TRAIN_PAIRS = "pairsDevTrain.txt"
PEOPLE_FILE = "people.txt"
DEV_PEOPLE_FILES = ("peopleDevTrain.txt", "peopleDevTest.txt")

_FIX = "restore the official LFW file (the data README lists its SHA-256) or correct this line"
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class FacePair:
    """One verification pair. ``fold`` is the protocol fold (0-based; 0 for View 1),
    ``same`` is ``True`` for a matched pair; indices are LFW's 1-based image numbers."""

    fold: int
    same: bool
    name_a: str
    index_a: int
    name_b: str
    index_b: int

    @property
    def path_a(self) -> str:
        """Relative path of image A, ``Name/Name_000N.jpg``."""
        return image_relpath(self.name_a, self.index_a)

    @property
    def path_b(self) -> str:
        """Relative path of image B, ``Name/Name_000N.jpg``."""
        return image_relpath(self.name_b, self.index_b)


def image_relpath(name: str, index: int) -> str:
    """``Name/Name_000N.jpg``, the standard LFW file name of image ``index`` (from 1)."""
    if int(index) < 1:
        raise ValueError(f"LFW image indices start at 1, got {index} for {name!r}")
    return f"{name}/{name}_{int(index):04d}.jpg"


# --------------------------------------------------------------------------- parsing


def _err(source: str, line_no: int | str, problem: str, fix: str = _FIX) -> ValueError:
    return ValueError(f"{source} line {line_no}: {problem}; {fix}")


def _lines(text: str) -> list[tuple[int, list[str]]]:
    """Non-blank lines as ``(1-based line number, whitespace-separated fields)``."""
    if not isinstance(text, str):
        raise TypeError(f"expected the file's text as str, got {type(text).__name__}")
    text = text.removeprefix("\ufeff")
    return [(i + 1, line.split()) for i, line in enumerate(text.splitlines()) if line.strip()]


def _int(token: str, source: str, line_no: int, what: str, minimum: int = 1) -> int:
    if not _DIGITS.fullmatch(token):
        raise _err(source, line_no, f"{what} {token!r} is not a "
                   f"{'positive' if minimum >= 1 else 'non-negative'} integer")
    value = int(token)
    if value < minimum:
        raise _err(source, line_no, f"{what} must be >= {minimum}, got {value}")
    return value


def _name(token: str, source: str, line_no: int) -> str:
    if "/" in token or "\\" in token or token in (".", "..") or _DIGITS.fullmatch(token):
        raise _err(source, line_no, f"{token!r} is not a person name (names look like "
                   "'Abel_Pacheco')")
    return token


_MATCHED = "a matched pair 'name<TAB>n1<TAB>n2'"
_MISMATCHED = "a mismatched pair 'name1<TAB>n1<TAB>name2<TAB>n2'"


def _pair_line(fields: list[str], source: str, line_no: int, fold: int,
               want_same: bool) -> FacePair:
    where = f"fold {fold}'s {'matched' if want_same else 'mismatched'} block"
    if want_same and len(fields) == 3:
        name = _name(fields[0], source, line_no)
        a = _int(fields[1], source, line_no, "image index")
        b = _int(fields[2], source, line_no, "image index")
        if a == b:
            raise _err(source, line_no, f"matched pair compares image {a} of {name} with "
                       "itself")
        return FacePair(fold, True, name, a, name, b)
    if not want_same and len(fields) == 4:
        name_a = _name(fields[0], source, line_no)
        a = _int(fields[1], source, line_no, "image index")
        name_b = _name(fields[2], source, line_no)
        b = _int(fields[3], source, line_no, "image index")
        if name_a == name_b:
            raise _err(source, line_no, f"mismatched pair names the same person ({name_a}) "
                       "twice")
        return FacePair(fold, False, name_a, a, name_b, b)
    expected = _MATCHED if want_same else _MISMATCHED
    raise _err(source, line_no, f"expected {expected} (line falls in {where}), got "
               f"{len(fields)} field(s) {' '.join(fields)!r}",
               "a line is missing or extra above this one, the header counts are wrong, or "
               "this line is damaged; " + _FIX)


def parse_pairs(text: str, source: str = "pairs.txt") -> list[FacePair]:
    """The pairs of an LFW pairs file, in file order.

    The header is ``folds<TAB>n`` (View 2, ``pairs.txt``) or ``n`` (View 1, one fold 0);
    each fold holds ``n`` matched then ``n`` mismatched pairs. Blank lines are ignored.

    Raises:
        ValueError: naming ``source``, the line number and the fix, for wrong counts,
            missing or extra fields, non-integer indices, indices below 1, and pairs that
            compare an image with itself or a person with himself as a mismatch.
    """
    lines = _lines(text)
    if not lines:
        raise _err(source, 1, "the file is empty", "give the text of an LFW pairs file")
    line_no, header = lines[0]
    if len(header) == 2:
        folds = _int(header[0], source, line_no, "fold count")
        per = _int(header[1], source, line_no, "pairs per fold and class")
    elif len(header) == 1:
        folds, per = 1, _int(header[0], source, line_no, "pair count per class")
    else:
        raise _err(source, line_no, f"expected a header 'folds<TAB>n' (View 2) or 'n' (View "
                   f"1), got {' '.join(header)!r}")
    body = lines[1:]
    expected = 2 * folds * per
    pairs = []
    for k, (ln, fields) in enumerate(body[:expected]):
        fold, pos = divmod(k, 2 * per)
        pairs.append(_pair_line(fields, source, ln, fold, pos < per))
    if len(body) < expected:
        last = lines[-1][0]
        raise _err(source, last + 1, f"the file ends after {len(body)} pairs but the header "
                   f"(line {line_no}) promises {folds} fold(s) x ({per} matched + {per} "
                   f"mismatched) = {expected}", "the file is truncated; " + _FIX)
    if len(body) > expected:
        raise _err(source, body[expected][0], f"unexpected line after the {expected} pairs "
                   f"the header (line {line_no}) promises",
                   "fix the header counts or remove the extra lines; " + _FIX)
    return pairs


def parse_people(text: str, source: str = "people.txt",
                 folded: bool | None = None) -> list[tuple[int, str, int]]:
    """``(fold, name, n_images)`` rows of an LFW people file, in file order.

    ``people.txt`` (``folded=True``) is a fold count, then per fold a count line and that
    many ``name<TAB>n_images`` lines; the View 1 lists (``folded=False``) are one count and
    ``name<TAB>n_images`` lines, all in fold 0. ``folded=None`` tells them apart by whether
    the second non-blank line is a lone count.

    Raises:
        ValueError: naming ``source``, the line number and the fix, for wrong counts,
            malformed lines, image counts below 1 and people listed twice.
    """
    lines = _lines(text)
    if not lines:
        raise _err(source, 1, "the file is empty", "give the text of an LFW people file")
    if folded is None:
        folded = len(lines) > 1 and len(lines[1][1]) == 1
    pos = 0
    seen: dict[str, int] = {}

    def block(fold: int) -> list[tuple[int, str, int]]:
        nonlocal pos
        if pos >= len(lines):
            raise _err(source, lines[-1][0] + 1, f"the file ends before fold {fold}'s count "
                       "line", "the file is truncated or the fold count is wrong; " + _FIX)
        ln, fields = lines[pos]
        if len(fields) != 1:
            raise _err(source, ln, f"expected fold {fold}'s person count (one integer), got "
                       f"{' '.join(fields)!r}",
                       "a count is missing or a fold has more people than its count says; "
                       + _FIX)
        count = _int(fields[0], source, ln, "person count", minimum=0)
        pos += 1
        rows = []
        for j in range(count):
            if pos >= len(lines):
                raise _err(source, lines[-1][0] + 1, f"fold {fold} (count on line {ln}) "
                           f"promises {count} people but the file ends after {j}",
                           "the file is truncated; " + _FIX)
            row_ln, row = lines[pos]
            if len(row) != 2:
                raise _err(source, row_ln, f"expected 'name<TAB>n_images' (person {j + 1} of "
                           f"{count} in fold {fold}), got {' '.join(row)!r}",
                           "a line is missing or extra, or the count on line "
                           f"{ln} is wrong; " + _FIX)
            name = _name(row[0], source, row_ln)
            if name in seen:
                raise _err(source, row_ln, f"{name} is listed twice (first on line "
                           f"{seen[name]})")
            seen[name] = row_ln
            rows.append((fold, name, _int(row[1], source, row_ln, "image count")))
            pos += 1
        return rows

    rows: list[tuple[int, str, int]] = []
    if folded:
        ln, fields = lines[0]
        if len(fields) != 1:
            raise _err(source, ln, f"expected the fold count (one integer), got "
                       f"{' '.join(fields)!r}")
        folds = _int(fields[0], source, ln, "fold count")
        pos = 1
        for fold in range(folds):
            rows += block(fold)
    else:
        rows = block(0)
    if pos != len(lines):
        raise _err(source, lines[pos][0], "unexpected line after the last fold's people",
                   "a count is too small, or remove the extra lines; " + _FIX)
    return rows


# --------------------------------------------------------------------------- on disk


IMAGE_FOLDERS = ("lfw-deepfunneled", "lfw_funneled", "lfw-funneled", "lfw")
"""The image folders of the official LFW tarballs (``lfw-deepfunneled.tgz``,
``lfw-funneled.tgz``, ``lfw.tgz``), in the order :class:`LFW` looks for them. The bundled
heads were trained on deep-funneled images (and the LFW alignment fallback box is theirs)."""


def find_image_folder(root: Path, images: str | Path | None = None) -> Path:
    """The LFW image folder: ``images`` (a folder name inside ``root``, or a path), or the
    first of :data:`IMAGE_FOLDERS` found in ``root``. A folder that only holds one folder of
    its own name (as some archives unpack) is entered."""
    if images is None:
        found = [root / name for name in IMAGE_FOLDERS if (root / name).is_dir()]
        if not found:
            raise DataNotFoundError(
                f"LFW images not found at {root / IMAGE_FOLDERS[0]} (nor "
                f"{', '.join(IMAGE_FOLDERS[1:])} there): point XCOS_XAI_DATA (or root=) at the "
                "folder holding pairs.txt and an image folder as an official archive unpacks "
                "it, or name yours with images= (command line: --images)")
        folder = found[0]
    else:
        folder = Path(images).expanduser()
        folder = folder if folder.is_absolute() else root / folder
        if not folder.is_dir():
            raise DataNotFoundError(f"LFW images not found at {folder}: give images= (command "
                                    "line: --images) the image folder, e.g. one of "
                                    f"{', '.join(IMAGE_FOLDERS)}")
    inner = folder / folder.name
    entries = list(folder.iterdir())
    return inner if entries == [inner] and inner.is_dir() else folder


class LFW:
    """LFW on disk: ``root`` holds the protocol files and the image folder.

    Args:
        root: the LFW folder; default ``$XCOS_XAI_DATA/lfw`` (via ``dataset_dir("lfw")``).
        images: the image folder: a name inside ``root`` or a path; default: the first of
            ``lfw-deepfunneled``, ``lfw_funneled``, ``lfw-funneled``, ``lfw`` (the official
            archives' folders) found in ``root``.
    """

    def __init__(self, root: str | Path | None = None, images: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else dataset_dir("lfw")
        self.image_root = find_image_folder(self.root, images)
        self._cache: dict[str, list] = {}

    def __repr__(self) -> str:
        return f"LFW(root={str(self.root)!r}, images={self.image_root.name!r})"

    def _read(self, name: str) -> str:
        path = self.root / name
        if not path.is_file():
            raise DataNotFoundError(f"LFW protocol file {path} is missing: put {name} beside "
                                    f"{self.image_root.name}/")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:  # a ValueError, but one that names no file
            raise ValueError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason}): "
                             "restore the official LFW file (the data README lists its "
                             "SHA-256)") from None

    def _pairs_file(self, name: str) -> list[FacePair]:
        if name not in self._cache:
            self._cache[name] = parse_pairs(self._read(name), str(self.root / name))
        return list(self._cache[name])

    def _people_file(self, name: str, folded: bool) -> list[tuple[int, str, int]]:
        if name not in self._cache:
            self._cache[name] = parse_people(self._read(name), str(self.root / name),
                                             folded=folded)
        return list(self._cache[name])

    @staticmethod
    def _view(view: int) -> int:
        if view not in (1, 2):
            raise ValueError(f"view must be 1 (development) or 2 (the 10-fold protocol), "
                             f"got {view!r}")
        return view

    def pairs(self, view: int = 2) -> list[FacePair]:
        """The pairs in file order: View 2 is ``pairs.txt`` (6000 pairs, folds 0-9); View 1
        is ``pairsDevTest.txt`` (1000 pairs, fold 0)."""
        return self._pairs_file(PAIRS_FILES[self._view(view)])

    def dev_train_pairs(self) -> list[FacePair]:
        """View 1's ``pairsDevTrain.txt`` (2200 pairs, fold 0)."""
        return self._pairs_file(DEV_TRAIN_PAIRS)

    def people(self, view: int = 2) -> list[tuple[int, str, int]]:
        """``(fold, name, n_images)`` rows. View 2: ``people.txt`` (folds 0-9). View 1:
        ``peopleDevTrain.txt`` as fold 0 then ``peopleDevTest.txt`` as fold 1."""
        if self._view(view) == 2:
            return self._people_file(PEOPLE_FILE, folded=True)
        train, test = (self._people_file(n, folded=False) for n in DEV_PEOPLE_FILES)
        return [(0, n, c) for _, n, c in train] + [(1, n, c) for _, n, c in test]

    def dev_train_people(self) -> list[tuple[int, str, int]]:
        """``peopleDevTrain.txt`` rows (fold 0)."""
        return self._people_file(DEV_PEOPLE_FILES[0], folded=False)

    def dev_test_people(self) -> list[tuple[int, str, int]]:
        """``peopleDevTest.txt`` rows (fold 0)."""
        return self._people_file(DEV_PEOPLE_FILES[1], folded=False)

    def image_path(self, name: str, index: int) -> Path:
        """Absolute path of image ``index`` (from 1) of ``name``."""
        return self.image_root / image_relpath(name, index)

    def images(self) -> list[Path]:
        """Every image ``people.txt`` lists (13,233), sorted by relative path. Use
        :meth:`check_images` to confirm they are on disk."""
        rels = sorted(image_relpath(n, i) for _, n, c in self.people() for i in range(1, c + 1))
        return [self.image_root / r for r in rels]

    def identities(self) -> list[str]:
        """Every person of ``people.txt`` (5,749), sorted."""
        return sorted(n for _, n, _ in self.people())

    def pairs_frame(self, view: int = 2) -> pd.DataFrame:
        """The pairs as a DataFrame: fold, same, name_a, index_a, name_b, index_b, and the
        relative image paths path_a, path_b, in file order."""
        columns = ["fold", "same", "name_a", "index_a", "name_b", "index_b", "path_a",
                   "path_b"]
        rows = [(p.fold, p.same, p.name_a, p.index_a, p.name_b, p.index_b, p.path_a,
                 p.path_b) for p in self.pairs(view)]
        frame = pd.DataFrame(rows, columns=columns)
        return frame.astype({"fold": int, "same": bool, "index_a": int, "index_b": int})

    def check_fold_disjointness(self, view: int = 2) -> None:
        """Check that every pair uses only people of its own fold, and image indices those
        people have.

        View 2: ``pairs.txt`` fold ``k`` against ``people.txt`` fold ``k`` (so the 10 folds
        are identity-disjoint). View 1: ``pairsDevTrain.txt`` against
        ``peopleDevTrain.txt`` and ``pairsDevTest.txt`` against ``peopleDevTest.txt``.

        Raises:
            ValueError: listing (up to 5) offending pairs.
        """
        if self._view(view) == 2:
            checks = [(PAIRS_FILES[2], self.pairs(2), PEOPLE_FILE, self.people(2), False)]
        else:
            checks = [(DEV_TRAIN_PAIRS, self.dev_train_pairs(), DEV_PEOPLE_FILES[0],
                       self.dev_train_people(), True),
                      (PAIRS_FILES[1], self.pairs(1), DEV_PEOPLE_FILES[1],
                       self.dev_test_people(), True)]
        problems = []
        for pairs_name, pairs, people_name, people, single in checks:
            fold_of = {n: f for f, n, _ in people}
            count_of = {n: c for _, n, c in people}
            for i, p in enumerate(pairs):
                for name, index in ((p.name_a, p.index_a), (p.name_b, p.index_b)):
                    if name not in fold_of:
                        problems.append(f"{pairs_name} pair {i}: {name} is not in "
                                        f"{people_name}")
                    elif not single and fold_of[name] != p.fold:
                        problems.append(f"{pairs_name} pair {i} (fold {p.fold}): {name} is in "
                                        f"{people_name} fold {fold_of[name]}")
                    elif index > count_of[name]:
                        problems.append(f"{pairs_name} pair {i}: {name} has {count_of[name]} "
                                        f"images in {people_name}, the pair uses image {index}")
        if problems:
            shown = "; ".join(problems[:5])
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise ValueError(f"LFW folds are not identity-disjoint or disagree with the people "
                             f"lists: {shown}{more}; restore the official protocol files")

    def check_images(self) -> int:
        """Check that every image named by ``people.txt`` and by the pairs files is on disk
        (``pairs.txt``, and the View 1 pairs files when present); returns how many files
        were checked.

        Raises:
            DataNotFoundError: listing (up to 5) missing files.
        """
        rels = {str(p.relative_to(self.image_root)) for p in self.images()}
        files = [PAIRS_FILES[2]] + [n for n in (PAIRS_FILES[1], DEV_TRAIN_PAIRS)
                                    if (self.root / n).is_file()]
        for name in files:
            rels.update(x for p in self._pairs_file(name) for x in (p.path_a, p.path_b))
        missing = sorted(r for r in rels if not (self.image_root / r).is_file())
        if missing:
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise DataNotFoundError(f"{len(missing)} LFW image(s) missing under "
                                    f"{self.image_root}: {', '.join(missing[:5])}{more}; "
                                    "re-extract the image folder")
        return len(rels)
