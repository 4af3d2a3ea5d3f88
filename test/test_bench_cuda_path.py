"""The node's CUDA inference path (backends/torch_cuda.py, torch_preprocess.py, torch_decode.py).

Here (no GPU): its pieces on the CPU, the very code the GPU runs: device-side decoding keeps every
candidate in order, preprocessing matches OpenCV for every channel order and layout, and the
whole frame pipeline on the shipped bundle finds what ONNX Runtime finds. On a CUDA machine (the
device run, tools/bench_device.sh): the real backend in fp16, with and without CUDA graphs,
against ONNX Runtime on the CPU, batched inference, and the overflow fallback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

WORKSPACE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(WORKSPACE / 'src/perception_core/test'))  # probe_bundle

from probe_bundle import write_probe_bundle  # noqa: E402

from perception_bench.agreement import agreement, confident_agreement  # noqa: E402
from perception_bench.backends import camera_frames, detect_all  # noqa: E402
from perception_core.backends import BackendOptions  # noqa: E402
from perception_core.backends.gpu import torch_cuda_available  # noqa: E402
from perception_core.bundle import InputSpec, load_bundle  # noqa: E402
from perception_core.convert import Frame  # noqa: E402
from perception_core.decode import Thresholds, decode  # noqa: E402
from perception_core.detector import Detector, open_detector  # noqa: E402
from perception_core.preprocess import Preprocessor, plan_transform  # noqa: E402

try:  # requirements/python.txt (make setup): missing is a failure, not a skip
    import torch
except ImportError as error:
    pytest.fail(f'torch is missing ({error}): make setup installs requirements/python.txt', pytrace=False)
from perception_core.backends.torch_cuda import FramePipeline  # noqa: E402
from perception_core.backends.torch_decode import DenseRows  # noqa: E402
from perception_core.backends.torch_preprocess import TorchPreprocess  # noqa: E402

SHIPPED = WORKSPACE / 'models/detector'
needs_cuda = pytest.mark.skipif(
    not torch_cuda_available(),
    reason='needs torch with CUDA and a GPU (runs on the device: tools/bench_device.sh)',
)
needs_shipped = pytest.mark.usefixtures('shipped_bundle')
# How far clear of the score threshold a colour frame's detection must score for two pipelines to
# be held to the same answer: resize rounding and fp16 kernels move scores by less (bench/README).
ROUNDING_MARGIN = 0.02


@pytest.fixture
def shipped_bundle() -> Path:
    """models/detector is in git: a checkout without it is broken, not a reason to skip."""
    if not (SHIPPED / 'model.json').is_file():
        pytest.fail(f'{SHIPPED}/model.json is missing: it is shipped in git (git checkout models/detector, '
                    'or make train to reproduce it)', pytrace=False)
    return SHIPPED


def sparse_dense_output(rng: np.random.Generator, rows: int, live: int, classes: int) -> np.ndarray:
    """[1, rows, 4 + classes]: boxes everywhere, class scores on ``live`` rows only (with ties)."""
    out = np.zeros((1, rows, 4 + classes), np.float32)
    xy = rng.uniform(0, 250, (rows, 2)).astype(np.float32)
    out[0, :, :2], out[0, :, 2:4] = xy, xy + rng.uniform(5, 60, (rows, 2)).astype(np.float32)
    chosen = rng.choice(rows, live, replace=False)
    out[0, chosen, 4 + rng.integers(0, classes, live)] = rng.choice([0.2, 0.5, 0.7, 0.95], live)
    return out


def test_dense_rows_keep_every_candidate_in_order():
    rng = np.random.default_rng(3)
    spec = InputSpec('images', 256, 320)
    transform = plan_transform(480, 640, spec)
    packer = DenseRows(7, 'cpu', rows=64)
    busy = sparse_dense_output(rng, 600, 60, 3)
    packer(torch.from_numpy(busy))  # a busier frame first: none of its rows may survive
    dense = sparse_dense_output(rng, 600, 40, 3)
    packed = packer(torch.from_numpy(dense)).numpy()
    assert packer.count(packed) == 40 and not packer.overflowed(packed)
    assert packer.as_output(packed).shape == (1, 64, 7)
    assert not packed[40:64].any()
    for threshold in (1e-6, 0.3, 0.9):
        thresholds = Thresholds(threshold, 0.5, 100)
        full = decode([dense], 'dense_boxes_scores', 3, transform, thresholds)
        compact = decode([packer.as_output(packed)], 'dense_boxes_scores', 3, transform, thresholds)
        np.testing.assert_array_equal(compact.boxes, full.boxes)
        np.testing.assert_array_equal(compact.scores, full.scores)
        np.testing.assert_array_equal(compact.class_ids, full.class_ids)


def test_dense_rows_say_when_they_overflow():
    packer = DenseRows(7, 'cpu', rows=16)
    packed = packer(torch.from_numpy(sparse_dense_output(np.random.default_rng(4), 600, 40, 3))).numpy()
    assert packer.count(packed) == 40 and packer.overflowed(packed)


@pytest.mark.parametrize(
    ('encoding', 'rgb_channels', 'layout'),
    [
        ('bgr8', (2, 1, 0), 'NCHW'),
        ('rgba8', (0, 1, 2), 'NCHW'),
        ('mono8', (0, 0, 0), 'NCHW'),
        ('rgb8', (0, 1, 2), 'NHWC'),
    ],
)
def test_torch_preprocessing_matches_opencv_for_every_channel_order(encoding, rgb_channels, layout):
    spec = InputSpec(
        'images', 256, 320, layout=layout, color='RGB', mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3)
    )
    channels = {'bgr8': 3, 'rgba8': 4, 'mono8': 1, 'rgb8': 3}[encoding]
    image = np.random.default_rng(5).integers(0, 256, (480, 640, channels), dtype=np.uint8)
    expected, transform = Preprocessor(spec)(image, rgb_channels)
    got = TorchPreprocess(spec, transform, rgb_channels, torch.float32, torch.device('cpu'))(
        torch.from_numpy(image)
    )
    assert tuple(got.shape) == expected.shape
    # OpenCV rounds its fixed-point bilinear weights: values may differ by one grey level
    np.testing.assert_allclose(got.numpy(), expected, atol=1.01 / (255 * 0.2))
    assert np.mean(np.abs(got.numpy() - expected)) < 0.01


def frames_of_every_kind(bundle):
    """Camera frames of every kind, by name: 640x480 rgb8, 1280x720 bgr8, 640x480 mono8."""
    frames = {
        '640x480 rgb8': camera_frames(bundle, 8, 640, 480),
        '1280x720 bgr8': camera_frames(bundle, 4, 1280, 720, 'bgr8'),
    }
    frames['640x480 mono8'] = [
        Frame(np.ascontiguousarray(f.pixels[..., :1]), 'mono8') for f in frames['640x480 rgb8']
    ]
    return frames


def assert_same_detections(name, reference, found, threshold):
    """Every detection clear of the score threshold has its match (IoU >= 0.9), each way. Colour
    frames: 0.02 clear; a detection right at the threshold may fall on either side of it, since
    OpenCV's fixed-point resize and torch's float one differ by a grey level (the shipped batch-64
    resnet_slim m: a 0.301 box on one 1280x720 frame that ONNX Runtime scores just under 0.3). Mono
    frames are unlike anything the model was trained on and hold weak detections (0.30-0.35) whose
    score and box that rounding moves (a 0.346 box at IoU 0.65 between the two pipelines): 0.1
    clear there."""
    margin = 0.1 if name.endswith('mono8') else ROUNDING_MARGIN
    assert confident_agreement(reference, found, threshold + margin), (name, agreement(reference, found))
    if not name.endswith('mono8'):
        assert sum(len(d) for d in reference) > 0, name


def test_the_frame_pipeline_on_the_cpu_finds_what_onnxruntime_finds():
    bundle = load_bundle(SHIPPED)
    reference, _ = open_detector(SHIPPED / 'model.onnx', 'onnxruntime', BackendOptions(threads=1))
    module = torch.jit.load(str(SHIPPED / 'model.ts'), map_location='cpu').eval()
    for name, frames in frames_of_every_kind(bundle).items():
        height, width = frames[0].pixels.shape[:2]
        transform = plan_transform(height, width, bundle.input)
        pipeline = FramePipeline(
            module, bundle, transform, frames[0].rgb_channels, dtype=torch.float32, device='cpu'
        )
        found = []
        for frame in frames:
            packed = pipeline(torch.from_numpy(frame.pixels))[0].numpy()
            assert not pipeline.rows.overflowed(packed)
            output = pipeline.rows.as_output(packed)
            classes = len(bundle.classes)
            found.append(decode([output], bundle.output.format, classes, transform, reference.thresholds))
        assert_same_detections(name, detect_all(reference, frames), found, reference.thresholds.score)


@pytest.fixture(scope='module')
def gpu_bundle(tmp_path_factory):
    """The shipped bundle, or where its model.ts cannot run on CUDA (traced on the CPU), the same
    weights traced on the GPU (perception_bench/cuda_model.py)."""
    from perception_bench.cuda_model import runnable_bundle

    return runnable_bundle(load_bundle(SHIPPED), tmp_path_factory.mktemp('gpu_bundle'))[0]


@needs_cuda
@needs_shipped
@pytest.mark.parametrize(('precision', 'graphs'), [('fp16', True), ('fp16', False), ('fp32', True)])
def test_torch_cuda_finds_what_onnxruntime_finds(precision, graphs, gpu_bundle):
    from perception_core.backends.torch_cuda import TorchCudaBackend

    bundle = gpu_bundle
    reference, _ = open_detector(SHIPPED / 'model.onnx', 'onnxruntime', BackendOptions())
    options = BackendOptions(precision=precision, gpu_usage=0.8)  # the deployment YAML's share
    backend = TorchCudaBackend(bundle.torchscript_path, bundle, options, graphs=graphs)
    gpu = Detector(bundle, backend, reference.thresholds)
    try:
        for name, frames in frames_of_every_kind(bundle).items():
            found = detect_all(gpu, frames)
            assert_same_detections(name, detect_all(reference, frames), found, reference.thresholds.score)
    finally:
        backend.close()


@needs_cuda
@needs_shipped
def test_torch_cuda_batches_find_what_onnxruntime_finds(gpu_bundle):
    from perception_core.backends.onnxruntime import OnnxRuntimeBackend
    from perception_core.backends.torch_cuda import TorchCudaBackend

    bundle = gpu_bundle
    frames = camera_frames(bundle, 8, 640, 480)
    preprocessor = Preprocessor(bundle.input)
    batch = np.concatenate([preprocessor(f.pixels, f.rgb_channels)[0].copy() for f in frames])
    transform = plan_transform(480, 640, bundle.input)
    thresholds = Thresholds.resolve(bundle.postprocess)
    gpu = TorchCudaBackend(bundle.torchscript_path, bundle, BackendOptions(precision='fp16'))
    cpu = OnnxRuntimeBackend(bundle.onnx_path, bundle, BackendOptions())

    def per_frame(outputs):
        return [
            decode(
                [o[i : i + 1] for o in outputs],
                bundle.output.format,
                len(bundle.classes),
                transform,
                thresholds,
            )
            for i in range(len(frames))
        ]

    try:
        reference, found = per_frame(cpu.infer(batch)), per_frame(gpu.infer(batch))
        floor = thresholds.score + ROUNDING_MARGIN
        assert confident_agreement(reference, found, floor), agreement(reference, found)
        assert sum(len(d) for d in reference) > 0
    finally:
        gpu.close()


@needs_cuda
@needs_shipped
def test_torch_cuda_keeps_the_programs_of_recent_image_sizes(gpu_bundle):
    """The node warms up at the camera's sizes (runtime.warmup_images): each size's captured
    program must stay and answer as when it was first captured, and ever new sizes stay bounded."""
    from perception_core.backends.torch_cuda import IMAGE_PROGRAMS, TorchCudaBackend

    bundle = gpu_bundle
    vga, hd = camera_frames(bundle, 1, 640, 480)[0], camera_frames(bundle, 1, 1280, 720, 'bgr8')[0]
    backend = TorchCudaBackend(bundle.torchscript_path, bundle, BackendOptions(precision='fp16'))
    gpu = Detector(bundle, backend, Thresholds.resolve(bundle.postprocess))
    try:
        first = [gpu.detect(f)[0] for f in (vga, hd)]
        again = [gpu.detect(f)[0] for f in (vga, hd)]
        assert backend.image_shapes == [((480, 640, 3), (0, 1, 2)), ((720, 1280, 3), (2, 1, 0))]
        for before, after in zip(first, again, strict=True):
            assert len(before) > 0
            np.testing.assert_array_equal(before.boxes, after.boxes)
        for width in range(1, IMAGE_PROGRAMS):
            backend.infer_image(np.zeros((64, 64 * width, 3), np.uint8), (0, 1, 2))
        assert len(backend.image_shapes) == IMAGE_PROGRAMS
        assert ((480, 640, 3), (0, 1, 2)) not in backend.image_shapes  # the least recently used went
    finally:
        backend.close()


@needs_cuda
def test_torch_cuda_decodes_the_whole_output_when_the_rows_overflow(tmp_path):
    from perception_core.backends.torch_cuda import TorchCudaBackend
    from perception_core.backends.torch_decode import ROWS

    rows = sparse_dense_output(np.random.default_rng(6), 2 * ROWS, ROWS + 50, 3)

    class Busy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer('rows', torch.from_numpy(rows))

        def forward(self, images):
            return self.rows + images.mean() * 0

    torch.jit.script(Busy()).save(str(tmp_path / 'model.ts'))
    (tmp_path / 'model.json').write_text(
        json.dumps(
            {
                'format': 1,
                'classes': ['a', 'b', 'c'],
                'input': {'name': 'images', 'height': 256, 'width': 320},
                'output': {'format': 'dense_boxes_scores', 'names': ['detections']},
            }
        )
    )
    bundle = load_bundle(tmp_path)
    backend = TorchCudaBackend(tmp_path / 'model.ts', bundle, BackendOptions(precision='fp32'))
    outputs, _ = backend.infer_image(np.full((480, 640, 3), 128, np.uint8), (0, 1, 2))
    np.testing.assert_allclose(outputs[0], rows, atol=1e-4)
    backend.close()


@needs_cuda
def test_a_model_that_cannot_run_on_cuda_is_refused_at_load(tmp_path):
    """A model traced on the CPU keeps CPU tensors: refused when loaded, so the node falls back to
    ONNX Runtime at start instead of failing every frame."""
    from perception_core.backends.select import open_backend

    class Grid(torch.nn.Module):
        def forward(self, images):
            return images[:, :1, :5, :7].mean(1) + torch.arange(7, dtype=torch.float32, device=images.device)

    write_probe_bundle(tmp_path)
    with torch.no_grad():
        torch.jit.trace(Grid(), torch.rand(1, 3, 256, 320)).save(str(tmp_path / 'model.ts'))
    selection = open_backend(tmp_path / 'model.ts', load_bundle(tmp_path), 'torch_cuda', BackendOptions())
    assert selection.backend.name == 'onnxruntime'
    assert 'does not run on' in selection.failures[0][1] and 'traced on the CPU' in selection.failures[0][1]


def mixed_camera_frames(bundle):
    """Four cameras' frames as a node's batch holds them: two sizes, two channel orders."""
    return [*camera_frames(bundle, 2, 640, 480), camera_frames(bundle, 1, 1280, 720, 'bgr8')[0],
            camera_frames(bundle, 1, 320, 240)[0]]


@needs_shipped
def test_the_batch_pipeline_on_the_cpu_packs_each_image_as_the_frame_pipeline_does():
    """What torch_cuda captures for a camera batch, run on the CPU: image i's packed rows equal the
    one-frame pipeline's for that image alone (each image preprocessed into its own row)."""
    from perception_core.backends.torch_cuda import BatchPipeline

    bundle = load_bundle(SHIPPED)
    module = torch.jit.load(str(SHIPPED / 'model.ts'), map_location='cpu').eval()
    frames = mixed_camera_frames(bundle)
    transforms = [plan_transform(*f.pixels.shape[:2], bundle.input) for f in frames]
    batch = BatchPipeline(module, bundle, transforms, [f.rgb_channels for f in frames], dtype=torch.float32,
                          device='cpu')
    outputs = batch([torch.from_numpy(f.pixels) for f in frames])
    assert len(outputs) == len(frames) + 1 and outputs[-1].shape[0] == len(frames)
    live = 0
    for i, (frame, transform) in enumerate(zip(frames, transforms, strict=True)):
        single = FramePipeline(module, bundle, transform, frame.rgb_channels, dtype=torch.float32,
                               device='cpu')
        expected = single(torch.from_numpy(frame.pixels))[0].numpy()
        np.testing.assert_allclose(outputs[i].numpy(), expected, atol=1e-4)
        live += single.rows.count(expected)
    assert live > 0, 'no candidate rows at all: the comparison would prove nothing'


@needs_cuda
@needs_shipped
def test_torch_cuda_camera_batches_find_what_one_frame_at_a_time_finds(gpu_bundle):
    """The node's batch (Detector.detect_batch) on torch_cuda: one graph per combination of the
    cameras' image shapes, each frame's detections as a one-frame call and ONNX Runtime find them."""
    from perception_core.backends.torch_cuda import BATCH_PROGRAMS, TorchCudaBackend

    bundle = gpu_bundle
    frames = mixed_camera_frames(bundle)
    reference, _ = open_detector(SHIPPED / 'model.onnx', 'onnxruntime', BackendOptions())
    backend = TorchCudaBackend(bundle.torchscript_path, bundle,
                               BackendOptions(precision='fp16', max_batch_size=4))
    gpu = Detector(bundle, backend, reference.thresholds)
    try:
        assert backend.batch_limit == 4
        batched, timings = gpu.detect_batch(frames)
        again, _ = gpu.detect_batch(frames)
        assert len(backend._batches) == 1 and timings['infer'] > 0  # captured once, replayed
        singles = [gpu.detect(f)[0] for f in frames]
        onnx = [reference.detect(f)[0] for f in frames]
        floor = reference.thresholds.score + ROUNDING_MARGIN  # fp16 at batch 4 and 1; OpenCV's resize
        for i in range(len(frames)):
            np.testing.assert_array_equal(batched[i].boxes, again[i].boxes)
            for one in (singles[i], onnx[i]):
                assert confident_agreement([one], [batched[i]], floor), (i, agreement([one], [batched[i]]))
        assert sum(len(d) for d in batched) > 0
        # five frames with a limit of four: a batch of four and one frame; new combinations bounded
        gpu.detect_batch([*frames, frames[0]])
        for width in range(BATCH_PROGRAMS + 2):
            backend.infer_images([(np.zeros((64, 64 + width, 3), np.uint8), (0, 1, 2))] * 2)
        assert len(backend._batches) == BATCH_PROGRAMS
    finally:
        backend.close()
