"""perception-family-bench: family members exported by the trainer's own export and timed by the
backend benchmark; the bench's eager module is the member model.json names (not the tiny default)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from perception_bench.backends import eager_module
from perception_bench.family import Member, main, markdown_rows, member_bundle
from perception_core.bundle import load_bundle


def test_a_member_is_exported_verified_and_timed_on_onnxruntime(tmp_path: Path, capsys) -> None:
    assert main(['--out', str(tmp_path), '--members', 'n:mobilenet_v3:320x256', '--quick']) == 0
    table = capsys.readouterr().out
    row = json.loads((tmp_path / 'family.json').read_text())['rows'][0]
    assert row['member'] == {'size': 'n', 'backbone': 'mobilenet_v3', 'width': 320, 'height': 256}
    assert 2.5e6 < row['parameters'] < 3.5e6 and row['gflops'] > 0.5
    assert row['onnxruntime_cpu']['network_p50_ms'] > 0 and row['onnxruntime_cpu']['frame_640x480_p50_ms'] > 0
    assert '| n | mobilenet_v3 | 320x256 | 3.06 M |' in table, table
    if not torch.cuda.is_available():
        assert 'skipped' in row['fp16_graph'] and 'not measured here' in markdown_rows([row])


def test_the_bench_eager_module_is_the_bundles_own_member(tmp_path: Path) -> None:
    """GPU retracing and torch.compile start from eager_module: a ResNet-18 bundle must give a
    ResNet-18 (its model.ts weights load key for key and answer as model.ts does)."""
    bundle = load_bundle(member_bundle(Member('n', 'resnet18'), tmp_path))
    eager = eager_module(bundle)
    traced = torch.jit.load(str(bundle.torchscript_path), map_location='cpu').eval()
    images = torch.rand(1, 3, bundle.input.height, bundle.input.width)
    with torch.no_grad():
        for ours, theirs in zip(eager(images), traced(images), strict=True):
            np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize('text', ['n', 'n:tiny:320', 'n:tiny:axb', 'n:tiny:1x2:3'])
def test_bad_member_texts_are_refused(text: str, capsys) -> None:
    assert main(['--members', text]) == 2
    assert f'{text!r}' in capsys.readouterr().err


@pytest.mark.parametrize(('text', 'named'), [('tiny:n', "size 'tiny'"),
                                             ('n:resnet34', "backbone 'resnet34'")])
def test_members_the_family_lacks_are_refused_before_any_work(text: str, named: str, capsys) -> None:
    assert main(['--members', text]) == 2
    assert named in capsys.readouterr().err


def test_the_largest_resnet_slim_exports_verified_within_the_shipped_bundles_10_mb(tmp_path: Path) -> None:
    """resnet_slim exists to fit the shipped bundle's limit (test_shipped_bundle: 10 MiB) with
    ResNet blocks: its largest size, exported and verified by perception-export (float16 weights),
    must fit."""
    bundle = load_bundle(member_bundle(Member('m', 'resnet_slim'), tmp_path))
    files = [f for f in bundle.directory.rglob('*') if f.is_file()]
    assert {f.name for f in files} >= {'model.onnx', 'model.ts', 'model.json'}
    assert 8 * 2**20 < sum(f.stat().st_size for f in files) <= 10 * 2**20
