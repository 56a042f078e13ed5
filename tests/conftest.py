"""Shared fixtures.

Tests that need the real data directory use the ``data_root``/``lfw_root`` fixtures:
they skip on a developer machine without ``XCOS_XAI_DATA`` but **fail** in CI
(``CI=true``), where a missing data set means a broken setup, not an optional test.
"""

from __future__ import annotations

import os

import pytest
import torch

from xcos_xai._env import DataNotFoundError, data_dir, dataset_dir

torch.set_num_threads(min(2, os.cpu_count() or 1))


def _require(fn, *args):
    try:
        return fn(*args)
    except DataNotFoundError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the data directory: {err}")
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def data_root():
    return _require(data_dir)


@pytest.fixture(scope="session")
def lfw_root():
    return _require(dataset_dir, "lfw")
