"""ONNX Runtime backend: CUDA execution provider where installed, else CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import Bundle
from . import Backend, BackendError, BackendOptions
from .gpu import total_gpu_memory


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
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != bundle.input.name:
            raise BackendError(f'{path}: inputs {[i.name for i in inputs]} do not match model.json '
                               f'input.name {bundle.input.name!r}')
        names = [o.name for o in self.session.get_outputs()]
        missing = [n for n in bundle.output.names if n not in names]
        if missing:
            raise BackendError(f'{path}: outputs {names} lack model.json output.names {missing}')
        self._input = bundle.input.name
        self._outputs = list(bundle.output.names)
        provider = self.session.get_providers()[0]
        super().__init__(f'ONNX Runtime {ort.__version__} {provider} ({path.name})')

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self._outputs, {self._input: tensor})
