"""Shared bags for the bag-tool tests: small, real, written by the project's own recorder."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception.bag.record import record_synthetic

FRAMES = 12  # test_bag_reader.py counts on it


@pytest.fixture(scope='session')
def synthetic_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-frame 640x480 mcap bag with ground truth."""
    return record_synthetic(tmp_path_factory.mktemp('bags') / 'synthetic', frames=FRAMES, progress=False).path


@pytest.fixture(scope='session')
def synthetic_sqlite_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_synthetic(tmp_path_factory.mktemp('bags') / 'synthetic_db3', frames=FRAMES,
                            storage='sqlite3', progress=False).path
