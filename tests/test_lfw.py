"""LFW protocol files: the real ones, and property-based tests of the parsers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xcos_xai.data.lfw import LFW, FacePair, parse_pairs, parse_people

names = st.from_regex(r"[A-Z][a-z]{1,8}_[A-Z][a-z]{1,8}", fullmatch=True)
index = st.integers(min_value=1, max_value=600)


def _write_pairs(folds: list[tuple[list, list]]) -> str:
    per = len(folds[0][0])
    lines = [f"{len(folds)}\t{per}"]
    for matched, mismatched in folds:
        lines += [f"{n}\t{a}\t{b}" for n, a, b in matched]
        lines += [f"{n1}\t{a}\t{n2}\t{b}" for n1, a, n2, b in mismatched]
    return "\n".join(lines) + "\n"


@st.composite
def pair_files(draw):
    n_folds = draw(st.integers(1, 4))
    per = draw(st.integers(1, 5))
    folds = []
    for _ in range(n_folds):
        matched = [(draw(names), draw(index), draw(index)) for _ in range(per)]
        mismatched = [(draw(names), draw(index), draw(names), draw(index)) for _ in range(per)]
        folds.append((matched, mismatched))
    return folds


@settings(max_examples=60, deadline=None)
@given(pair_files())
def test_pairs_round_trip(folds):
    pairs = parse_pairs(_write_pairs(folds))
    expected = []
    for k, (matched, mismatched) in enumerate(folds):
        expected += [FacePair(k, True, n, a, n, b) for n, a, b in matched]
        expected += [FacePair(k, False, n1, a, n2, b) for n1, a, n2, b in mismatched]
    assert pairs == expected


@settings(max_examples=80, deadline=None)
@given(pair_files(), st.data())
def test_corrupted_pairs_raise_value_error_only(folds, data):
    lines = _write_pairs(folds).splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    mutation = data.draw(st.sampled_from(["drop", "garbage", "zero", "extra_field"]))
    if mutation == "drop":
        del lines[i]
    elif mutation == "garbage":
        lines[i] = "x y z w v"
    elif mutation == "zero":
        lines[i] = lines[i].rsplit("\t", 1)[0] + "\t0"
    else:
        lines[i] = lines[i] + "\t7"
    with pytest.raises(ValueError, match="pairs.txt"):
        parse_pairs("\n".join(lines))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.tuples(names, st.integers(1, 50)), max_size=6), min_size=1,
                max_size=4))
def test_people_round_trip(folds):
    text = f"{len(folds)}\n" + "".join(
        f"{len(people)}\n" + "".join(f"{n}\t{c}\n" for n, c in people) for people in folds)
    expected = [(k, n, c) for k, people in enumerate(folds) for n, c in people]
    assert parse_people(text) == expected


def test_people_errors_name_the_line():
    with pytest.raises(ValueError, match="people.txt line 3"):
        parse_people("1\n2\nAbe_Lincoln\tmany\nBo_Diddley\t2\n")
    with pytest.raises(ValueError, match="truncated"):
        parse_people("1\n3\nAbe_Lincoln\t1\n")


def test_real_view2(lfw_root):
    lfw = LFW(lfw_root)
    pairs = lfw.pairs()
    assert len(pairs) == 6000
    for k in range(10):
        fold = [p for p in pairs if p.fold == k]
        assert sum(p.same for p in fold) == 300 and len(fold) == 600
    lfw.check_fold_disjointness()
    people = lfw.people()
    assert len(people) == 5749 and sum(c for _, _, c in people) == 13233
    assert len(lfw.images()) == 13233
    for p in pairs[::250]:
        assert (lfw.image_root / p.path_a).is_file() and (lfw.image_root / p.path_b).is_file()
    assert pairs[0] == FacePair(0, True, "Abel_Pacheco", 1, "Abel_Pacheco", 4)


def test_real_view1(lfw_root):
    lfw = LFW(lfw_root)
    assert len(lfw.dev_train_pairs()) == 2200 and len(lfw.pairs(view=1)) == 1000
    assert len(lfw.people(view=1)) == 5749
    frame = lfw.pairs_frame()
    assert list(frame.columns[:3]) == ["fold", "same", "name_a"] and len(frame) == 6000
