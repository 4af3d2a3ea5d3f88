from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from probe_bundle import ROWS, write_probe_bundle

from perception_core.backends import BackendOptions
from perception_core.backends.gpu import torch_cuda_available
from perception_core.backends.select import NoBackend, choose, open_backend
from perception_core.backends.tensorrt import available as tensorrt_available
from perception_core.bundle import load_bundle
from perception_core.detector import open_detector

try:  # requirements/python.txt (make setup): missing is a failure, not a skip
    import torch
except ImportError as error:
    pytest.fail(f'torch is missing ({error}): make setup installs requirements/python.txt', pytrace=False)


def write_torchscript(directory: Path) -> Path:
    """model.ts computing the probe's fixed rows, like model.onnx."""
    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer('rows', torch.from_numpy(ROWS[None].copy()))

        def forward(self, images):
            return self.rows + images.mean() * 0

    path = directory / 'model.ts'
    torch.jit.script(Fixed()).save(str(path))
    return path


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    write_probe_bundle(tmp_path)
    return tmp_path


def test_auto_choice_by_extension():
    assert choose(Path('m.engine'), 'auto')[0] == 'tensorrt'
    assert choose(Path('m.plan'), 'auto')[0] == 'tensorrt'
    assert choose(Path('m.onnx'), 'auto') == ('onnxruntime', 'model.path ends in .onnx')
    assert choose(Path('m.ts'), 'auto')[0] == ('torch_cuda' if torch_cuda_available() else 'torchscript')
    assert choose(Path('m.onnx'), 'torchscript') == ('torchscript', "model.backend is 'torchscript'")
    with pytest.raises(NoBackend, match=r'm.pt: model.path must end in'):
        choose(Path('m.pt'), 'auto')


def test_torchscript_and_onnxruntime_agree(bundle_dir):
    ts = write_torchscript(bundle_dir)
    tensor = np.random.default_rng(0).random((1, 3, 256, 320), dtype=np.float32)
    bundle = load_bundle(ts)
    script = open_backend(ts, bundle, 'torchscript', BackendOptions(threads=1)).backend
    runtime = open_backend(bundle_dir / 'model.onnx', bundle, 'auto', BackendOptions(threads=1)).backend
    assert script.name == 'torchscript' and runtime.name == 'onnxruntime'
    np.testing.assert_allclose(script.infer(tensor)[0], runtime.infer(tensor)[0], atol=1e-6)


def test_corrupt_onnx_falls_back_to_torchscript(bundle_dir):
    write_torchscript(bundle_dir)
    (bundle_dir / 'model.onnx').write_bytes(b'not a model' * 10)
    selection = open_backend(bundle_dir / 'model.onnx', load_bundle(bundle_dir), 'auto', BackendOptions())
    assert selection.backend.name == 'torchscript' and selection.requested == 'onnxruntime'
    assert selection.fell_back and 'ONNX Runtime cannot load it' in selection.failures[0][1]


def test_no_loadable_backend_lists_every_reason(bundle_dir):
    (bundle_dir / 'model.onnx').write_bytes(b'\x00garbage')
    with pytest.raises(NoBackend) as info:
        open_detector(bundle_dir / 'model.onnx')
    message = str(info.value)
    assert 'onnxruntime:' in message and 'torchscript:' in message and 'model.ts: no such' in message


def test_engine_without_tensorrt_falls_back_along_the_chain(bundle_dir):
    engine = bundle_dir / 'model.engine'
    engine.write_bytes(b'engine bytes')
    selection = open_backend(engine, load_bundle(bundle_dir), 'auto', BackendOptions())
    tried = [name for name, _ in selection.failures]
    if not tensorrt_available():
        assert tried[0] == 'tensorrt'
        assert 'tensorrt Python package is not installed' in selection.failures[0][1]
    if not torch_cuda_available():
        assert tried == ['tensorrt', 'torch_cuda'] and 'no CUDA device' in selection.failures[1][1]
        assert selection.backend.name == 'onnxruntime'


def test_corrupt_engine_with_tensorrt_is_refused(bundle_dir):
    if not tensorrt_available():
        pytest.skip('TensorRT is not installed here (it comes with JetPack / the TensorRT wheels)')
    if not torch_cuda_available():
        pytest.skip('TensorRT backend needs a CUDA GPU')
    engine = bundle_dir / 'model.engine'
    engine.write_bytes(b'engine bytes')
    selection = open_backend(engine, load_bundle(bundle_dir), 'tensorrt', BackendOptions())
    assert selection.failures[0][0] == 'tensorrt' and 'sidecar' in selection.failures[0][1]


def test_torch_cuda_matches_cpu_pipeline(bundle_dir):
    if not torch_cuda_available():
        pytest.skip('torch_cuda needs torch with CUDA and a GPU; this torch has no CUDA device')
    ts = write_torchscript(bundle_dir)
    image = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    bundle = load_bundle(ts)
    gpu = open_backend(ts, bundle, 'torch_cuda', BackendOptions(precision='fp16')).backend
    outputs, transform = gpu.infer_image(image, (0, 1, 2))
    assert transform.pad_y == 8
    # decoding's first step ran on the GPU: the rows with a score come first, the packed rest is zero
    np.testing.assert_allclose(outputs[0][:, :len(ROWS)], ROWS[None], atol=0.05)
    assert not outputs[0][:, len(ROWS):].any()


def test_copied_bundle_keeps_working(bundle_dir, tmp_path_factory):
    # A bundle is a directory: moving it moves everything the backends need.
    moved = Path(shutil.copytree(bundle_dir, tmp_path_factory.mktemp('moved') / 'detector'))
    detector, selection = open_detector(moved / 'model.onnx')
    assert selection.backend.description.startswith('ONNX Runtime')
    assert detector.bundle.classes == ('cup', 'bottle', 'box')
