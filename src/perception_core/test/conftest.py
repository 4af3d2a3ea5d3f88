from __future__ import annotations

import sys
from pathlib import Path

import pytest

# pytest runs in importlib mode (pytest.ini): make probe_bundle and engine_bundles importable for
# these tests and the workspace-level test/test_node_*.py.
sys.path.insert(0, str(Path(__file__).parent))
# The engine tests' bundles (tiny_bundle needs torch to export its model): fixtures for every test here.
from engine_bundles import bundle_writer, deployment, shipped_bundle, tiny_bundle  # noqa: F401
from probe_bundle import write_probe_bundle


@pytest.fixture(scope='session')
def probe_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.onnx of the probe bundle (letterbox, NCHW)."""
    return write_probe_bundle(tmp_path_factory.mktemp('probe'))
