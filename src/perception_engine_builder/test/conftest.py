"""Real model bundles for the engine tests: this package's, perception_core's test_engine_*.py
(through test_engine_bundles.py) and perception_bench's, which load this file by path.

``tiny_bundle``: a small, untrained convolutional detector in the default ``dense_boxes_scores``
format, exported here with torch to ONNX (dynamic batch) and TorchScript, with a valid model.json:
real files through real ONNX Runtime and TorchScript, for plumbing (output differences, the
pass/fail rule, commands, benchmark). Its detections are noise, so tests that judge accuracy use
``shipped_bundle`` (models/detector, the trainer's, shipped in git: absent is a failure).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from perception_core.bundle import sha256_of
from perception_core.deployment import load_config

WORKSPACE = Path(__file__).resolve().parents[3]
DEPLOYMENT_YAML = WORKSPACE / 'config' / 'jetson_deployment.yaml'
SHIPPED_BUNDLE = WORKSPACE / 'models' / 'detector'
CLASSES = ('cup', 'bottle', 'ball')
HEIGHT, WIDTH = 256, 320


class TinyDetector(nn.Module):
    """Stride-4 features -> per-location class scores and box distances -> [B, N, 4 + C]."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.scores = nn.Conv2d(16, classes, 1)
        self.distances = nn.Conv2d(16, 4, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        f = self.features(images)
        h, w = f.shape[2], f.shape[3]
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) * 4
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) * 4
        cx, cy = xs.view(1, 1, 1, w), ys.view(1, 1, h, 1)
        d = torch.relu(self.distances(f)) * 16 + 4
        boxes = torch.cat([cx - d[:, 0:1], cy - d[:, 1:2], cx + d[:, 2:3], cy + d[:, 3:4]], dim=1)
        heat = torch.sigmoid(self.scores(f))
        heat = heat * (nn.functional.max_pool2d(heat, 3, 1, 1) == heat).to(heat.dtype)
        out = torch.cat([boxes, heat], dim=1)
        return out.flatten(2).transpose(1, 2)


def write_bundle(directory: Path, dynamic_batch: bool = True, noise: float = 0.0) -> Path:
    """Export a TinyDetector (fixed seed) as a bundle; without ``dynamic_batch`` the ONNX takes
    batch 1; ``noise`` perturbs every weight by that fraction of its tensor's spread (a degraded
    conversion stand-in)."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = TinyDetector(len(CLASSES)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * p.std() * noise)
    example = torch.rand(1, 3, HEIGHT, WIDTH)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')   # the legacy exporter announces its deprecation
        torch.onnx.export(model, (example,), str(directory / 'model.onnx'), input_names=['images'],
                          output_names=['detections'], opset_version=17, dynamo=False,
                          dynamic_axes={'images': {0: 'batch'}, 'detections': {0: 'batch'}}
                          if dynamic_batch else None)
        torch.jit.save(torch.jit.trace(model, example), str(directory / 'model.ts'))
    (directory / 'model.json').write_text(json.dumps({
        'format': 1, 'arch': 'tiny-test', 'classes': list(CLASSES),
        'input': {'name': 'images', 'height': HEIGHT, 'width': WIDTH, 'layout': 'NCHW', 'color': 'RGB',
                  'resize': 'letterbox', 'pad_value': 114, 'mean': [0.0, 0.0, 0.0], 'std': [1.0, 1.0, 1.0]},
        'output': {'format': 'dense_boxes_scores', 'names': ['detections']},
        'postprocess': {'score_threshold': 0.3, 'nms_iou_threshold': 0.5, 'max_detections': 100},
        'onnx_sha256': sha256_of(directory / 'model.onnx'),
    }, indent=2))
    return directory


@pytest.fixture(scope='session')
def bundle_writer() -> Callable[..., Path]:
    """write_bundle, for tests that need a variant (degraded weights, fixed batch)."""
    return write_bundle


@pytest.fixture(scope='session')
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(tmp_path_factory.mktemp('tiny_bundle'))


@pytest.fixture(scope='session')
def shipped_bundle() -> Path:
    if not (SHIPPED_BUNDLE / 'model.json').is_file():  # in git: missing means a broken checkout
        pytest.fail(f'{SHIPPED_BUNDLE}/model.json is missing: it is shipped in git (git checkout '
                    'models/detector, or make train to reproduce it)', pytrace=False)
    return SHIPPED_BUNDLE


@pytest.fixture(scope='session')
def deployment_yaml() -> Path:
    return DEPLOYMENT_YAML


@pytest.fixture
def deployment(tiny_bundle: Path) -> dict:
    """The shipped deployment YAML's values, checked, with model.path in the tiny bundle."""
    return dict(load_config(DEPLOYMENT_YAML, str(tiny_bundle / 'model.onnx')).values)
