"""The engine builder's real test bundles (tiny_bundle), shared rather than written twice."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

_BUILDER_FIXTURES = Path(__file__).resolve().parents[2] / 'perception_engine_builder' / 'test' / 'conftest.py'
_spec = importlib.util.spec_from_file_location('builder_bundles', _BUILDER_FIXTURES)
assert _spec is not None and _spec.loader is not None
builder_bundles = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(builder_bundles)


@pytest.fixture(scope='session')
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return builder_bundles.write_bundle(tmp_path_factory.mktemp('tiny_bundle'))


@pytest.fixture(scope='session')
def bundle_writer() -> Callable[..., Path]:
    """write_bundle, for tests that need a variant (a fixed batch)."""
    return builder_bundles.write_bundle
