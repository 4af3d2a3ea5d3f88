"""The engine tests' real model bundles, from the engine builder's test fixtures (``write_bundle``
exports a small detector with torch), shared rather than written twice; conftest.py offers these
fixtures to every test here."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from perception_core.deployment import load_config

_BUILDER_FIXTURES = Path(__file__).resolve().parents[2] / 'perception_engine_builder' / 'test' / 'conftest.py'


def _builder_bundles() -> ModuleType:
    """The builder's conftest, loaded once."""
    name = 'perception_engine_builder_test_bundles'
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _BUILDER_FIXTURES)
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


@pytest.fixture(scope='session')
def bundle_writer() -> Callable[..., Path]:
    """write_bundle, for tests that need a variant (degraded weights, fixed batch)."""
    return _builder_bundles().write_bundle


@pytest.fixture(scope='session')
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _builder_bundles().write_bundle(tmp_path_factory.mktemp('engine_tiny_bundle'))


@pytest.fixture
def deployment(tiny_bundle: Path) -> dict:
    """The shipped deployment YAML's values, checked, with model.path in the tiny bundle."""
    return deployment_values(tiny_bundle)


@pytest.fixture(scope='session')
def shipped_bundle() -> Path:
    """The trainer's bundle (models/detector): real detections, for tests that judge accuracy."""
    shipped: Path = _builder_bundles().SHIPPED_BUNDLE
    if not (shipped / 'model.json').is_file():
        pytest.fail(f'{shipped}/model.json is missing: it is shipped in git (git checkout models/detector, '
                    'or make train)')
    return shipped


def deployment_values(bundle_dir: Path) -> dict:
    """The shipped deployment YAML's values, checked, with model.path in ``bundle_dir``."""
    return dict(load_config(_builder_bundles().DEPLOYMENT_YAML, str(bundle_dir / 'model.onnx')).values)
