"""TensorRT backend (``.engine`` / ``.plan``): the only module that imports tensorrt.

Before deserialising, the engine's sidecar is checked by ``perception_core.sidecar``
(the one compatibility rule, shared with the builder): TensorRT version, GPU, compute
capability, precision, batch profile, input shape and the ONNX it was built from. Device buffers
and the stream are torch CUDA tensors, so no second CUDA binding is needed (JetPack ships torch).
Written against the TensorRT 10 Python API; it cannot run on machines without TensorRT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..ultralytics_engine import EngineHeaderError, plan_bytes
from . import Backend, BackendError, BackendOptions, EngineUnusable


def available() -> bool:
    """Whether the real TensorRT is importable (tensorrt-stubs alone install a ``tensorrt`` that
    imports but has nothing in it)."""
    try:
        import tensorrt as trt
    except ImportError:
        return False
    return hasattr(trt, 'Runtime')


def _dims(dims: Any) -> list[int]:
    return [int(dims[d]) for d in range(len(dims))]


def describe_engine(path: Path) -> dict[str, Any]:
    """What TensorRT says about the engine at ``path`` (after any Ultralytics header): this
    runtime's facts and the engine's input/output tensors and input profile, in the sidecar's
    terms ({"facts", "inputs", "outputs", "profile"}). ``perception-bundle import`` writes a missing
    sidecar from this; it needs TensorRT and torch CUDA (BackendError otherwise)."""
    if not available():
        raise BackendError(f'{path}: reading an engine\'s tensors needs TensorRT (JetPack / the '
                           'TensorRT wheels), which is not installed here')
    import tensorrt as trt
    import torch
    if not torch.cuda.is_available():
        raise BackendError(f'{path}: torch {torch.__version__} sees no CUDA device to load the engine on')
    from ..sidecar import RuntimeFacts
    try:
        plan = plan_bytes(path)
    except EngineHeaderError as exc:
        raise BackendError(str(exc)) from exc
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise BackendError(f'{path}: TensorRT {trt.__version__} could not deserialise the engine')
    major, minor = torch.cuda.get_device_capability()
    facts = RuntimeFacts(tensorrt_version=trt.__version__, gpu_name=torch.cuda.get_device_name(),
                         compute_capability=f'{major}.{minor}')
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    profile: dict[str, Any] = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dims = engine.get_tensor_shape(name)
        tensor = {'name': name, 'shape': _dims(dims),
                  'dtype': str(engine.get_tensor_dtype(name)).split('.')[-1].lower()}
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            inputs.append(tensor)
            if not profile:
                if engine.num_optimization_profiles > 0 and -1 in tensor['shape']:
                    low, opt, high = engine.get_tensor_profile_shape(name, 0)
                    profile = {'input': name, 'min': _dims(low), 'opt': _dims(opt), 'max': _dims(high)}
                else:
                    profile = {'input': name, 'min': tensor['shape'], 'opt': tensor['shape'],
                               'max': tensor['shape']}
        else:
            outputs.append(tensor)
    return {'facts': facts, 'inputs': inputs, 'outputs': outputs, 'profile': profile}


class TensorRTBackend(Backend):
    name = 'tensorrt'

    def __init__(self, path: Path, bundle: Bundle, options: BackendOptions) -> None:
        if not path.is_file():
            raise EngineUnusable(f'{path}: no such engine (build it with perception-build-engine)',
                                 missing=True)
        if not available():
            raise BackendError('the tensorrt Python package is not installed; it comes with JetPack '
                               '/ the TensorRT wheels')
        import tensorrt as trt
        try:
            import torch
        except ImportError as exc:
            raise BackendError(f'torch is not installed ({exc}); the TensorRT backend uses torch CUDA '
                               'tensors for device buffers') from exc
        if not torch.cuda.is_available():
            raise BackendError(f'torch {torch.__version__} sees no CUDA device')
        from ..sidecar import (
            RuntimeFacts,
            SidecarError,
            SidecarMismatch,
            expected_for,
            require_compatible,
        )
        major, minor = torch.cuda.get_device_capability()
        facts = RuntimeFacts(tensorrt_version=trt.__version__, gpu_name=torch.cuda.get_device_name(),
                             compute_capability=f'{major}.{minor}')
        expected = expected_for(bundle, options.precision, options.max_batch_size or 1,
                                options.compute_capability or facts.compute_capability)
        try:
            require_compatible(path, facts, expected)
        except (SidecarError, SidecarMismatch) as exc:
            raise EngineUnusable(str(exc), missing=False) from exc

        self._torch = torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        # An Ultralytics export puts a metadata header before the plan; TensorRT takes the plan only.
        try:
            plan = plan_bytes(path)
        except EngineHeaderError as exc:
            raise EngineUnusable(str(exc), missing=False) from exc
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise BackendError(f'{path}: TensorRT {trt.__version__} could not deserialise the engine')
        total = torch.cuda.mem_get_info()[1]
        if self.engine.device_memory_size_v2 > total * options.gpu_usage:
            raise BackendError(f'{path}: needs {self.engine.device_memory_size_v2} bytes of activation '
                               f'memory, more than resources.gpu_usage {options.gpu_usage} of {total}')
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self._buffers: dict[str, Any] = {}
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        extras = bundle.input.extra_arrays()
        if sorted(inputs) != sorted([bundle.input.name, *extras]):
            raise BackendError(f'{path}: inputs {inputs} do not match model.json input.name '
                               f'{bundle.input.name!r}' + (f' and input.extra_inputs {list(extras)}'
                                                           if extras else ''))
        self._input = bundle.input.name
        self.batch_limit = self._profile_batch(options) if not extras else 1
        # Buffers sized for the largest batch; a smaller one uses their first rows (TensorRT writes
        # each output contiguously for the shapes set), so nothing is allocated per frame.
        self.context.set_input_shape(self._input, bundle.input.shape(self.batch_limit))
        for name, array in extras.items():
            self.context.set_input_shape(name, array.shape)
        for name in names:
            dims = self.context.get_tensor_shape(name)
            shape = tuple(int(dims[i]) for i in range(len(dims)))
            dtype = torch.from_numpy(np.empty(0, trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            self._buffers[name] = torch.empty(shape, dtype=dtype, device='cuda')
            self.context.set_tensor_address(name, self._buffers[name].data_ptr())
        # The extra inputs are constants: copied into their bindings once, never per frame.
        for name, array in extras.items():
            want = self._buffers[name].dtype
            if torch.from_numpy(array).dtype != want:
                raise BackendError(f'{path}: input {name!r} is {want}; model.json '
                                   f'input.extra_inputs.{name}.dtype says {array.dtype.name}')
            self._buffers[name].copy_(torch.from_numpy(array).reshape(self._buffers[name].shape))
        torch.cuda.synchronize()
        missing = [n for n in bundle.output.names if n not in self._buffers]
        if missing:
            raise BackendError(f'{path}: engine lacks model.json output.names {missing}')
        self._outputs = list(bundle.output.names)
        self._shapes = bundle.input.shape
        self._batch = self.batch_limit  # the batch the context's input shape is set for now
        batching = f'batch up to {self.batch_limit}' if self.batch_limit > 1 else 'batch 1'
        super().__init__(f'TensorRT {trt.__version__} {options.precision} on {facts.gpu_name} ({path.name}, '
                         f'{batching})')

    def _profile_batch(self, options: BackendOptions) -> int:
        """The most frames one call takes: the optimisation profile's largest batch where the input's
        batch axis is dynamic, at most performance.max_batch_size; else 1."""
        dims = _dims(self.engine.get_tensor_shape(self._input))
        if not dims or dims[0] != -1 or self.engine.num_optimization_profiles < 1:
            return 1
        _, _, high = self.engine.get_tensor_profile_shape(self._input, 0)
        return max(1, min(_dims(high)[0], options.max_batch_size or 1))

    def _view(self, name: str) -> Any:
        """The binding's buffer as the context's current shape for it (its first rows)."""
        dims = self.context.get_tensor_shape(name)
        shape = tuple(int(dims[i]) for i in range(len(dims)))
        return self._buffers[name].view(-1)[:int(np.prod(shape))].view(shape)

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """A [N, ...] batch, N <= batch_limit (each output's first axis is N)."""
        torch = self._torch
        batch = int(tensor.shape[0])
        if batch != self._batch:
            if not self.context.set_input_shape(self._input, self._shapes(batch)):
                raise BackendError(f'TensorRT refused input shape {self._shapes(batch)} (batch_limit '
                                   f'{self.batch_limit})')
            self._batch = batch
        with torch.cuda.stream(self.stream):
            self._view(self._input).copy_(torch.from_numpy(tensor), non_blocking=True)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise BackendError('TensorRT execute_async_v3 failed')
            outputs = [self._view(n).float().cpu() for n in self._outputs]
        self.stream.synchronize()
        return [o.numpy() for o in outputs]

    def gpu_memory_bytes(self) -> int | None:
        weights = sum(b.numel() * b.element_size() for b in self._buffers.values())
        return int(self.engine.device_memory_size_v2 + weights)

    def close(self) -> None:
        del self.context
        self._buffers.clear()
