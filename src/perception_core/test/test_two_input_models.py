"""Two-input detectors: RT-DETR exported with its postprocessor, as lyuwenyu/RT-DETR's
tools/export_onnx.py writes it and Isaac ROS's RT-DETR / SyntheticaDETR models take it: inputs
``images`` and ``orig_target_sizes`` (int64 [1, 2]), outputs ``labels``, ``boxes``, ``scores``.

The ONNX graph here computes its boxes as that postprocessor does (normalised x1, y1, x2, y2 times
``orig_target_sizes.repeat(1, 2)``), so a size fed in the wrong order, or not at all, moves every
box. It is imported by the real ``perception-bundle`` command, run on ONNX Runtime and on a
torch.jit.script module with the same two inputs, and the detections are checked against image
boxes computed here from the letterbox arithmetic alone (scale = min(net / image), padding split
evenly), not by the workspace's Transform.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_bundle_import import cli

from perception_core.backends import BackendError, BackendOptions
from perception_core.backends.onnxruntime import OnnxRuntimeBackend
from perception_core.backends.select import open_backend
from perception_core.bundle import OUTPUT_FORMATS, BundleError, OutputSpec, load_bundle, parse_model_json
from perception_core.convert import Frame
from perception_core.decode import Thresholds, describe
from perception_core.detector import open_detector

NAMES = ('mug', 'box', 'can')
NET_W, NET_H = 160, 128            # not square: a [height, width] size would move every box
IMAGE_W, IMAGE_H = 640, 480        # letterbox scale min(160/640, 128/480) = 0.25, 160x120, pad_y 4
# Normalised cx, cy, w, h per query, as RT-DETR's decoder emits them.
QUERIES = np.array([[0.50, 0.50, 0.25, 0.25],
                    [0.20, 0.30, 0.10, 0.20],
                    [0.75, 0.40, 0.20, 0.30],
                    [0.30, 0.70, 0.15, 0.10],
                    [0.60, 0.60, 0.05, 0.05]], np.float32)
SCORES = np.array([0.90, 0.10, 0.60, 0.30, 0.05], np.float32)   # import's default threshold: 0.25
LABELS = np.array([2, 0, 1, 0, 1], np.int64)


def xyxy(queries: np.ndarray) -> np.ndarray:
    cx, cy, w, h = queries.T
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def write_rtdetr(path: Path) -> Path:
    """images [1, 3, H, W] float, orig_target_sizes [1, 2] int64 -> labels [1, Q] int64,
    boxes [1, Q, 4] = normalised xyxy * orig_target_sizes.repeat(1, 2), scores [1, Q]."""
    q = len(QUERIES)
    nodes = [
        helper.make_node('ReduceMean', ['images'], ['mean'], keepdims=0),
        helper.make_node('Mul', ['mean', 'zero'], ['nothing']),      # the graph reads its image
        helper.make_node('Cast', ['orig_target_sizes'], ['sizes'], to=TensorProto.FLOAT),
        helper.make_node('Tile', ['sizes', 'repeats'], ['sizes4']),  # [w, h] -> [w, h, w, h]
        helper.make_node('Unsqueeze', ['sizes4', 'axis1'], ['scale']),
        helper.make_node('Mul', ['normalised', 'scale'], ['boxes']),
        helper.make_node('Add', ['score_values', 'nothing'], ['scores']),
        helper.make_node('Identity', ['label_values'], ['labels']),
    ]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), 'zero'),
             numpy_helper.from_array(np.array([1, 2], np.int64), 'repeats'),
             numpy_helper.from_array(np.array([1], np.int64), 'axis1'),
             numpy_helper.from_array(xyxy(QUERIES)[None].astype(np.float32), 'normalised'),
             numpy_helper.from_array(SCORES[None], 'score_values'),
             numpy_helper.from_array(LABELS[None], 'label_values')]
    graph = helper.make_graph(
        nodes, 'rtdetr_deploy',
        [helper.make_tensor_value_info('images', TensorProto.FLOAT, [1, 3, NET_H, NET_W]),
         helper.make_tensor_value_info('orig_target_sizes', TensorProto.INT64, [1, 2])],
        [helper.make_tensor_value_info('labels', TensorProto.INT64, [1, q]),
         helper.make_tensor_value_info('boxes', TensorProto.FLOAT, [1, q, 4]),
         helper.make_tensor_value_info('scores', TensorProto.FLOAT, [1, q])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def expected_image_boxes() -> list[tuple[str, float, list[float]]]:
    """Kept queries (score > 0.25), best first, in image pixels by the letterbox arithmetic."""
    scale = min(NET_W / IMAGE_W, NET_H / IMAGE_H)
    pad_x = (NET_W - IMAGE_W * scale) / 2
    pad_y = (NET_H - IMAGE_H * scale) / 2
    net = xyxy(QUERIES.astype(np.float64)) * [NET_W, NET_H, NET_W, NET_H]
    image = (net - [pad_x, pad_y, pad_x, pad_y]) / scale
    kept = sorted((i for i in range(len(SCORES)) if SCORES[i] > 0.25), key=lambda i: -SCORES[i])
    return [(NAMES[LABELS[i]], round(float(SCORES[i]), 4), [round(float(v), 2) for v in image[i]])
            for i in kept]


def detections(model: Path, backend: str) -> list[tuple[str, float, list[float]]]:
    detector, selection = open_detector(model, backend=backend)
    try:
        assert selection.backend.name == backend and not selection.fell_back, selection.failures
        frame = Frame(np.full((IMAGE_H, IMAGE_W, 3), 90, np.uint8), 'rgb8')
        found, _ = detector.detect(frame)
    finally:
        detector.backend.close()
    return [(NAMES[int(c)], round(float(s), 4), [round(float(v), 2) for v in b])
            for b, s, c in zip(found.boxes, found.scores, found.class_ids, strict=True)]


@pytest.fixture(scope='module')
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The RT-DETR graph imported by the real perception-bundle command."""
    root = tmp_path_factory.mktemp('rtdetr')
    (root / 'names.txt').write_text('\n'.join(NAMES) + '\n')
    result = cli('import', write_rtdetr(root / 'rtdetr_r18.onnx'), '--classes', root / 'names.txt',
                 '--out', root / 'bundle')
    assert result.returncode == 0, result.stderr
    return root / 'bundle'


def test_import_writes_the_target_sizes_input_and_the_isaac_ros_preprocessing(imported: Path) -> None:
    document = json.loads((imported / 'model.json').read_text())
    assert document['input']['extra_inputs'] == {
        'orig_target_sizes': {'dtype': 'int64', 'value': 'network_size'}}
    assert document['output'] == {'format': 'boxes_scores_labels', 'names': ['boxes', 'scores', 'labels']}
    inp = document['input']
    assert (inp['width'], inp['height'], inp['resize'], inp['pad_value']) == (NET_W, NET_H, 'letterbox', 0)
    assert inp['std'] == pytest.approx([1 / 255] * 3)   # Isaac ROS feeds 0..255 (scale: False)
    bundle = load_bundle(imported)
    arrays = bundle.input.extra_arrays()
    assert list(arrays) == ['orig_target_sizes']
    assert arrays['orig_target_sizes'].dtype == np.int64
    assert arrays['orig_target_sizes'].tolist() == [[NET_W, NET_H]]   # width first, as RT-DETR scales x


def test_onnxruntime_detections_are_the_letterboxed_boxes_in_image_pixels(imported: Path) -> None:
    want = expected_image_boxes()
    assert [name for name, _, _ in want] == ['can', 'box', 'mug']
    assert detections(imported / 'model.onnx', 'onnxruntime') == want


def test_torchscript_two_input_module_gives_the_same_detections(imported: Path) -> None:
    torch = pytest.importorskip('torch')

    class RtDetrDeploy(torch.nn.Module):
        """RT-DETR's deploy-mode postprocessor over fixed queries; returns a dict, as its
        postprocessor does outside deploy mode, so the backend must pick outputs by name."""

        def __init__(self) -> None:
            super().__init__()
            self.normalised = torch.from_numpy(xyxy(QUERIES)[None].astype(np.float32))
            self.scores = torch.from_numpy(SCORES[None])
            self.labels = torch.from_numpy(LABELS[None])

        def forward(self, images: torch.Tensor, orig_target_sizes: torch.Tensor) -> dict[str, torch.Tensor]:
            scale = orig_target_sizes.repeat(1, 2).unsqueeze(1).to(images.dtype)
            return {'labels': self.labels, 'boxes': self.normalised * scale,
                    'scores': self.scores + 0 * images.mean()}

    torch.jit.script(RtDetrDeploy()).save(str(imported / 'model.ts'))
    try:
        assert detections(imported / 'model.ts', 'torchscript') == expected_image_boxes()
    finally:
        (imported / 'model.ts').unlink()


def test_torch_cuda_refuses_extra_inputs_and_the_chain_moves_on(imported: Path) -> None:
    from perception_core.backends.torch_cuda import TorchCudaBackend
    bundle = load_bundle(imported)
    with pytest.raises(BackendError, match=r"torch_cuda feeds the image only.*\['orig_target_sizes'\]"):
        TorchCudaBackend(imported / 'model.ts', bundle, BackendOptions())
    selection = open_backend(imported / 'model.onnx', bundle, 'torch_cuda', BackendOptions())
    try:
        assert selection.backend.name == 'onnxruntime'
        assert 'extra_inputs' in dict(selection.failures)['torch_cuda']
    finally:
        selection.backend.close()


def test_show_prints_the_extra_input_and_the_decoders_own_words(imported: Path) -> None:
    result = cli('show', imported)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert (f"extra input: 'orig_target_sizes' int64 [1, 2] = [[{NET_W}, {NET_H}]] "
            '(network_size: width, height') in out
    bundle = load_bundle(imported)
    for line in describe(bundle.output, Thresholds.resolve(bundle.postprocess)):
        assert line in out
    assert 'boxes [B, K, 4] x1, y1, x2, y2 (network pixels)' in out
    assert f'feed beside it, every frame: orig_target_sizes [[{NET_W}, {NET_H}]]' in out


def test_every_output_format_describes_itself_with_its_options() -> None:
    thresholds = Thresholds(0.4, 0.6, 50)
    for fmt in OUTPUT_FORMATS:
        lines = describe(OutputSpec(fmt, ('out',)), thresholds)
        assert lines and any('0.4' in line for line in lines), fmt
    spec = OutputSpec('boxes_scores_labels', ('b', 's', 'l', 'n'), boxes='cxcywh', normalised=True,
                      class_offset=1)
    words = ' | '.join(describe(spec, thresholds))
    assert 'cx, cy, w, h normalised to the network input' in words
    assert 'only the first n rows' in words and 'label - 1' in words


def test_onnxruntime_refuses_a_bundle_that_does_not_declare_or_mistypes_the_extra_input(
        imported: Path, tmp_path: Path) -> None:
    document = json.loads((imported / 'model.json').read_text())
    document['input'].pop('extra_inputs')
    bundle = parse_model_json(document, imported, 'model.json')
    with pytest.raises(BackendError, match=r"inputs \['images', 'orig_target_sizes'\] do not match"):
        OnnxRuntimeBackend(imported / 'model.onnx', bundle, BackendOptions())
    document['input']['extra_inputs'] = {'orig_target_sizes': {'dtype': 'float32', 'value': 'network_size'}}
    bundle = parse_model_json(document, imported, 'model.json')
    with pytest.raises(BackendError, match=r"'orig_target_sizes' is tensor\(int64\); model.json "
                                           r"input.extra_inputs.orig_target_sizes.dtype says float32"):
        OnnxRuntimeBackend(imported / 'model.onnx', bundle, BackendOptions())


def _document(extra: object) -> dict:
    return {'format': 1, 'classes': list(NAMES),
            'input': {'name': 'images', 'height': NET_H, 'width': NET_W, 'extra_inputs': extra},
            'output': {'format': 'boxes_scores_labels', 'names': ['boxes', 'scores', 'labels']}}


@pytest.mark.parametrize(('extra', 'where', 'why'), [
    (['orig_target_sizes'], 'input.extra_inputs', 'must map input names'),
    ({'orig_target_sizes': 'network_size'}, 'input.extra_inputs.orig_target_sizes', 'must be {"dtype"'),
    ({'orig_target_sizes': {'value': 'network_size'}}, 'input.extra_inputs.orig_target_sizes: dtype',
     'must be one of'),
    ({'orig_target_sizes': {'dtype': 'uint8', 'value': [1, 2]}},
     'input.extra_inputs.orig_target_sizes: dtype', "got 'uint8'"),
    ({'orig_target_sizes': {'dtype': 'int64'}}, 'input.extra_inputs.orig_target_sizes.value', 'missing'),
    ({'orig_target_sizes': {'dtype': 'int64', 'value': 'image_size'}},
     'input.extra_inputs.orig_target_sizes.value', "must be 'network_size'"),
    ({'orig_target_sizes': {'dtype': 'int64', 'value': [640.5, 640]}},
     'input.extra_inputs.orig_target_sizes.value', 'integers for an integer dtype'),
    ({'orig_target_sizes': {'dtype': 'int32', 'value': [2 ** 40, 1]}},
     'input.extra_inputs.orig_target_sizes.value', 'does not fit int32'),
    ({'orig_target_sizes': {'dtype': 'float32', 'value': [[1, 2], [3]]}},
     'input.extra_inputs.orig_target_sizes.value', 'equal-length lists'),
    ({'orig_target_sizes': {'dtype': 'int64', 'value': [True, 2]}},
     'input.extra_inputs.orig_target_sizes.value', 'a list of numbers'),
    ({'orig_target_sizes': {'dtype': 'int64', 'value': [1, 2], 'shape': [1, 2]}},
     'input.extra_inputs.orig_target_sizes.shape', 'unknown key'),
    ({'images': {'dtype': 'float32', 'value': [1.0]}}, 'input.extra_inputs.images',
     "other than the image input 'images'"),
])
def test_bad_extra_input_declarations_name_the_key(extra: object, where: str, why: str) -> None:
    with pytest.raises(BundleError) as caught:
        parse_model_json(_document(extra), Path('.'), 'model.json')
    message = str(caught.value)
    assert message.startswith(f'model.json: {where}') and why in message, message


def test_explicit_values_are_fed_as_declared() -> None:
    bundle = parse_model_json(_document({'orig_target_sizes': {'dtype': 'float32', 'value': [640, 480]},
                                         'scale': {'dtype': 'int32', 'value': [[1, 2], [3, 4]]}}),
                              Path('.'), 'model.json')
    arrays = bundle.input.extra_arrays()
    assert list(arrays) == ['orig_target_sizes', 'scale']   # model.json's order: TorchScript's arguments
    assert arrays['orig_target_sizes'].dtype == np.float32
    assert arrays['orig_target_sizes'].tolist() == [[640, 480]]
    assert arrays['scale'].dtype == np.int32 and arrays['scale'].shape == (2, 2)
    assert parse_model_json(_document({}), Path('.'), 'model.json').input.extra == ()


def test_the_engine_plan_carries_the_extra_input_and_torch_tensorrt_refuses_it(imported: Path) -> None:
    # TensorRT itself is not on this machine: the plan is what tensorrt_build.py reads to give each
    # fixed-shape extra input its profile (mypy-checked against tensorrt-stubs in make lint)
    from engine_bundles import deployment_values

    from perception_core.bundle import load_bundle
    from perception_core.engine.plan import PlanError, make_plan
    bundle = load_bundle(imported)
    values = deployment_values(imported)
    values['model.input_shape'] = list(bundle.input.shape())
    plan = make_plan(values, bundle, imported / 'model.engine')
    assert plan.extra_inputs == ('orig_target_sizes',)
    assert list(plan.to_json()['extra_inputs']) == ['orig_target_sizes']
    with pytest.raises(PlanError, match=r'input\.extra_inputs .*orig_target_sizes.*Torch-TensorRT'):
        make_plan(values, bundle, imported / 'model_trt.ts', target='torch_tensorrt')
