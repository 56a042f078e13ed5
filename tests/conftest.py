"""Shared fixtures.

Tests that need the real data directory use the ``data_root``/``lfw_root`` fixtures:
they skip on a developer machine without ``XCOS_XAI_DATA`` but **fail** in CI
(``CI=true``), where a missing data set means a broken setup, not an optional test.
"""

from __future__ import annotations

import json
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


@pytest.fixture(scope="session")
def layouts(data_root):
    """The reference checkpoint layouts (``../shared/reference``); skip locally, fail in CI."""
    path = data_root.parent / "reference" / "state_dict_layouts.json"
    if not path.is_file():
        message = f"reference layouts not found at {path}"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs {message}")
        pytest.skip(message)
    return json.loads(path.read_text())


@pytest.fixture
def one_thread():
    """Big CPU forwards on one thread, restored afterwards: on a busy 2-core runner, two
    spinning OpenMP threads make an IR-SE-50 forward up to 7x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
