"""The in-memory image source (``ArrayImages``) and ``PairDataset``'s batched fetch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xcos_xai.data.folders import IdentityFolders
from xcos_xai.training.data import ArrayImages, PairDataset
from xcos_xai.training.synthetic import synthetic_source, write_identity_folders

ITEMS = [(0, 2, 1, 0), (3, 1, 0, 1), (5, 5, 1, 1), (4, 0, 0, 0)]


def test_synthetic_source_matches_the_folders(tmp_path):
    write_identity_folders(tmp_path, n_identities=3, n_images=2, size=32)
    folders, mem = IdentityFolders(tmp_path), synthetic_source(3, 2, 32)
    assert mem.labels.tolist() == folders.labels.tolist() and mem.num_classes == 3
    for i in range(len(folders)):
        assert np.array_equal(mem.load(i), folders.load(i))  # PNG is lossless


@pytest.mark.parametrize("size", [(32, 32), (40, 36)])
def test_batched_fetch_equals_item_by_item(size):
    ds = PairDataset(synthetic_source(3, 2, 32), size)
    batched = ds.__getitems__(ITEMS)
    assert len(batched) == len(ITEMS)
    for got, item in zip(batched, ITEMS):
        want = ds[item]
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert got[0].shape == (3, *size) and got[2:] == want[2:]
        assert all(type(v) is int for v in got[2:])
    again = ds.__getitems__(ITEMS)  # flips never write into the cached chips
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batched, again))


def test_dataloader_batches_are_the_same_either_way():
    src = synthetic_source(3, 2, 32)

    class ItemByItem:  # the same source without chips(): the per-item path
        labels, num_classes = src.labels, src.num_classes
        load = staticmethod(src.load)

        def __len__(self):
            return len(src)

    def batch(source):
        loader = torch.utils.data.DataLoader(PairDataset(source, (32, 32)), batch_size=4,
                                             sampler=ITEMS)
        return next(iter(loader))

    fast, slow = batch(src), batch(ItemByItem())
    for f, s in zip(fast, slow):
        assert f.dtype == s.dtype and torch.equal(f, s)


def test_array_images_checks_its_input():
    with pytest.raises(ValueError, match="uint8"):
        ArrayImages(np.zeros((2, 8, 8, 3), np.float32), [0, 1])
    with pytest.raises(ValueError, match="one per image"):
        ArrayImages(np.zeros((2, 8, 8, 3), np.uint8), [0])
    with pytest.raises(ValueError, match="at least 2"):
        ArrayImages(np.zeros((2, 8, 8, 3), np.uint8), [0, 0])
