"""The paper's pair sampler: anchors, 50/50 coin, singletons, ranks, resume."""

from __future__ import annotations

import numpy as np
import pytest

from xcos_xai.data.samplers import AnchorPairSampler, epoch_pairs

LABELS = np.array([0] * 5 + [1] + [2] * 3 + [3] * 10 + [4] * 2)


def test_every_image_is_the_anchor_once_and_pairs_are_what_they_claim():
    p = epoch_pairs(LABELS, seed=3, epoch=1)
    assert sorted(p["a"].tolist()) == list(range(len(LABELS)))
    same = LABELS[p["a"]] == LABELS[p["b"]]
    assert np.array_equal(same, p["genuine"])
    assert (p["a"] != p["b"]).all()  # a genuine partner is another image


def test_singleton_identity_gets_an_impostor_and_never_loops():
    labels = np.array([0, 1, 2, 3])  # nobody has a second image
    p = epoch_pairs(labels, seed=0, epoch=0, p_genuine=1.0)
    assert not p["genuine"].any()
    assert (labels[p["a"]] != labels[p["b"]]).all()


def test_coin_is_fair_and_partners_uniform():
    labels = np.repeat(np.arange(50), 4)  # 200 images, 4 each
    genuine, partner_counts = [], np.zeros((4, 4))
    for epoch in range(40):
        p = epoch_pairs(labels, seed=1, epoch=epoch)
        genuine.append(p["genuine"].mean())
        g = p["genuine"] & (p["a"] % 4 == 0) & (p["a"] < 4)  # anchors 0 of identity 0
        for b in p["b"][g]:
            partner_counts[0, b] += 1
    # 8000 coin flips: the mean is within 4 standard deviations (0.0056 each) of 0.5
    assert abs(np.mean(genuine) - 0.5) < 4 * 0.5 / np.sqrt(8000)
    assert partner_counts[0, 0] == 0 and partner_counts[0, 1:].min() > 0


def test_same_seed_same_epoch_is_identical_other_epoch_differs():
    a, b = epoch_pairs(LABELS, 7, 2), epoch_pairs(LABELS, 7, 2)
    c = epoch_pairs(LABELS, 7, 3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["a"], c["a"])


def _items(sampler, epoch, start=0):
    sampler.set_epoch(epoch, start)
    return np.array(list(sampler))


def test_ranks_split_the_global_batch_like_accumulation():
    # 2 ranks x 1 micro-batch == 1 rank x 2 micro-batches, step by step.
    one = AnchorPairSampler(LABELS, batch_size=3, seed=5, accum_steps=2)
    r0 = AnchorPairSampler(LABELS, batch_size=3, seed=5, world_size=2, rank=0)
    r1 = AnchorPairSampler(LABELS, batch_size=3, seed=5, world_size=2, rank=1)
    assert one.steps_per_epoch == r0.steps_per_epoch == 4  # ceil(21 / 6)
    single = _items(one, 1).reshape(4, 2, 3, 4)
    assert np.array_equal(single[:, 0], _items(r0, 1).reshape(4, 3, 4))
    assert np.array_equal(single[:, 1], _items(r1, 1).reshape(4, 3, 4))
    # the padded epoch covers every anchor; only the 3 padding items repeat
    anchors = single[..., 0].ravel()
    assert set(anchors.tolist()) == set(range(21)) and len(anchors) == 24


def test_mid_epoch_start_is_the_suffix():
    s = AnchorPairSampler(LABELS, batch_size=2, seed=0, accum_steps=2)
    full = _items(s, 4)
    assert np.array_equal(_items(s, 4, start=3), full[3 * 4:])
    assert len(s) == len(full) - 3 * 4
    state = s.state_dict()
    t = AnchorPairSampler(LABELS, batch_size=2, seed=0, accum_steps=2)
    t.load_state_dict(state)
    assert np.array_equal(np.array(list(t)), full[12:])


def test_bad_input_is_one_clear_error():
    with pytest.raises(ValueError, match="at least 2 identities"):
        epoch_pairs(np.zeros(5, dtype=int), 0, 0)
    with pytest.raises(ValueError, match="rank=2 must be below world_size=2"):
        AnchorPairSampler(LABELS, 2, world_size=2, rank=2)
    s = AnchorPairSampler(LABELS, 2)
    with pytest.raises(ValueError, match="resume with the same data"):
        s.load_state_dict({**s.state_dict(), "n_images": 3})
