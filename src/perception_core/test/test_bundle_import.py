"""perception-bundle import / show on real ONNX files.

The models are small ONNX graphs with the interface of Ultralytics exports (outputs shaped as
YOLO11 detect, NMS-free YOLO and RT-DETR exports, metadata_props as Ultralytics 8.4 writes them:
``names`` a Python dict literal, ``imgsz`` a list literal, ``stride``, ``task``, ``end2end``, ...)
and of torchvision-style boxes/scores/labels models; their outputs are constants, so what the
imported bundle detects is known exactly. Each bundle is loaded back, opened on ONNX Runtime and
run; the CLI runs as its own process (the installed console script).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from perception_core.bundle import BundleError, load_bundle, sha256_of
from perception_core.bundle_import import POSTPROCESS, import_model, parse_names, read_classes_file
from perception_core.convert import Frame
from perception_core.detector import open_detector
from perception_core.sidecar import RuntimeFacts, make_sidecar, write_sidecar

NAMES = ('person', 'bicycle', 'car')
SIZE = 64
ANCHORS = 8 * 8 + 4 * 4 + 2 * 2   # strides 8, 16, 32 at 64x64
ULTRALYTICS_META = {
    'description': 'Ultralytics YOLO11n model trained on data.yaml', 'author': 'Ultralytics',
    'date': '2026-11-30T10:00:00.000000', 'version': '8.4.2', 'license': 'AGPL-3.0 License',
    'docs': 'https://docs.ultralytics.com', 'stride': '32', 'task': 'detect', 'batch': '1',
    'imgsz': f'[{SIZE}, {SIZE}]', 'names': str(dict(enumerate(NAMES))),
    'args': "{'batch': 1, 'half': False, 'int8': False, 'dynamic': False, 'nms': False}",
    'channels': '3', 'end2end': 'False',
}


def yolo_v8_output() -> np.ndarray:
    """[1, 4 + C, N]: cx, cy, w, h in network pixels, then class scores."""
    out = np.zeros((1, 4 + len(NAMES), ANCHORS), np.float32)
    out[0, :, 0] = [20, 20, 16, 16, 0.90, 0.0, 0.0]
    out[0, :, 1] = [21, 20, 16, 16, 0.80, 0.0, 0.0]   # same class, IoU ~0.9 with anchor 0: NMS drops it
    out[0, :, 2] = [45, 45, 10, 12, 0.0, 0.60, 0.0]
    out[0, :, 3] = [10, 50, 8, 8, 0.0, 0.0, 0.20]     # below Ultralytics' conf 0.25
    return out


def write_model(path: Path, outputs: dict[str, np.ndarray], metadata: dict[str, str] | None = None,
                input_shape: list | None = None, output_shapes: dict[str, list] | None = None) -> Path:
    """An ONNX model whose outputs are ``outputs`` whatever the image (0 x the image's mean is added,
    so the graph reads its input)."""
    input_shape = input_shape or [1, 3, SIZE, SIZE]
    nodes = [helper.make_node('ReduceMean', ['images'], ['mean'], keepdims=0),
             helper.make_node('Mul', ['mean', 'zero'], ['nothing'])]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), 'zero')]
    values = []
    for name, array in outputs.items():
        inits.append(numpy_helper.from_array(array, f'{name}_value'))
        if array.dtype == np.float32:
            nodes.append(helper.make_node('Add', [f'{name}_value', 'nothing'], [name]))
        else:
            nodes.append(helper.make_node('Identity', [f'{name}_value'], [name]))
        dtype = TensorProto.FLOAT if array.dtype == np.float32 else TensorProto.INT64
        shape = (output_shapes or {}).get(name, list(array.shape))
        values.append(helper.make_tensor_value_info(name, dtype, shape))
    graph = helper.make_graph(nodes, 'foreign', [helper.make_tensor_value_info(
        'images', TensorProto.FLOAT, input_shape)], values, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def yolo11(tmp_path: Path) -> Path:
    return write_model(tmp_path / 'yolo11n.onnx', {'output0': yolo_v8_output()}, ULTRALYTICS_META)


def run_bundle(directory: Path, width: int = SIZE, height: int = SIZE
               ) -> list[tuple[str, float, list[float]]]:
    detector, _ = open_detector(directory / 'model.onnx', backend='onnxruntime')
    try:
        found, _ = detector.detect(Frame(np.full((height, width, 3), 114, np.uint8), 'rgb8'))
    finally:
        detector.backend.close()
    names = detector.bundle.classes
    return [(names[int(c)], round(float(s), 4), [round(float(v), 3) for v in b])
            for b, s, c in zip(found.boxes, found.scores, found.class_ids, strict=True)]


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(['perception-bundle', *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ), check=False)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.count('\n') == 1 and 'Traceback' not in result.stderr, result.stderr
    assert result.stderr.startswith('perception-bundle: ')
    return result.stderr


def test_cli_imports_an_ultralytics_yolo_and_shows_it(yolo11: Path, tmp_path: Path) -> None:
    out = tmp_path / 'bundle'
    result = cli('import', yolo11, '--out', out)
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / 'model.json').read_text())
    assert doc['format'] == 1 and doc['arch'] == 'imported'
    assert doc['classes'] == list(NAMES)
    assert doc['input'] == {'name': 'images', 'height': SIZE, 'width': SIZE, 'layout': 'NCHW', 'color': 'RGB',
                            'resize': 'letterbox', 'pad_value': 114, 'mean': [0.0, 0.0, 0.0],
                            'std': [1.0, 1.0, 1.0]}
    assert doc['output'] == {'format': 'yolo_v8', 'names': ['output0']}
    assert doc['postprocess'] == POSTPROCESS == {'score_threshold': 0.25, 'nms_iou_threshold': 0.7,
                                                 'max_detections': 300}
    assert doc['source']['path'] == str(yolo11.resolve())
    assert doc['source']['sha256'] == sha256_of(yolo11) == doc['onnx_sha256'] == sha256_of(out / 'model.onnx')
    assert doc['source']['metadata'] == ULTRALYTICS_META
    assert load_bundle(out, check_onnx_hash=True).output.format == 'yolo_v8'
    assert not (tmp_path / 'bundle.partial').exists()
    # a 64x64 frame is the network input unchanged: boxes are cx, cy, w, h -> corners
    assert run_bundle(out) == [('person', 0.9, [12.0, 12.0, 28.0, 28.0]),
                               ('bicycle', 0.6, [40.0, 39.0, 50.0, 51.0])]
    # 128x96: scale 0.5, letterbox pads 8 rows top and bottom of the 64x64 input
    assert run_bundle(out, 128, 96) == [('person', 0.9, [24.0, 8.0, 56.0, 40.0]),
                                        ('bicycle', 0.6, [80.0, 62.0, 100.0, 86.0])]

    shown = cli('show', out)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    for expected in ('arch imported', f'imported from {yolo11.resolve()}', 'task detect',
                     'classes: 3: person, bicycle, car',
                     "input: 'images' 1x3x64x64 NCHW, RGB, letterbox (pad 114)",
                     'output: yolo_v8, tensors output0', 'score 0.25, NMS IoU 0.7, at most 300',
                     'decoding:', '1. letterbox the camera image to 64x64',
                     "2. output0: [B, 4 + C, N]: per anchor cx, cy, w, h", 'class-aware NMS at IoU 0.7',
                     'boxes back to image pixels: undo the letterbox', 'engine: none'):
        assert expected in text, (expected, text)
    assert result.stdout.splitlines()[1:] == text.splitlines()  # import prints the same description


def test_api_import_of_end2end_rtdetr_and_dynamic_models(tmp_path: Path) -> None:
    rows = np.zeros((1, 10, 6), np.float32)
    rows[0, 0] = [4, 6, 30, 40, 0.7, 2]
    rows[0, 1] = [4, 6, 30, 40, 0.1, 1]
    meta = dict(ULTRALYTICS_META, end2end='True', description='Ultralytics YOLO26n model')
    e2e = import_model(write_model(tmp_path / 'yolo26n.onnx', {'output0': rows}, meta), tmp_path / 'e2e')
    assert load_bundle(e2e).output.format == 'yolo_end2end'
    assert run_bundle(e2e) == [('car', 0.7, [4.0, 6.0, 30.0, 40.0])]

    queries = np.zeros((1, 300, 4 + len(NAMES)), np.float32)
    queries[0, 0] = [0.5, 0.5, 0.25, 0.5, 0.1, 0.85, 0.2]
    meta = dict(ULTRALYTICS_META, description='Ultralytics RT-DETR-l model trained on data.yaml')
    detr = import_model(write_model(tmp_path / 'rtdetr-l.onnx', {'output0': queries}, meta),
                        tmp_path / 'detr')
    bundle = load_bundle(detr)
    assert (bundle.output.format, bundle.input.resize) == ('rtdetr', 'stretch')
    assert run_bundle(detr, 128, 64) == [('bicycle', 0.85, [48.0, 16.0, 80.0, 48.0])]

    # dynamic batch/height/width: the size comes from imgsz, or --input-size over it
    dynamic = write_model(tmp_path / 'dyn.onnx', {'output0': yolo_v8_output()}, ULTRALYTICS_META,
                          input_shape=['batch', 3, 'height', 'width'],
                          output_shapes={'output0': ['batch', 7, 'anchors']})
    bundle = load_bundle(import_model(dynamic, tmp_path / 'dyn'))
    assert (bundle.input.height, bundle.input.width, bundle.output.format) == (SIZE, SIZE, 'yolo_v8')
    bundle = load_bundle(import_model(dynamic, tmp_path / 'dyn96', input_size=(64, 96)))
    assert (bundle.input.height, bundle.input.width) == (64, 96)
    no_size = write_model(tmp_path / 'nosize.onnx', {'output0': yolo_v8_output()},
                          {k: v for k, v in ULTRALYTICS_META.items() if k != 'imgsz'},
                          input_shape=['batch', 3, 'height', 'width'])
    with pytest.raises(BundleError, match=r'dynamic height/width.*--input-size'):
        import_model(no_size, tmp_path / 'nosize')
    with pytest.raises(BundleError, match='fixed at 64x64'):
        import_model(tmp_path / 'yolo26n.onnx', tmp_path / 'fixed', input_size=(32, 32))


def torchvision_like(path: Path) -> Path:
    boxes = np.array([[[5, 5, 20, 25], [30, 30, 60, 50], [0, 0, 1, 1]]], np.float32)
    scores = np.array([[0.95, 0.5, 0.05]], np.float32)
    labels = np.array([[2, 0, 1]], np.int64)
    return write_model(path, {'boxes': boxes, 'scores': scores, 'labels': labels})


@pytest.mark.parametrize('name, text', [
    ('names.txt', 'person\nbicycle\n\ncar\n'),
    ('data.yaml', 'path: ../datasets\ntrain: images/train\nnames:\n  - person\n  - bicycle\n  - car\n'),
    ('dict.yaml', 'nc: 3\nnames:\n  0: person\n  2: car\n  1: bicycle\n'),
    ('instances.json', json.dumps({'images': [], 'annotations': [], 'categories': [
        {'id': 7, 'name': 'car'}, {'id': 1, 'name': 'person'}, {'id': 3, 'name': 'bicycle'}]})),
])
def test_classes_from_each_file_form(tmp_path: Path, name: str, text: str) -> None:
    classes = tmp_path / name
    classes.write_text(text)
    assert read_classes_file(classes) == list(NAMES)
    out = tmp_path / 'bundle'
    result = cli('import', torchvision_like(tmp_path / 'tv.onnx'), '--classes', classes, '--out', out)
    assert result.returncode == 0, result.stderr
    bundle = load_bundle(out)
    assert bundle.classes == NAMES
    assert bundle.output.format == 'boxes_scores_labels'
    assert bundle.output.names == ('boxes', 'scores', 'labels')
    assert run_bundle(out) == [('car', 0.95, [5.0, 5.0, 20.0, 25.0]),
                               ('person', 0.5, [30.0, 30.0, 60.0, 50.0])]


def test_classes_file_renames_the_model_names_of_the_same_count(yolo11: Path, tmp_path: Path) -> None:
    names = tmp_path / 'names.txt'
    names.write_text('human\nbike\nautomobile\n')
    assert load_bundle(import_model(yolo11, tmp_path / 'b', names)).classes == ('human', 'bike', 'automobile')
    names.write_text('human\nbike\n')
    with pytest.raises(BundleError, match=r'2 class names, but .*yolo11n\.onnx names 3 classes'):
        import_model(yolo11, tmp_path / 'c', names)


def test_no_class_names_anywhere_is_one_line_naming_both_options(tmp_path: Path) -> None:
    model = torchvision_like(tmp_path / 'tv.onnx')
    err = one_line_error(cli('import', model, '--out', tmp_path / 'b'))
    assert str(model) in err and 'no class names' in err and 'names' in err
    assert '--classes' in err and 'data.yaml' in err and 'COCO json' in err
    assert not (tmp_path / 'b').exists() and not (tmp_path / 'b.partial').exists()


def test_unknown_output_shapes_pass_infer_outputs_error_through(tmp_path: Path) -> None:
    model = write_model(tmp_path / 'odd.onnx', {'feat': np.zeros((1, 5, 5, 5), np.float32),
                                                'aux': np.zeros((1, 2), np.float32)}, ULTRALYTICS_META)
    err = one_line_error(cli('import', model))
    assert 'feat [1, 5, 5, 5]' in err and 'aux [1, 2]' in err
    assert not (tmp_path / 'odd_bundle').exists()


def test_bad_inputs_are_one_line_errors(yolo11: Path, tmp_path: Path) -> None:
    assert 'no such model file' in one_line_error(cli('import', tmp_path / 'missing.onnx'))
    garbage = tmp_path / 'garbage.onnx'
    garbage.write_bytes(b'\x08\x07not a protobuf at all' * 3)
    assert 'not a readable ONNX model' in one_line_error(cli('import', garbage))
    (tmp_path / 'taken').mkdir()
    assert 'already exists' in one_line_error(cli('import', yolo11, '--out', tmp_path / 'taken'))
    assert '--input-size' in one_line_error(cli('import', yolo11, '--input-size', '64by64'))
    assert 'no model.json' in one_line_error(cli('show', tmp_path))
    # --force replaces it
    assert cli('import', yolo11, '--out', tmp_path / 'taken', '--force').returncode == 0
    assert load_bundle(tmp_path / 'taken').arch == 'imported'


def test_names_are_parsed_as_data_never_run() -> None:
    assert parse_names("{0: 'person', 1: 'bicycle'}", 'm') == ['person', 'bicycle']
    assert parse_names({'1': 'b', '0': 'a'}, 'm') == ['a', 'b']
    with pytest.raises(BundleError, match='not a dict or list literal'):
        parse_names("__import__('os').system('touch /tmp/pwned')", 'm')
    with pytest.raises(BundleError, match=r'0\.\.1'):
        parse_names("{0: 'a', 2: 'b'}", 'm')


def test_show_reports_the_engine_and_its_sidecar(yolo11: Path, tmp_path: Path) -> None:
    out = import_model(yolo11, tmp_path / 'bundle')
    header = json.dumps({'names': dict(enumerate(NAMES)), 'imgsz': [SIZE, SIZE]}).encode()
    engine = out / 'model.engine'
    engine.write_bytes(len(header).to_bytes(4, 'little') + header + b'ftrt' + b'\0' * 64)
    text = cli('show', out).stdout
    assert (f'engine: model.engine (Ultralytics header (2 keys), plan at byte {4 + len(header)}); '
            'sidecar: ') in text
    assert 'missing' in text
    bundle = load_bundle(out)
    write_sidecar(engine, make_sidecar(
        kind='tensorrt', facts=RuntimeFacts('10.3.0', 'NVIDIA H200', '9.0'), precision='fp16',
        profile={'input': 'images', **{k: [1, 3, SIZE, SIZE] for k in ('min', 'opt', 'max')}},
        inputs=[], outputs=[], model_json=bundle.raw, onnx_sha256=bundle.onnx_sha256 or '',
        build_seconds=1.0, plan={}))
    text = cli('show', out).stdout
    assert 'sidecar: TensorRT 10.3.0, NVIDIA H200 (sm 9.0), fp16; fits the bundle' in text
    (out / 'plain.plan').write_bytes(b'ftrt' + b'\0' * 64)
    assert 'engine: plain.plan (plain TensorRT plan); sidecar: ' in cli('show', out).stdout
