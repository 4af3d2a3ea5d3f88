"""The engine sidecar: ``<engine>.json`` beside every engine, and the one compatibility check.

A TensorRT plan runs only under the TensorRT version and on the GPU it was built for, and it is
only the model it was built from. The sidecar records all of that at build time; the builder
(before overwriting) and the node's TensorRT backend (before loading) both call
:func:`check_sidecar` / :func:`require_compatible`, so there is one rule for "this engine fits".
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import write_json
from .bundle import Bundle

SIDECAR_FORMAT = 1
KINDS = ('tensorrt', 'torch_tensorrt')


class SidecarError(ValueError):
    """A sidecar that is missing or unreadable; the message names the file."""


@dataclass(frozen=True)
class RuntimeFacts:
    """What the engine meets where it runs (or is built)."""
    tensorrt_version: str
    gpu_name: str
    compute_capability: str      # "major.minor"


@dataclass(frozen=True)
class Expected:
    """What the deployment asks of an engine; None = not checked."""
    precision: str | None = None
    onnx_sha256: str | None = None
    max_batch_size: int | None = None
    input_shape: tuple[int, ...] | None = None     # one frame, without the batch dimension
    compute_capability: str | None = None          # target_platform.compute_capability


@dataclass(frozen=True)
class Mismatch:
    key: str
    engine: Any       # what the sidecar says
    current: Any      # what this device or deployment has
    source: str       # who has ``current``: "this device", "the deployment file", "the bundle"

    def __str__(self) -> str:
        return f'{self.key}: engine {self.engine!r}, {self.source} {self.current!r}'


class SidecarMismatch(RuntimeError):
    """An engine that must not run here; the message names both sides of every mismatch."""

    def __init__(self, engine_path: Path, mismatches: list[Mismatch]):
        self.engine_path = engine_path
        self.mismatches = mismatches
        super().__init__(
            f'{engine_path}: engine does not fit: ' + '; '.join(str(m) for m in mismatches)
            + '. Rebuild it on this device (perception-build-engine) or set model.rebuild_on_mismatch')


def expected_for(bundle: Bundle, precision: str, max_batch_size: int, compute_capability: str) -> Expected:
    """What the deployment (model.precision, performance.max_batch_size,
    target_platform.compute_capability) and the bundle ask of an engine."""
    return Expected(precision=precision, onnx_sha256=bundle.onnx_sha256, max_batch_size=max_batch_size,
                    input_shape=bundle.input.shape(1)[1:], compute_capability=compute_capability)


def sidecar_path(engine_path: str | Path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + '.json')


def make_sidecar(*, kind: str, facts: RuntimeFacts, precision: str, profile: dict[str, Any],
                 inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], model_json: dict[str, Any],
                 onnx_sha256: str, build_seconds: float, plan: dict[str, Any],
                 versions: dict[str, str] | None = None) -> dict[str, Any]:
    """The sidecar document.

    ``profile`` is {"input", "min", "opt", "max"}; each tensor is {"name", "shape", "dtype"}.
    """
    if kind not in KINDS:
        raise ValueError(f'sidecar kind must be one of {list(KINDS)}, got {kind!r}')
    return {
        'format': SIDECAR_FORMAT,
        'kind': kind,
        'tensorrt_version': facts.tensorrt_version,
        'gpu': {'name': facts.gpu_name, 'compute_capability': facts.compute_capability},
        'precision': precision,
        'profile': profile,
        'inputs': inputs,
        'outputs': outputs,
        'onnx_sha256': onnx_sha256,
        'model_json': model_json,
        'built_at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
        'build_seconds': round(build_seconds, 3),
        'versions': versions or {},
        'plan': plan,
    }


def write_sidecar(engine_path: str | Path, sidecar: dict[str, Any]) -> Path:
    return write_json(sidecar_path(engine_path), sidecar)


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise SidecarError(f'{path}: missing; every engine needs the sidecar perception-build-engine '
                           'writes beside it (rebuild the engine on this device)')
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SidecarError(f'{path}: unreadable: {exc}') from exc
    for key in ('tensorrt_version', 'gpu', 'precision', 'profile'):
        if key not in data:
            raise SidecarError(f'{path}: no {key!r}; not a sidecar written by perception-build-engine')
    if data.get('format') != SIDECAR_FORMAT:
        raise SidecarError(f'{path}: format {data.get("format")!r}, this reader knows {SIDECAR_FORMAT}')
    return data


def check_sidecar(sidecar: dict[str, Any], facts: RuntimeFacts | None,
                  expected: Expected | None = None) -> list[Mismatch]:
    """Every way the engine described by ``sidecar`` does not fit; empty when it fits.

    ``facts`` None checks only the deployment (on a machine without TensorRT).
    A plan is tied to the exact TensorRT version and GPU model, so those compare as equal strings.
    """
    found = []
    gpu = sidecar.get('gpu', {})
    if facts is not None:
        pairs = (('tensorrt_version', sidecar.get('tensorrt_version'), facts.tensorrt_version),
                 ('gpu.name', gpu.get('name'), facts.gpu_name),
                 ('gpu.compute_capability', gpu.get('compute_capability'), facts.compute_capability))
        found += [Mismatch(k, e, c, 'this device') for k, e, c in pairs if e != c]
    if expected is None:
        return found
    profile = sidecar.get('profile', {})
    checks = (
        ('precision', sidecar.get('precision'), expected.precision, 'the deployment file'),
        ('gpu.compute_capability', gpu.get('compute_capability'), expected.compute_capability,
         'the deployment file (target_platform.compute_capability)'),
        ('profile.max[0] (max batch)', (profile.get('max') or [None])[0], expected.max_batch_size,
         'the deployment file (performance.max_batch_size)'),
        ('profile input shape', tuple(profile.get('max') or ())[1:] or None,
         expected.input_shape and tuple(expected.input_shape), 'the bundle'),
        ('onnx_sha256', sidecar.get('onnx_sha256'), expected.onnx_sha256, 'the bundle\'s model.onnx'),
    )
    found += [Mismatch(k, e, c, s) for k, e, c, s in checks if c is not None and e != c]
    return found


def require_compatible(engine_path: str | Path, facts: RuntimeFacts | None,
                       expected: Expected | None = None) -> dict[str, Any]:
    """The engine's sidecar, or SidecarError / SidecarMismatch saying why it must not be loaded."""
    sidecar = read_sidecar(engine_path)
    mismatches = check_sidecar(sidecar, facts, expected)
    if mismatches:
        raise SidecarMismatch(Path(engine_path), mismatches)
    return sidecar
