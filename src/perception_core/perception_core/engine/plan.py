"""Every decision about an engine build, made in plain code from the deployment values and the bundle.

``tensorrt_build`` and ``torch_tensorrt_build`` only carry a :class:`BuildPlan` out; nothing here
imports TensorRT, so the decisions are tested on machines without it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from perception_core.backends.select import ENGINE_SUFFIXES
from perception_core.bundle import Bundle, InputSpec, sha256_of

PRECISIONS = ('fp32', 'fp16', 'int8')
# INT8 keeps FP16 allowed so that layers without an INT8 kernel don't fall back to FP32.
BUILDER_FLAGS = {'fp32': (), 'fp16': ('FP16',), 'int8': ('INT8', 'FP16')}
# performance.calibrated_preview turns these on (each only where the installed TensorRT has it).
PREVIEW_FEATURES = ('RUNTIME_ACTIVATION_RESIZE_10_10',)
TARGETS = ('tensorrt', 'torch_tensorrt')   # ONNX -> TensorRT plan, or TorchScript -> Torch-TensorRT .ts
DEFAULT_OPTIMIZATION_LEVEL = 3        # TensorRT's own default; 0..5
CALIBRATION_BATCH = 8
CALIBRATION_IMAGES = 512


class PlanError(ValueError):
    """A build that cannot be planned; the message names the key path or the option."""


@dataclass(frozen=True)
class Profile:
    """Optimisation profile of the one network input."""
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class Calibration:
    data_dir: Path | None        # None: the cache must already exist
    cache_path: Path
    batch_size: int
    max_images: int
    shape: tuple[int, ...]       # the fixed calibration-profile shape, batch first


@dataclass(frozen=True)
class BuildPlan:
    target: str
    source_path: Path              # model.onnx (tensorrt) or model.ts (torch_tensorrt)
    onnx_path: Path
    onnx_sha256: str
    engine_path: Path
    input_name: str
    input_layout: str
    profile: Profile
    precision: str
    builder_flags: tuple[str, ...]
    preview_features: tuple[str, ...]
    workspace_bytes: int
    optimization_level: int
    timing_cache_path: Path
    dla_core: int | None
    calibration: Calibration | None
    minimum_segment_size: int      # Torch-TensorRT's min_block_size; the ONNX parser has no such knob
    compute_capability: str        # what the deployment file expects the GPU to be
    notes: tuple[str, ...] = ()
    extra_inputs: tuple[str, ...] = ()  # model.json input.extra_inputs: fixed-shape constants

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in list(data.items()):
            if isinstance(value, Path):
                data[key] = str(value)
        if self.calibration is not None:
            data['calibration'] = {k: str(v) if isinstance(v, Path) else v
                                   for k, v in asdict(self.calibration).items()}
        return data


def default_engine_path(model_path: Path, bundle_dir: Path, target: str = 'tensorrt') -> Path:
    """model.path itself when it names an engine, else ``model.engine`` in the bundle;
    Torch-TensorRT output goes to ``model_trt.ts`` in the bundle."""
    if target == 'torch_tensorrt':
        return bundle_dir / 'model_trt.ts'
    return model_path if model_path.suffix in ENGINE_SUFFIXES else bundle_dir / 'model.engine'


def make_profile(spec: InputSpec, batch_size: int, max_batch_size: int) -> Profile:
    if batch_size > max_batch_size:
        raise PlanError(f'deployment_config.model.batch_size ({batch_size}) exceeds '
                        f'deployment_config.performance.max_batch_size ({max_batch_size})')
    return Profile(min=spec.shape(1), opt=spec.shape(batch_size),
                   max=spec.shape(max_batch_size))


def check_input_shape(input_shape: list[int], bundle: Bundle) -> None:
    """The YAML's input shape must be the bundle's (the batch dimension is planned separately)."""
    expected = bundle.input.shape(input_shape[0] if input_shape else 1)
    if tuple(input_shape[1:]) != expected[1:]:
        raise PlanError(
            f'deployment_config.model.input_shape {list(input_shape)} does not match the bundle '
            f'{bundle.directory / "model.json"}: {bundle.input.layout} input {list(expected)}')


def make_plan(values: dict[str, Any], bundle: Bundle, engine_path: Path, *, target: str = 'tensorrt',
              calibration_data: Path | None = None, calibration_cache: Path | None = None,
              calibration_images: int = CALIBRATION_IMAGES, timing_cache: Path | None = None,
              dla_core: int | None = None, optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL,
              ) -> BuildPlan:
    """Plan a build from checked deployment values (dotted names, see ``deployment.py``)."""
    precision = values['model.precision']
    if precision not in PRECISIONS:
        raise PlanError(f'deployment_config.model.precision: must be one of {list(PRECISIONS)}, '
                        f'got {precision!r}')
    if not 0 <= optimization_level <= 5:
        raise PlanError(f'--optimization-level: must be 0..5, got {optimization_level}')
    if target not in TARGETS:
        raise PlanError(f'build target must be one of {list(TARGETS)}, got {target!r}')
    source = bundle.onnx_path if target == 'tensorrt' else bundle.torchscript_path
    if target == 'torch_tensorrt' and bundle.input.extra:
        raise PlanError(f'{bundle.directory / "model.json"}: input.extra_inputs '
                        f'{[e.name for e in bundle.input.extra]}: the Torch-TensorRT path compiles one '
                        'input; build from ONNX (without --torch-tensorrt)')
    # The ONNX model is needed either way: it is the verification reference.
    for path in dict.fromkeys((bundle.onnx_path, source)):
        if not path.is_file():
            raise PlanError(f'{path}: missing; the bundle needs {path.name} for this build')
    if target == 'torch_tensorrt' and precision == 'int8':
        raise PlanError('deployment_config.model.precision int8: Torch-TensorRT\'s TorchScript path has no '
                        'calibrator; build an INT8 engine from ONNX (without --torch-tensorrt)')
    check_input_shape(values['model.input_shape'], bundle)
    notes = []
    profile = make_profile(bundle.input, values['model.batch_size'], values['performance.max_batch_size'])
    flags = BUILDER_FLAGS[precision]
    if dla_core is not None:
        if dla_core < 0:
            raise PlanError(f'--dla-core: must be >= 0, got {dla_core}')
        if precision == 'fp32':
            raise PlanError('--dla-core: the DLA runs fp16 or int8 only; set deployment_config.model.'
                            'precision to fp16 or int8')
        # The DLA has no dynamic shapes: a range would push every layer back onto the GPU.
        profile = Profile(min=profile.opt, opt=profile.opt, max=profile.opt)
        flags = (*flags, 'GPU_FALLBACK')
        notes.append(f'DLA core {dla_core}: profile fixed at batch {profile.opt[0]}, unsupported '
                     'layers fall back to the GPU')
    if values['performance.sparse_weights']:
        flags = (*flags, 'SPARSE_WEIGHTS')
    if target == 'tensorrt':
        notes.append('performance.minimum_segment_size applies to Torch-TensorRT only (min_block_size); '
                     'the ONNX parser converts the whole graph')
    onnx_sha256 = sha256_of(bundle.onnx_path)
    folder = engine_path.parent
    calibration = None
    if precision == 'int8':
        cache = calibration_cache or folder / f'calibration-{onnx_sha256[:12]}.cache'
        if calibration_data is None and not cache.is_file():
            raise PlanError(f'deployment_config.model.precision is int8: pass --calibration-data DIR '
                            f'(images like the camera\'s) or an existing --calibration-cache (no {cache})')
        if calibration_data is not None and not calibration_data.is_dir():
            raise PlanError(f'--calibration-data {calibration_data}: not a directory')
        batch = min(CALIBRATION_BATCH, profile.max[0])
        calibration = Calibration(data_dir=calibration_data, cache_path=cache, batch_size=batch,
                                  max_images=calibration_images, shape=bundle.input.shape(batch))
    return BuildPlan(
        target=target, source_path=source, onnx_path=bundle.onnx_path, onnx_sha256=onnx_sha256,
        engine_path=engine_path,
        input_name=bundle.input.name, input_layout=bundle.input.layout, profile=profile,
        precision=precision, builder_flags=flags,
        preview_features=PREVIEW_FEATURES if values['performance.calibrated_preview'] else (),
        workspace_bytes=int(values['performance.workspace_size']), optimization_level=optimization_level,
        timing_cache_path=timing_cache or folder / 'timing.cache', dla_core=dla_core,
        calibration=calibration, minimum_segment_size=int(values['performance.minimum_segment_size']),
        compute_capability=str(values['target_platform.compute_capability']), notes=tuple(notes),
        extra_inputs=tuple(e.name for e in bundle.input.extra))
