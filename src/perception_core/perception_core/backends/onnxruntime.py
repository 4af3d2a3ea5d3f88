"""ONNX Runtime backend: CUDA execution provider where installed, else CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import Bundle
from . import Backend, BackendError, BackendOptions, dynamic_batch_limit
from .gpu import total_gpu_memory

# numpy dtype name -> ONNX Runtime's element type name (NodeArg.type is "tensor(<name>)").
ONNX_TYPES = {'int64': 'int64', 'int32': 'int32', 'float32': 'float', 'float16': 'float16'}


class OnnxRuntimeBackend(Backend):
    name = 'onnxruntime'

    def __init__(self, path: Path, bundle: Bundle, options: BackendOptions) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError(f'onnxruntime is not installed ({exc}); pip install onnxruntime') from exc
        if not path.is_file():
            raise BackendError(f'{path}: no such ONNX model')
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if options.threads > 0:
            session_options.intra_op_num_threads = options.threads
        # Idle pool threads would otherwise spin after each run, taking the cores that DDS, the
        # camera driver and the node's own threads need between frames.
        session_options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        providers: list = ['CPUExecutionProvider']
        if 'CUDAExecutionProvider' in ort.get_available_providers():
            cuda: dict[str, object] = {}
            total = total_gpu_memory()
            if total and options.gpu_usage < 1.0:
                cuda['gpu_mem_limit'] = int(total * options.gpu_usage)
            providers.insert(0, ('CUDAExecutionProvider', cuda))
        try:
            self.session = ort.InferenceSession(str(path), session_options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors for corrupt files
            raise BackendError(f'{path}: ONNX Runtime cannot load it: {exc}') from exc
        self._extras = bundle.input.extra_arrays()
        inputs = {i.name: i.type for i in self.session.get_inputs()}
        wanted = [bundle.input.name, *self._extras]
        if sorted(inputs) != sorted(wanted):
            raise BackendError(f'{path}: inputs {list(inputs)} do not match model.json input.name '
                               f'{bundle.input.name!r}' + (f' and input.extra_inputs {list(self._extras)}'
                                                           if self._extras else ''))
        for name, array in self._extras.items():
            if inputs[name] != f'tensor({ONNX_TYPES[array.dtype.name]})':
                raise BackendError(f'{path}: input {name!r} is {inputs[name]}; model.json '
                                   f'input.extra_inputs.{name}.dtype says {array.dtype.name}')
        names = [o.name for o in self.session.get_outputs()]
        missing = [n for n in bundle.output.names if n not in names]
        if missing:
            raise BackendError(f'{path}: outputs {names} lack model.json output.names {missing}')
        self._input = bundle.input.name
        self._outputs = list(bundle.output.names)
        image = next(i for i in self.session.get_inputs() if i.name == bundle.input.name)
        # A named (dynamic) batch axis takes several frames; a fixed one (a foreign export, most
        # often 1) and models with extra inputs (sized per frame) run one frame per call.
        dynamic = bool(image.shape) and not isinstance(image.shape[0], int)
        self.batch_limit = dynamic_batch_limit(options) if dynamic and not self._extras else 1
        provider = self.session.get_providers()[0]
        batching = f'batch up to {self.batch_limit}' if self.batch_limit > 1 else 'batch 1'
        super().__init__(f'ONNX Runtime {ort.__version__} {provider} ({path.name}, {batching})')

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        if self._extras:  # the constant inputs, built once at load
            return self.session.run(self._outputs, {self._input: tensor, **self._extras})
        return self.session.run(self._outputs, {self._input: tensor})
