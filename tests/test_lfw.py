"""LFW protocol files: the real ones, a synthetic tree, and property-based parser tests."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from xcos_xai._env import DataNotFoundError
from xcos_xai.data.lfw import LFW, FacePair, image_relpath, parse_pairs, parse_people

# --------------------------------------------------------------------------- generators

_part = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=7).map(
    str.capitalize)
names = st.lists(_part, min_size=1, max_size=3).map("_".join)
index = st.integers(min_value=1, max_value=9999)
sep = st.sampled_from(["\t", " ", "\t\t", "  "])


@st.composite
def pair_protocols(draw):
    """A random valid protocol: ``(view, folds)`` with ``folds[k] = (matched, mismatched)``."""
    view = draw(st.sampled_from([1, 2]))
    n_folds = 1 if view == 1 else draw(st.integers(1, 4))
    per = draw(st.integers(1, 5))
    folds = []
    for _ in range(n_folds):
        matched = []
        for _ in range(per):
            a, b = draw(st.lists(index, min_size=2, max_size=2, unique=True))
            matched.append((draw(names), a, b))
        mismatched = []
        for _ in range(per):
            n1, n2 = draw(st.lists(names, min_size=2, max_size=2, unique=True))
            mismatched.append((n1, draw(index), n2, draw(index)))
        folds.append((matched, mismatched))
    return view, folds


def write_pairs(view: int, folds, s: str = "\t") -> str:
    """An LFW pairs file, written here independently of the parser."""
    per = len(folds[0][0])
    lines = [f"{len(folds)}{s}{per}" if view == 2 else f"{per}"]
    for matched, mismatched in folds:
        lines += [f"{n}{s}{a}{s}{b}" for n, a, b in matched]
        lines += [f"{n1}{s}{a}{s}{n2}{s}{b}" for n1, a, n2, b in mismatched]
    return "\n".join(lines) + "\n"


def expected_pairs(folds) -> list[FacePair]:
    out = []
    for k, (matched, mismatched) in enumerate(folds):
        out += [FacePair(k, True, n, a, n, b) for n, a, b in matched]
        out += [FacePair(k, False, n1, a, n2, b) for n1, a, n2, b in mismatched]
    return out


@st.composite
def people_folds(draw, max_folds: int = 4):
    """Random folds of ``(name, n_images)`` with every name listed once."""
    sizes = draw(st.lists(st.integers(0, 6), min_size=1, max_size=max_folds))
    people = draw(st.lists(st.tuples(names, st.integers(1, 600)), min_size=sum(sizes),
                           max_size=sum(sizes), unique_by=lambda row: row[0]))
    folds, start = [], 0
    for size in sizes:
        folds.append(people[start:start + size])
        start += size
    return folds


def write_people(folds, folded: bool = True) -> str:
    if not folded:
        (people,) = folds
        return f"{len(people)}\n" + "".join(f"{n}\t{c}\n" for n, c in people)
    return f"{len(folds)}\n" + "".join(
        f"{len(people)}\n" + "".join(f"{n}\t{c}\n" for n, c in people) for people in folds)


# --------------------------------------------------------------------------- round trips


@settings(max_examples=100, deadline=None)
@given(pair_protocols(), sep)
def test_pairs_round_trip(protocol, s):
    view, folds = protocol
    assert parse_pairs(write_pairs(view, folds, s)) == expected_pairs(folds)


@settings(max_examples=30, deadline=None)
@given(pair_protocols())
def test_pairs_tolerate_crlf_and_blank_lines(protocol):
    view, folds = protocol
    text = write_pairs(view, folds).replace("\n", "\r\n") + "\r\n\r\n"
    assert parse_pairs("\n" + text) == expected_pairs(folds)


@settings(max_examples=60, deadline=None)
@given(people_folds())
def test_people_round_trip_view2(folds):
    expected = [(k, n, c) for k, people in enumerate(folds) for n, c in people]
    assert parse_people(write_people(folds)) == expected
    assert parse_people(write_people(folds), folded=True) == expected


@settings(max_examples=40, deadline=None)
@given(people_folds(max_folds=1))
def test_people_round_trip_view1(folds):
    text = write_people(folds, folded=False)
    expected = [(0, n, c) for n, c in folds[0]]
    assert parse_people(text, "peopleDevTest.txt", folded=False) == expected
    if len(folds[0]) > 0:  # auto-detection: the second line is a person, not a count
        assert parse_people(text, "peopleDevTest.txt") == expected


# --------------------------------------------------------------------------- corruption

MUTATIONS = ["drop", "duplicate", "garbage", "zero", "negative", "not_int", "float",
             "extra_field", "missing_field", "blank_fields_swap", "header_plus",
             "header_minus", "header_text", "self_pair", "same_person"]


def _corrupt(lines: list[str], i: int, mutation: str) -> list[str] | None:
    """Apply ``mutation`` at line ``i``; ``None`` when it does not apply to that line."""
    lines = list(lines)
    fields = lines[i].split("\t")
    body = i > 0
    if mutation == "drop":
        del lines[i]
    elif mutation == "duplicate":
        lines.insert(i, lines[i])
    elif mutation == "garbage":
        lines[i] = "x y z w v"
    elif mutation in ("zero", "negative", "not_int", "float"):
        new = {"zero": "0", "negative": "-3", "not_int": "three", "float": "2.0"}[mutation]
        fields[-1] = new
        lines[i] = "\t".join(fields)
    elif mutation == "extra_field":
        lines[i] += "\t7"
    elif mutation == "missing_field" and lines[i] != "1\t1":  # "1" would be a valid View 1
        lines[i] = "\t".join(fields[:-1])
    elif mutation == "blank_fields_swap" and body and len(fields) == 3:
        lines[i] = "\t".join([fields[0], fields[1], fields[0], fields[2]])
        # a matched line turned into a mismatched one of the same person: still invalid
    elif mutation == "header_plus" and not body:
        fields[-1] = str(int(fields[-1]) + 1)
        lines[i] = "\t".join(fields)
    elif mutation == "header_minus" and not body and int(fields[-1]) > 1:
        fields[-1] = str(int(fields[-1]) - 1)
        lines[i] = "\t".join(fields)
    elif mutation == "header_text" and not body:
        lines[i] = "ten\tthree hundred"
    elif mutation == "self_pair" and body and len(fields) == 3:
        lines[i] = "\t".join([fields[0], fields[1], fields[1]])
    elif mutation == "same_person" and body and len(fields) == 4:
        lines[i] = "\t".join([fields[0], fields[1], fields[0], fields[3]])
    else:
        return None
    return lines


@settings(max_examples=300, deadline=None)
@given(pair_protocols(), st.data())
def test_corrupted_pairs_raise_one_value_error_naming_file_and_line(protocol, data):
    view, folds = protocol
    lines = write_pairs(view, folds).splitlines()
    i = data.draw(st.integers(0, len(lines) - 1), label="line")
    mutation = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    corrupted = _corrupt(lines, i, mutation)
    assume(corrupted is not None)
    with pytest.raises(ValueError, match=r"^myPairs\.txt line \d+: .+; .+") as info:
        parse_pairs("\n".join(corrupted) + "\n", source="myPairs.txt")
    assert "fix" in str(info.value) or "restore" in str(info.value)


@settings(max_examples=200, deadline=None)
@given(people_folds().filter(lambda f: sum(map(len, f)) > 0), st.data())
def test_corrupted_people_raise_value_error(folds, data):
    lines = write_people(folds).splitlines()
    person_lines = [i for i, line in enumerate(lines) if "\t" in line]
    i = data.draw(st.sampled_from(person_lines))
    mutation = data.draw(st.sampled_from(["zero", "negative", "not_int", "extra_field",
                                          "missing_field", "dup_name"]))
    fields = lines[i].split("\t")
    if mutation == "dup_name":
        lines.insert(i + 1, lines[i])  # also breaks the count: either error is right
    elif mutation == "extra_field":
        lines[i] += "\t1"
    elif mutation == "missing_field":
        lines[i] = fields[0]
    else:
        fields[1] = {"zero": "0", "negative": "-1", "not_int": "1e3"}[mutation]
        lines[i] = "\t".join(fields)
    with pytest.raises(ValueError, match=r"^people\.txt line \d+: "):
        parse_people("\n".join(lines) + "\n")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("Ab_01 9\t\n-x."), max_size=80))
def test_arbitrary_text_gives_pairs_or_value_error(text):
    try:
        pairs = parse_pairs(text)
    except ValueError as err:
        assert str(err).startswith("pairs.txt line ")
    else:
        assert all(p.index_a >= 1 and p.index_b >= 1 for p in pairs)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("Ab_01 9\t\n-x."), max_size=80))
def test_arbitrary_text_gives_people_or_value_error(text):
    try:
        rows = parse_people(text)
    except ValueError as err:
        assert str(err).startswith("people.txt line ")
    else:
        assert all(c >= 1 for _, _, c in rows)


def test_specific_error_messages():
    with pytest.raises(ValueError, match=r"pairs\.txt line 3: image index 'x' is not"):
        parse_pairs("1\t1\nA_B\t1\t2\nA_B\tx\tC_D\t1\n")
    with pytest.raises(ValueError, match=r"pairs\.txt line 2: image index must be >= 1, got 0"):
        parse_pairs("1\t1\nA_B\t0\t2\nA_B\t1\tC_D\t1\n")
    with pytest.raises(ValueError, match=r"line 3: .*ends after 1 pairs.*truncated"):
        parse_pairs("1\t1\nA_B\t1\t2\n")
    with pytest.raises(ValueError, match=r"line 4: unexpected line after the 2 pairs"):
        parse_pairs("1\t1\nA_B\t1\t2\nA_B\t1\tC_D\t1\nE_F\t1\t2\n")
    with pytest.raises(ValueError, match=r"line 1: the file is empty"):
        parse_pairs("\n\n")
    with pytest.raises(ValueError, match=r"people\.txt line 3: image count 'many'"):
        parse_people("1\n2\nAbe_Lincoln\tmany\nBo_Diddley\t2\n")
    with pytest.raises(ValueError, match=r"line 4: fold 0 .*promises 3 people.*truncated"):
        parse_people("1\n3\nAbe_Lincoln\t1\n")
    with pytest.raises(ValueError, match=r"line 5: Abe_Lincoln is listed twice \(first on "
                                         r"line 3\)"):
        parse_people("2\n1\nAbe_Lincoln\t1\n1\nAbe_Lincoln\t2\n")
    with pytest.raises(TypeError):
        parse_pairs(b"1\t1\n")


def test_face_pair_paths():
    p = FacePair(3, False, "Abel_Pacheco", 1, "Zico", 12)
    assert p.path_a == "Abel_Pacheco/Abel_Pacheco_0001.jpg"
    assert p.path_b == "Zico/Zico_0012.jpg"
    assert image_relpath("George_W_Bush", 530) == "George_W_Bush/George_W_Bush_0530.jpg"
    with pytest.raises(ValueError, match="start at 1"):
        image_relpath("Zico", 0)


# --------------------------------------------------------------------------- synthetic tree


def _tiny_lfw(tmp_path, pairs_text: str, people_text: str):
    images = tmp_path / "lfw-deepfunneled"
    for _, name, count in parse_people(people_text):
        (images / name).mkdir(parents=True)
        for i in range(1, count + 1):
            (images / name / f"{name}_{i:04d}.jpg").write_bytes(b"")
    (tmp_path / "pairs.txt").write_text(pairs_text)
    (tmp_path / "people.txt").write_text(people_text)
    return LFW(tmp_path)


PEOPLE = "2\n2\nAnn_A\t2\nBob_B\t1\n2\nCid_C\t3\nDan_D\t1\n"


def test_synthetic_tree(tmp_path):
    lfw = _tiny_lfw(tmp_path, "2\t1\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\t1\n"
                              "Cid_C\t1\t3\nCid_C\t2\tDan_D\t1\n", PEOPLE)
    lfw.check_fold_disjointness()
    assert lfw.check_images() == 7
    assert lfw.identities() == ["Ann_A", "Bob_B", "Cid_C", "Dan_D"]
    assert [p.name for p in lfw.images()][:3] == ["Ann_A_0001.jpg", "Ann_A_0002.jpg",
                                                  "Bob_B_0001.jpg"]
    assert lfw.image_path("Cid_C", 3) == tmp_path / "lfw-deepfunneled/Cid_C/Cid_C_0003.jpg"
    frame = lfw.pairs_frame()
    assert list(frame.columns) == ["fold", "same", "name_a", "index_a", "name_b", "index_b",
                                   "path_a", "path_b"]
    assert frame["fold"].tolist() == [0, 0, 1, 1]
    assert frame["same"].tolist() == [True, False, True, False]
    assert frame["path_b"].iloc[3] == "Dan_D/Dan_D_0001.jpg"
    with pytest.raises(ValueError, match="view must be 1"):
        lfw.pairs(view=3)
    with pytest.raises(DataNotFoundError, match="pairsDevTest.txt"):
        lfw.pairs(view=1)


def test_fold_violation_is_caught(tmp_path):
    lfw = _tiny_lfw(tmp_path, "2\t1\nAnn_A\t1\t2\nAnn_A\t1\tCid_C\t1\n"
                              "Cid_C\t1\t3\nCid_C\t2\tDan_D\t1\n", PEOPLE)
    with pytest.raises(ValueError, match=r"pair 1 \(fold 0\): Cid_C is in people\.txt fold 1"):
        lfw.check_fold_disjointness()


def test_unknown_person_and_index_out_of_range_are_caught(tmp_path):
    lfw = _tiny_lfw(tmp_path, "2\t1\nAnn_A\t1\t5\nAnn_A\t1\tEve_E\t1\n"
                              "Cid_C\t1\t3\nCid_C\t2\tDan_D\t1\n", PEOPLE)
    with pytest.raises(ValueError, match=r"Ann_A has 2 images.*Eve_E is not in people\.txt"):
        lfw.check_fold_disjointness()
    with pytest.raises(DataNotFoundError, match=r"2 LFW image\(s\) missing"):
        lfw.check_images()


def test_missing_image_folder(tmp_path):
    with pytest.raises(DataNotFoundError, match="lfw-deepfunneled"):
        LFW(tmp_path)


def test_the_image_folder_is_a_choice(tmp_path):
    """The official archives' folders are found (deep-funneled first, as the heads were
    trained on it); images= names another one, inside the LFW folder or anywhere."""
    for name in ("lfw", "lfw_funneled"):
        (tmp_path / name / "Ann_A").mkdir(parents=True)
    assert LFW(tmp_path).image_root == tmp_path / "lfw_funneled"
    (tmp_path / "lfw-deepfunneled" / "Ann_A").mkdir(parents=True)
    assert LFW(tmp_path).image_root == tmp_path / "lfw-deepfunneled"
    assert LFW(tmp_path, images="lfw").image_root == tmp_path / "lfw"
    elsewhere = tmp_path / "mine" / "faces"
    (elsewhere / "Ann_A").mkdir(parents=True)
    assert LFW(tmp_path, images=elsewhere).image_root == elsewhere
    # an archive unpacked with its folder twice: the inner one holds the people
    other = tmp_path / "other"
    (other / "lfw-funneled" / "lfw-funneled" / "Ann_A").mkdir(parents=True)
    assert LFW(other).image_root == other / "lfw-funneled" / "lfw-funneled"
    with pytest.raises(DataNotFoundError, match=r"LFW images not found at .*nope: give "
                                                r"images= \(command line: --images\)"):
        LFW(tmp_path, images="nope")
    with pytest.raises(DataNotFoundError, match=r"LFW images not found at .*mine/lfw-deepfunneled "
                                                r"\(nor lfw_funneled, lfw-funneled, lfw there\)"):
        LFW(tmp_path / "mine")


# --------------------------------------------------------------------------- the real files


@pytest.fixture(scope="module")
def lfw(lfw_root):
    return LFW(lfw_root)


@pytest.mark.data
def test_real_view2_pairs(lfw):
    pairs = lfw.pairs()
    assert len(pairs) == 6000
    for k in range(10):
        fold = pairs[600 * k:600 * (k + 1)]
        assert {p.fold for p in fold} == {k}
        assert [p.same for p in fold] == [True] * 300 + [False] * 300
    assert all(p.name_a == p.name_b for p in pairs if p.same)
    assert all(p.name_a != p.name_b for p in pairs if not p.same)
    assert pairs[0] == FacePair(0, True, "Abel_Pacheco", 1, "Abel_Pacheco", 4)
    assert pairs[-1] == FacePair(9, False, "Slobodan_Milosevic", 2, "Sok_An", 1)
    assert lfw.pairs() == pairs  # cached copies stay equal


@pytest.mark.data
def test_real_fold_disjointness(lfw):
    lfw.check_fold_disjointness()
    lfw.check_fold_disjointness(view=1)
    fold_of = {n: f for f, n, _ in lfw.people()}
    pairs = lfw.pairs()
    assert all(fold_of[p.name_a] == fold_of[p.name_b] == p.fold for p in pairs)


@pytest.mark.data
def test_real_people(lfw):
    people = lfw.people()
    assert len(people) == 5749 and sum(c for _, _, c in people) == 13233
    assert sorted({f for f, _, _ in people}) == list(range(10))
    assert dict((n, c) for _, n, c in people)["George_W_Bush"] == 530
    assert len(lfw.identities()) == 5749
    names_file = (lfw.root / "lfw-names.txt").read_text().split()
    assert dict(zip(names_file[::2], map(int, names_file[1::2]))) == {
        n: c for _, n, c in people}
    assert len(lfw.dev_train_people()) == 4038 and len(lfw.dev_test_people()) == 1711
    view1 = lfw.people(view=1)
    assert len(view1) == 5749 and {f for f, _, _ in view1} == {0, 1}


@pytest.mark.data
def test_real_view1_pairs(lfw):
    train, test = lfw.dev_train_pairs(), lfw.pairs(view=1)
    assert len(train) == 2200 and len(test) == 1000
    assert [p.same for p in train] == [True] * 1100 + [False] * 1100
    assert [p.same for p in test] == [True] * 500 + [False] * 500
    assert {p.fold for p in train + test} == {0}


@pytest.mark.data
def test_real_images_exist(lfw):
    images = lfw.images()
    assert len(images) == 13233 and images == sorted(images)
    assert images[0].relative_to(lfw.image_root).as_posix() == "AJ_Cook/AJ_Cook_0001.jpg"
    for p in lfw.pairs()[::97]:
        assert (lfw.image_root / p.path_a).is_file() and (lfw.image_root / p.path_b).is_file()
    assert lfw.check_images() == 13233
    on_disk = sum(1 for _ in lfw.image_root.glob("*/*.jpg"))
    assert on_disk == 13233


@pytest.mark.data
def test_real_pairs_frame(lfw):
    frame = lfw.pairs_frame()
    assert len(frame) == 6000 and frame["same"].sum() == 3000
    assert frame.groupby("fold").size().tolist() == [600] * 10
    assert frame["path_a"].iloc[0] == "Abel_Pacheco/Abel_Pacheco_0001.jpg"
    assert frame["path_b"].iloc[0] == "Abel_Pacheco/Abel_Pacheco_0004.jpg"
    assert all(re.fullmatch(r"[^/]+/[^/]+_\d{4}\.jpg", p) for p in frame["path_b"])
    assert len(lfw.pairs_frame(view=1)) == 1000
