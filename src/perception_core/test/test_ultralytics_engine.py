"""Ultralytics .engine files: the metadata header before the TensorRT plan.

The files are built with the layout Ultralytics' exporter writes (ultralytics/engine/exporter.py,
8.x: ``len(meta).to_bytes(4, 'little')``, the JSON, then ``engine.serialize()``) and its
AutoBackend reads back; the "plan" after the header is stand-in bytes starting with TensorRT's
magic, since no machine here has TensorRT to build a real one.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

from perception_core.backends import tensorrt as trt_backend
from perception_core.bundle_import import engine_tensors, header_precision
from perception_core.ultralytics_engine import (
    PLAN_MAGIC,
    EngineHeaderError,
    header_class_names,
    parse_header,
    plan_bytes,
    read_engine,
)

PLAN = PLAN_MAGIC + bytes(range(256)) * 4
METADATA = {
    'description': 'Ultralytics YOLO11n model trained on coco.yaml', 'author': 'Ultralytics',
    'date': '2026-11-30T10:00:00', 'version': '8.4.2', 'license': 'AGPL-3.0',
    'stride': 32, 'task': 'detect', 'batch': 1, 'imgsz': [640, 640],
    'names': {'0': 'person', '1': 'bicycle', '2': 'car'},
    'args': {'batch': 1, 'half': True, 'int8': False, 'dynamic': False, 'nms': False},
    'channels': 3,
}


def ultralytics_engine(path: Path, metadata: dict | None = None, plan: bytes = PLAN) -> Path:
    meta = json.dumps(metadata if metadata is not None else METADATA).encode()
    path.write_bytes(struct.pack('<I', len(meta)) + meta + plan)
    return path


def test_header_then_plan(tmp_path: Path) -> None:
    path = ultralytics_engine(tmp_path / 'yolo11n.engine')
    engine = read_engine(path)
    assert engine.has_header
    assert engine.metadata == METADATA
    meta_len = len(json.dumps(METADATA).encode())
    assert engine.plan_offset == 4 + meta_len
    assert plan_bytes(path) == PLAN
    assert header_class_names(engine.metadata, path) == ['person', 'bicycle', 'car']


def test_plain_plan_has_no_header(tmp_path: Path) -> None:
    path = tmp_path / 'model.engine'
    path.write_bytes(PLAN)
    engine = read_engine(path)
    assert (engine.metadata, engine.plan_offset, engine.has_header) == ({}, 0, False)
    assert plan_bytes(path) == PLAN


def test_bytes_that_are_not_a_header_go_to_tensorrt_unchanged() -> None:
    # not TensorRT's magic and no JSON object after the length: TensorRT decides what it is
    data = b'\x10\x00\x00\x00' + b'\x00' * 64
    assert parse_header(data, 'x.engine') == ({}, 0)


@pytest.mark.parametrize('data, words', [
    (struct.pack('<I', 500) + b'{"names": {"0": "a"}}' + PLAN[:64], ['truncated', '500 bytes']),
    (struct.pack('<I', 12) + b'{"names": {"' + PLAN, ['not UTF-8 JSON']),
    (struct.pack('<I', 4) + b'{\xff\xfe}' + PLAN, ['not UTF-8 JSON']),
    (struct.pack('<I', 2) + b'{}', ['no TensorRT plan after it']),
    (b'{}', ['too short']),
])
def test_damaged_header_names_the_file(tmp_path: Path, data: bytes, words: list[str]) -> None:
    path = tmp_path / 'broken.engine'
    path.write_bytes(data)
    for reader in (read_engine, plan_bytes):
        with pytest.raises(EngineHeaderError) as info:
            reader(path)
        assert str(path) in str(info.value)
        for word in words:
            assert word in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(EngineHeaderError, match=r'nope\.engine'):
        read_engine(tmp_path / 'nope.engine')


def test_header_names_must_be_indices(tmp_path: Path) -> None:
    assert header_class_names({'names': ['a', 'b']}, 'f') == ['a', 'b']
    assert header_class_names({}, 'f') is None
    with pytest.raises(EngineHeaderError, match='f: metadata names'):
        header_class_names({'names': {'0': 'a', '2': 'b'}}, 'f')
    with pytest.raises(EngineHeaderError, match='class indices'):
        header_class_names({'names': {'zero': 'a'}}, 'f')


def test_engine_interface_from_header_and_runtime() -> None:
    """The pure half of an engine import: what TensorRT reports (as describe_engine returns it)
    and the header become the same (name, shape) + metadata strings an ONNX import reads."""
    described = {'inputs': [{'name': 'images', 'shape': [1, 3, 640, 640], 'dtype': 'half'}],
                 'outputs': [{'name': 'output0', 'shape': [1, 7, 8400], 'dtype': 'half'}]}
    tensors = engine_tensors(METADATA, described)
    assert tensors.inputs == [('images', [1, 3, 640, 640])]
    assert tensors.outputs == [('output0', [1, 7, 8400])]
    assert tensors.metadata['task'] == 'detect'
    assert json.loads(tensors.metadata['imgsz']) == [640, 640]
    assert header_precision(METADATA) == 'fp16'
    assert header_precision({'args': {'int8': True, 'half': True}}) == 'int8'
    assert header_precision({}) == 'fp32'
    dynamic = engine_tensors({}, {'inputs': [{'name': 'images', 'shape': [-1, 3, -1, -1]}], 'outputs': []})
    assert dynamic.inputs == [('images', [None, 3, None, None])]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(['perception-bundle', *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ), check=False)


@pytest.mark.skipif(trt_backend.available(), reason='TensorRT is installed: the import goes on to TensorRT')
def test_import_engine_reads_the_header_then_needs_tensorrt(tmp_path: Path) -> None:
    path = ultralytics_engine(tmp_path / 'yolo11n.engine')
    result = _cli('import', str(path), '--out', str(tmp_path / 'bundle'))
    assert result.returncode == 3, result.stderr
    assert result.stderr.count('\n') == 1 and 'Traceback' not in result.stderr
    assert 'Ultralytics header with 12 metadata keys' in result.stderr
    assert 'TensorRT' in result.stderr
    assert not (tmp_path / 'bundle').exists()


def test_import_engine_with_damaged_header_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / 'cut.engine'
    path.write_bytes(struct.pack('<I', 900) + b'{"names": {"0": "person"}}')
    result = _cli('import', str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count('\n') == 1 and 'Traceback' not in result.stderr
    assert str(path) in result.stderr and 'truncated' in result.stderr


@pytest.mark.skipif(not trt_backend.available(), reason='TensorRT is not installed on this machine '
                    '(no machine of this project has it); the TensorRT half of an engine import and '
                    'the backend\'s deserialisation after the header run only where it is')
def test_describe_engine_needs_a_real_plan(tmp_path: Path) -> None:
    path = ultralytics_engine(tmp_path / 'fake.engine')
    with pytest.raises(trt_backend.BackendError, match='could not deserialise'):
        trt_backend.describe_engine(path)
