"""PyTorch CUDA backend: the bundle's TorchScript model on the GPU in fp16 (or fp32).

Per camera frame: one copy of the raw image from pinned host memory to the GPU, preprocessing
there (``torch_preprocess.py``), the network, and the first step of decoding (``torch_decode.py``:
only the rows that can hold a detection), all captured once per image size as a CUDA graph and
replayed per frame (one launch instead of hundreds); then one small copy of those rows back to
pinned host memory, where ``decode.py`` finishes. ``infer_images`` runs several cameras' images
as one batch the same way: each image preprocessed into its row, one network call, each row's
candidates packed, one graph per combination of image shapes (a node's cameras: one or a few).
``infer`` runs preprocessed batches the same way (benchmarks). Needs torch built with CUDA;
everywhere else it refuses to load and the fallback chain moves on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..preprocess import Transform, plan_transform
from . import Backend, BackendError, BackendOptions, dynamic_batch_limit, probed_batch_limit, torch_outputs
from .torch_decode import BOX_COLUMNS, DEVICE_FORMATS, DenseRows
from .torch_preprocess import TorchPreprocess

log = logging.getLogger(__name__)
WARMUP_RUNS = 3  # CUDA graphs must be captured after the allocator and cuDNN have warmed up
# Image shapes whose captured programs are kept, least recently used dropped first: the node's
# warm-up sizes (runtime.warmup_images) and the camera's stay captured, while a stream of ever new
# sizes cannot pile up GPU memory.
IMAGE_PROGRAMS = 4
# Batch programs (one per combination of the batch's image shapes): a node's cameras make one per
# batch size that occurs, a few at most; more are dropped least recently used first, as above.
BATCH_PROGRAMS = 8


def most_recent(programs: dict, key: tuple, limit: int, capture: Callable[[], Any]) -> Any:
    """``programs[key]``, captured on first use, moved to the end (dicts keep insertion order:
    least recently used first); the oldest are freed before a new capture so at most ``limit``."""
    found = programs.pop(key, None)
    if found is None:
        while len(programs) >= limit:
            del programs[next(iter(programs))]
        found = capture()
    programs[key] = found
    return found


def network(module: Any, images: Any, dtype: Any) -> list:
    """The module's outputs for a batch, as float32 tensors on its device."""
    import torch
    with torch.inference_mode():
        return [o.float() for o in torch_outputs(module(images.to(dtype)))]


class FramePipeline:
    """Camera image tensor (HxWxC uint8, on the module's device) -> preprocessing, network and, for
    ``dense_boxes_scores``, decode's first step: [packed rows, whole output]. Device-agnostic, so
    the CPU tests run exactly what the GPU runs."""

    def __init__(self, module: Any, bundle: Bundle, transform: Transform, rgb_channels: tuple[int, int, int],
                 *, dtype: Any, device: Any) -> None:
        self.module = module
        self.dtype = dtype
        self.preprocess = TorchPreprocess(bundle.input, transform, rgb_channels, dtype, device)
        dense = bundle.output.format == 'dense_boxes_scores'
        self.rows = DenseRows(BOX_COLUMNS + len(bundle.classes), device) if dense else None

    def __call__(self, image: Any) -> list:
        outputs = network(self.module, self.preprocess(image), self.dtype)
        return [self.rows(outputs[0]), outputs[0]] if self.rows is not None else outputs


class BatchPipeline:
    """Several camera images (HxWxC uint8 tensors, any sizes) -> each preprocessed into its row of
    one batch, one network call, and for ``dense_boxes_scores`` each row's candidates packed:
    [packed rows of image 0, ..., of image N-1, whole output]. Device-agnostic like FramePipeline."""

    def __init__(self, module: Any, bundle: Bundle, transforms: list[Transform],
                 rgb_channels: list[tuple[int, int, int]], *, dtype: Any, device: Any) -> None:
        self.module = module
        self.dtype = dtype
        self.preprocess = [TorchPreprocess(bundle.input, t, c, dtype, device)
                           for t, c in zip(transforms, rgb_channels, strict=True)]
        dense = bundle.output.format == 'dense_boxes_scores'
        self.rows = [DenseRows(BOX_COLUMNS + len(bundle.classes), device) for _ in transforms] if dense \
            else None

    def __call__(self, images: list) -> list:
        import torch
        batch = torch.cat([p(image) for p, image in zip(self.preprocess, images, strict=True)])
        outputs = network(self.module, batch, self.dtype)
        if self.rows is None:
            return outputs
        return [rows(outputs[0][i:i + 1]) for i, rows in enumerate(self.rows)] + [outputs[0]]


class Program:
    """Fixed-shape work on the GPU for fixed input shapes: pinned host buffers, their device twins,
    the work (a CUDA graph where capture succeeds, else launched op by op) and pinned buffers for the
    first ``copied`` results."""

    def __init__(self, torch: Any, device_inputs: list, work: Callable[[], list], *, graph: bool,
                 copied: int | None = None) -> None:
        self._torch = torch
        self.device_inputs = device_inputs
        self.host_inputs = [torch.empty(d.shape, dtype=d.dtype, pin_memory=True) for d in device_inputs]
        self._host_views = [h.numpy() for h in self.host_inputs]
        self._work = work
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                self.outputs = work()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = None
        if graph:
            captured = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(captured):
                    self.outputs = work()
                self.graph = captured
            except RuntimeError as exc:  # a model with uncapturable ops still runs, launch by launch
                log.warning('torch_cuda: CUDA graph capture failed (%s); running without a graph', exc)
        count = len(self.outputs) if copied is None else copied
        self.host_outputs = [torch.empty(o.shape, dtype=o.dtype, pin_memory=True)
                             for o in self.outputs[:count]]

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Upload ``arrays`` (one per input), run, and return the copied results (this object's
        buffers)."""
        for view, host, device, array in zip(self._host_views, self.host_inputs, self.device_inputs, arrays,
                                             strict=True):
            np.copyto(view, array)  # strided message view -> pinned, contiguous
            device.copy_(host, non_blocking=True)
        if self.graph is not None:
            self.graph.replay()
        else:
            self.outputs = self._work()
        for host, device in zip(self.host_outputs, self.outputs, strict=False):
            host.copy_(device, non_blocking=True)
        self._torch.cuda.current_stream().synchronize()
        return [h.numpy() for h in self.host_outputs]


@dataclass(frozen=True)
class ImageProgram:
    """Everything captured for one camera image shape and channel order."""
    program: Program
    transform: Transform
    rows: DenseRows | None  # dense_boxes_scores: the packer whose rows come back


@dataclass(frozen=True)
class BatchProgram:
    """Everything captured for one combination of a batch's image shapes and channel orders."""
    program: Program
    transforms: list[Transform]
    rows: list[DenseRows] | None  # dense_boxes_scores: each image's packer


class TorchCudaBackend(Backend):
    name = 'torch_cuda'
    takes_images = True

    def __init__(self, path: Path, bundle: Bundle, options: BackendOptions, *, graphs: bool = True,
                 freeze: bool = True, module: Any = None) -> None:
        """``graphs=False`` launches op by op (the eager baseline); ``freeze=False`` keeps the
        TorchScript module unfrozen; ``module`` runs that module (e.g. a ``torch.compile``-d eager
        model) instead of loading ``path``."""
        if bundle.input.extra:
            raise BackendError(f'{path}: torch_cuda feeds the image only; this model also takes '
                               f'input.extra_inputs {[e.name for e in bundle.input.extra]} (the '
                               'torchscript and onnxruntime backends feed them)')
        if bundle.output.format not in DEVICE_FORMATS:
            raise BackendError(f'{path}: torch_cuda does not decode output format {bundle.output.format!r} '
                               f'(it takes {list(DEVICE_FORMATS)})')
        try:
            import torch
        except ImportError as exc:
            raise BackendError(f'torch is not installed ({exc}); the torch_cuda backend needs it') from exc
        if not torch.cuda.is_available():
            raise BackendError(f'torch {torch.__version__} has no CUDA device; torch_cuda needs one')
        if module is None and not path.is_file():
            raise BackendError(f'{path}: no such TorchScript model (torch_cuda runs the bundle\'s model.ts)')
        self._torch = torch
        self.device = torch.device('cuda', torch.cuda.current_device())  # memory calls want an index
        if options.gpu_usage < 1.0:
            torch.cuda.set_per_process_memory_fraction(options.gpu_usage, self.device)
        torch.backends.cudnn.benchmark = True  # one input shape: autotuned convolutions pay off at once
        # int8 needs a calibrated TensorRT engine; plain PyTorch runs it as fp16.
        self.dtype = torch.float32 if options.precision == 'fp32' else torch.float16
        frozen = ''
        if module is None:
            try:
                module = torch.jit.load(str(path), map_location=self.device)
            except Exception as exc:  # torch raises RuntimeError/ValueError/pickle errors for bad files
                raise BackendError(f'{path}: torch.jit.load failed: {exc}') from exc
            module = module.eval().to(self.device, self.dtype)
            if freeze:
                module, frozen = self._frozen(module, path)
        self.module = module.eval().to(self.device, self.dtype)
        self._check_runs(path, bundle)
        self.bundle = bundle
        self.graphs = graphs
        self._images: dict[tuple, ImageProgram] = {}  # by (shape, rgb_channels), least recent first
        self._batches: dict[tuple, BatchProgram] = {}  # by the images' (shape, rgb_channels), likewise
        self.batch_limit = probed_batch_limit(dynamic_batch_limit(options), lambda: network(
            self.module, torch.zeros(bundle.input.shape(2), device=self.device), self.dtype))
        self._tensor: Program | None = None
        mode = ('CUDA graph' if graphs else 'eager') + frozen
        super().__init__(f'PyTorch {torch.__version__} CUDA {torch.cuda.get_device_name()} '
                         f'{str(self.dtype).removeprefix("torch.")} {mode} ({path.name})')

    def _frozen(self, module: Any, path: Path) -> tuple[Any, str]:
        """Weights as constants: batch norms fold into the convolutions, ~30 fewer kernels per frame."""
        try:
            return self._torch.jit.freeze(module), ', frozen'
        except Exception as exc:  # e.g. a Torch-TensorRT module; it still runs unfrozen
            log.warning('torch_cuda: %s cannot be frozen (%s); running it as it is', path, exc)
            return module, ''

    def _check_runs(self, path: Path, bundle: Bundle) -> None:
        """One run at load, so a model that cannot run here fails over to the next backend now
        rather than failing every frame."""
        torch = self._torch
        try:
            network(self.module, torch.rand(bundle.input.shape(1), device=self.device), self.dtype)
        except RuntimeError as exc:
            cause = str(exc).strip().splitlines()[-1]
            raise BackendError(f'{path}: does not run on {torch.cuda.get_device_name()}: {cause} (a model '
                               'traced on the CPU keeps CPU tensors such as torch.arange(device="cpu"): '
                               'export it traced on a GPU, or scripted)') from exc

    def _capture_image(self, shape: tuple[int, int, int], rgb_channels: tuple[int, int, int]) -> ImageProgram:
        torch = self._torch
        transform = plan_transform(shape[0], shape[1], self.bundle.input)
        pipeline = FramePipeline(self.module, self.bundle, transform, rgb_channels, dtype=self.dtype,
                                 device=self.device)
        image = torch.empty(shape, dtype=torch.uint8, device=self.device)
        program = Program(torch, [image], lambda: pipeline(image), graph=self.graphs,
                          copied=None if pipeline.rows is None else 1)
        return ImageProgram(program, transform, pipeline.rows)

    def _capture_batch(self, key: tuple) -> BatchProgram:
        torch = self._torch
        transforms = [plan_transform(shape[0], shape[1], self.bundle.input) for shape, _ in key]
        pipeline = BatchPipeline(self.module, self.bundle, transforms, [c for _, c in key], dtype=self.dtype,
                                 device=self.device)
        images = [torch.empty(shape, dtype=torch.uint8, device=self.device) for shape, _ in key]
        program = Program(torch, images, lambda: pipeline(images), graph=self.graphs,
                          copied=None if pipeline.rows is None else len(key))
        return BatchProgram(program, transforms, pipeline.rows)

    def _image_program(self, shape: tuple[int, int, int], rgb_channels: tuple[int, int, int]) -> ImageProgram:
        """The captured program for this image shape; the first frame of a new one captures it
        (seconds, see bench/README.md: hence the node's warm-up at the camera's size)."""
        return most_recent(self._images, (shape, rgb_channels), IMAGE_PROGRAMS,
                           lambda: self._capture_image(shape, rgb_channels))

    def infer_images(self, images: Sequence[tuple[np.ndarray, tuple[int, int, int]]]
                     ) -> list[tuple[list[np.ndarray], Transform]]:
        """Several (pixels, rgb_channels) as one batch of at most ``batch_limit``: each image's
        outputs (batch axis 1, as ``infer_image`` gives them) and transform, in order."""
        if len(images) == 1:
            return [self.infer_image(*images[0])]
        key = tuple((pixels.shape, channels) for pixels, channels in images)
        found = most_recent(self._batches, key, BATCH_PROGRAMS, lambda: self._capture_batch(key))
        outputs = found.program.run(*(pixels for pixels, _ in images))
        if found.rows is None:
            return [([o[i:i + 1] for o in outputs], t) for i, t in enumerate(found.transforms)]
        answers = []
        for i, (rows, transform) in enumerate(zip(found.rows, found.transforms, strict=True)):
            if rows.overflowed(outputs[i]):  # more candidates than fit: that image's whole output
                answers.append(([found.program.outputs[-1][i:i + 1].cpu().numpy()], transform))
            else:
                answers.append(([rows.as_output(outputs[i])], transform))
        return answers

    @property
    def image_shapes(self) -> list[tuple]:
        """(shape, rgb_channels) of every image program held, least recently used first."""
        return list(self._images)

    def infer_image(self, pixels: np.ndarray, rgb_channels: tuple[int, int, int]
                    ) -> tuple[list[np.ndarray], Transform]:
        image = self._image_program(pixels.shape, rgb_channels)  # type: ignore[arg-type]
        outputs = image.program.run(pixels)
        if image.rows is None:
            return outputs, image.transform
        if image.rows.overflowed(outputs[0]):  # more candidates than fit: decode the whole output
            return [image.program.outputs[1].cpu().numpy()], image.transform
        return [image.rows.as_output(outputs[0])], image.transform

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """A preprocessed float32 batch (any batch size the model takes) -> its outputs."""
        program = self._tensor
        if program is None or tuple(program.device_inputs[0].shape) != tensor.shape:
            self._tensor = None
            torch = self._torch
            batch = torch.empty(tensor.shape, dtype=torch.float32, device=self.device)
            program = self._tensor = Program(torch, [batch], lambda: network(self.module, batch, self.dtype),
                                             graph=self.graphs)
        return program.run(tensor)

    def gpu_memory_bytes(self) -> int | None:
        return int(self._torch.cuda.memory_reserved())

    def close(self) -> None:
        self._images.clear()
        self._batches.clear()
        self._tensor = None
        self._torch.cuda.empty_cache()
