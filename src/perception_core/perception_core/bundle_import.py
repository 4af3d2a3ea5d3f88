"""Wrap a foreign detector (an ``.onnx``, or an Ultralytics ``.engine``) into a model bundle.

Everything model.json needs is read from the model wherever it is there: the input tensor's name
and shape, the output tensors' names and shapes (which pick the output format, through
``output_formats.infer_output``), and Ultralytics' metadata (ONNX metadata_props, or the
``.engine`` header): ``names``, ``imgsz``, ``stride``, ``task``, ``end2end``. What the model does not
carry comes from the user: class names from ``--classes`` (a names list, a YOLO ``data.yaml`` or a
COCO json), the input size of a dynamic-shape model from ``--input-size``. Preprocessing is
Ultralytics' (letterbox with pad 114, RGB, pixels / 255) and the postprocess defaults are its
``predict()`` defaults (conf 0.25, iou 0.7, max_det 300), so an imported model behaves as it did
where it came from.

The bundle is written to a staging directory, loaded back (``load_bundle``) and run once through
ONNX Runtime (``open_detector`` and one frame) before it takes the output's name, so a bundle
that is there is one that opens.
"""

from __future__ import annotations

import ast
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_json
from .bundle import BUNDLE_FORMAT, EXTRA_DTYPES, MODEL_JSON, NETWORK_SIZE, BundleError, load_bundle, sha256_of

ARCH = 'imported'
# Ultralytics' predict() defaults (ultralytics/cfg/default.yaml: conf, iou, max_det).
POSTPROCESS = {'score_threshold': 0.25, 'nms_iou_threshold': 0.7, 'max_detections': 300}
# Ultralytics' preprocessing (LetterBox(114), BGR->RGB, / 255).
PREPROCESS = {'layout': 'NCHW', 'color': 'RGB', 'resize': 'letterbox', 'pad_value': 114,
              'mean': [0.0, 0.0, 0.0], 'std': [1.0, 1.0, 1.0]}
# RT-DETR exported with its postprocessor (lyuwenyu/RT-DETR tools/export_onnx.py; Isaac ROS's RT-DETR
# and SyntheticaDETR models): a second input the boxes are scaled by, [[width, height]] (the
# postprocessor multiplies x1, y1, x2, y2 by orig_target_sizes.repeat(1, 2)). Fed the network size,
# the boxes come out in network pixels.
TARGET_SIZES = 'orig_target_sizes'
# Isaac ROS's RT-DETR graph (isaac_ros_rtdetr_core.launch.py): ResizeNode keep_aspect_ratio to fit
# 640x640 and PadNode to 640x640 (a letterbox), rgb8, and ImageToTensorNode with scale False, so the
# network sees 0..255 (std 1/255 undoes our / 255). Isaac ROS pads bottom-right where our letterbox
# centres the image; the boxes are mapped back by the same transform either way.
ISAAC_ROS_RTDETR = {'layout': 'NCHW', 'color': 'RGB', 'resize': 'letterbox', 'pad_value': 0,
                    'mean': [0.0, 0.0, 0.0], 'std': [1 / 255, 1 / 255, 1 / 255]}
ENGINE_NAME = 'model.engine'
ONNX_NAME = 'model.onnx'
# ONNX Runtime's input element types -> numpy's names (model.json input.extra_inputs.*.dtype).
ORT_TYPES = {'tensor(int64)': 'int64', 'tensor(int32)': 'int32', 'tensor(float)': 'float32',
             'tensor(float16)': 'float16', 'tensor(double)': 'float64'}
CLASSES_HELP = ('--classes FILE (a names list one per line, a YOLO data.yaml with names:, or a '
                'COCO json with categories)')

class NeedsTensorRT(RuntimeError):
    """The step needs TensorRT, which this machine lacks (an ``.engine``'s tensors are known only to
    the runtime that loads it)."""


@dataclass(frozen=True)
class Tensors:
    """A model's interface: (name, shape) of each input and output, and its metadata strings."""
    inputs: list[tuple[str, list[int | str | None]]]
    outputs: list[tuple[str, list[int | str | None]]]
    metadata: dict[str, str]
    input_types: dict[str, str] = field(default_factory=dict)  # name -> numpy dtype name, where known


# ---------------------------------------------------------------------------- reading the model


def _dims(shape: Sequence[Any]) -> list[int | str | None]:
    """ONNX Runtime's shape: positive ints stay, symbolic dims are their names, the rest unknown."""
    return [d if isinstance(d, int) and d > 0 else (d if isinstance(d, str) and d else None)
            for d in shape]


def read_onnx(path: Path) -> Tensors:
    """Inputs (initializers excluded), outputs and metadata_props of the ONNX file at ``path``,
    read through ONNX Runtime, which the robot image has anyway (the onnx package it need not)."""
    import onnxruntime as ort
    try:
        session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    except Exception as exc:  # ONNX Runtime raises its own Fail/InvalidGraph/... kinds
        raise BundleError(f'{path}: not a readable ONNX model: {exc}') from exc
    inputs = [(v.name, _dims(v.shape)) for v in session.get_inputs()]
    outputs = [(v.name, _dims(v.shape)) for v in session.get_outputs()]
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    types = {v.name: ORT_TYPES.get(v.type, v.type) for v in session.get_inputs()}
    return Tensors(inputs=inputs, outputs=outputs, metadata=metadata, input_types=types)


def parse_names(value: Any, where: str) -> list[str]:
    """Class names from Ultralytics' ``names``: a dict {index: name} (as a Python literal string in
    ONNX metadata_props, a JSON object with string keys in an .engine header) or a list."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)  # metadata is data: never eval()
        except (ValueError, SyntaxError) as exc:
            raise BundleError(f'{where}: names {value!r:.120} is not a dict or list literal') from exc
    if isinstance(value, dict):
        try:
            items = sorted((int(k), v) for k, v in value.items())
        except (TypeError, ValueError) as exc:
            raise BundleError(f'{where}: names keys must be class indices, got {value!r:.120}') from exc
        if [i for i, _ in items] != list(range(len(items))):
            raise BundleError(f'{where}: names must number the classes 0..{len(items) - 1}, got indices '
                              f'{[i for i, _ in items][:20]}')
        value = [v for _, v in items]
    if not (isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v for v in value)):
        raise BundleError(f'{where}: names must be a non-empty list of class names, got {value!r:.120}')
    return list(value)


def read_classes_file(path: Path) -> list[str]:
    """Class names from a YOLO data.yaml (``names:`` list or dict), a COCO json (categories sorted by
    id) or a plain list (one name per line; blank lines skipped)."""
    where = str(path)
    try:
        text = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f'{where}: unreadable: {exc}') from exc
    suffix = path.suffix.lower()
    if suffix in ('.yaml', '.yml'):
        import yaml
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BundleError(f'{where}: not YAML: {exc}') from exc
        if not isinstance(data, dict) or 'names' not in data:
            raise BundleError(f'{where}: a data.yaml needs a names: list or {{index: name}} mapping')
        return parse_names(data['names'], f'{where}: names')
    if suffix == '.json':
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleError(f'{where}: not JSON: {exc}') from exc
        categories = data.get('categories') if isinstance(data, dict) else None
        if not isinstance(categories, list) or not categories:
            raise BundleError(f'{where}: a COCO json needs a non-empty "categories" list')
        try:
            ordered = sorted(categories, key=lambda c: int(c['id']))
            names = [c['name'] for c in ordered]
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f'{where}: every category needs an integer "id" and a "name" ({exc})') from exc
        return parse_names(names, f'{where}: categories')
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise BundleError(f'{where}: no class names (one per line)')
    return parse_names(names, where)


def parse_input_size(text: str) -> tuple[int, int]:
    """``--input-size WxH`` -> (height, width)."""
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise BundleError(f'--input-size {text!r}: expected WIDTHxHEIGHT, e.g. 640x640') from None
    if w <= 0 or h <= 0:
        raise BundleError(f'--input-size {text!r}: width and height must be positive')
    return h, w


def _imgsz(metadata: Mapping[str, Any], where: str) -> tuple[int, int] | None:
    """Ultralytics' imgsz as (height, width): "[640, 640]" in ONNX metadata, a list in a header."""
    value = metadata.get('imgsz')
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise BundleError(f'{where}: imgsz {value!r} is not a list literal') from None
    if isinstance(value, int):
        value = [value, value]
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and v > 0 for v in value)):
        raise BundleError(f'{where}: imgsz must be [height, width], got {value!r}')
    return int(value[0]), int(value[1])


def input_entry(tensors: Tensors, input_size: tuple[int, int] | None, where: str) -> dict[str, Any]:
    """model.json's "input": the image tensor's name, H and W (static dims, else --input-size, else
    imgsz), layout from where the 3 channels sit, Ultralytics' preprocessing."""
    images = [(n, s) for n, s in tensors.inputs if len(s) == 4]
    others = [n for n, s in tensors.inputs if len(s) != 4]
    if len(images) != 1 or [n for n in others if n != TARGET_SIZES]:
        raise BundleError(f'{where}: inputs {[(n, s) for n, s in tensors.inputs]}: a bundle feeds one '
                          f'image input [batch, 3, H, W] (or [batch, H, W, 3]), and besides it only '
                          f'{TARGET_SIZES!r} [batch, 2] is recognised on import (declare others in '
                          'model.json input.extra_inputs, bundle.py)')
    name, shape = images[0]
    layout = 'NHWC' if shape[3] == 3 and shape[1] != 3 else 'NCHW'
    h, w = (shape[1], shape[2]) if layout == 'NHWC' else (shape[2], shape[3])
    entry: dict[str, Any] = {'name': name}
    if isinstance(h, int) and isinstance(w, int):
        if input_size is not None and input_size != (h, w):
            raise BundleError(f'{where}: input {name!r} is fixed at {w}x{h}; --input-size '
                              f'{input_size[1]}x{input_size[0]} cannot change it')
        entry.update(height=h, width=w)
    else:
        size = input_size or _imgsz(tensors.metadata, where)
        if size is None:
            raise BundleError(f'{where}: input {name!r} has shape {shape} (dynamic height/width) and the '
                              'model has no imgsz metadata; give --input-size WIDTHxHEIGHT')
        entry.update(height=size[0], width=size[1])
    entry.update(PREPROCESS, layout=layout)
    if others:
        entry['extra_inputs'] = {TARGET_SIZES: target_sizes_entry(tensors, where)}
    return entry


def target_sizes_entry(tensors: Tensors, where: str) -> dict[str, Any]:
    """input.extra_inputs.orig_target_sizes: the network size, [[width, height]], in the model's
    integer (or float) type, so RT-DETR's postprocessor gives boxes in network pixels."""
    shape = dict(tensors.inputs)[TARGET_SIZES]
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != 2):
        raise BundleError(f'{where}: input {TARGET_SIZES!r} has shape {shape}; RT-DETR\'s is '
                          '[batch, 2] (width, height)')
    dtype = tensors.input_types.get(TARGET_SIZES, 'int64')
    if dtype not in EXTRA_DTYPES:
        raise BundleError(f'{where}: input {TARGET_SIZES!r} is {dtype}; an extra input is one of '
                          f'{list(EXTRA_DTYPES)}')
    return {'dtype': dtype, 'value': NETWORK_SIZE}


def class_names(tensors: Tensors, classes_file: Path | None, where: str) -> list[str] | None:
    """The model's own names; --classes renames them (same count) or supplies them. None if neither."""
    from_model = parse_names(tensors.metadata['names'], f'{where}: metadata names') \
        if 'names' in tensors.metadata else None
    if classes_file is None:
        return from_model
    given = read_classes_file(classes_file)
    if from_model is not None and len(from_model) != len(given):
        raise BundleError(f'{classes_file}: {len(given)} class names, but {where} names {len(from_model)} '
                          f'classes in its metadata ({", ".join(from_model[:5])}, ...)')
    return given


def model_json_for(tensors: Tensors, classes: list[str] | None, source: Path, source_sha256: str, *,
                   input_size: tuple[int, int] | None, onnx_sha256: str | None) -> dict[str, Any]:
    """The model.json document for a model with these tensors (BundleError when the output format
    cannot be told from the shapes, or no class names are known)."""
    from .output_formats import infer_output  # owned by the output formats; imported where needed
    where = str(source)
    inp = input_entry(tensors, input_size, where)
    output = infer_output(tensors.outputs, len(classes) if classes is not None else None, tensors.metadata)
    if 'extra_inputs' in inp:
        if output.get('format') != 'boxes_scores_labels':
            raise BundleError(f'{where}: input {TARGET_SIZES!r} is RT-DETR\'s exported postprocessor, '
                              f'whose outputs are labels, boxes, scores; this model\'s are '
                              f'{[n for n, _ in tensors.outputs]}')
        # boxes x1, y1, x2, y2 in orig_target_sizes pixels = network pixels: the format's defaults.
        inp.update(ISAAC_ROS_RTDETR)
    elif output.get('format') == 'rtdetr':
        # Ultralytics' RTDETRPredictor feeds RT-DETR a stretched image (LetterBox scale_fill), not
        # the letterbox its YOLO predictor uses; its boxes are fractions of that stretched input.
        inp['resize'] = 'stretch'
    if classes is None:
        raise BundleError(f'{where}: no class names: the model has no "names" metadata; give '
                          f'{CLASSES_HELP}')
    document: dict[str, Any] = {
        'format': BUNDLE_FORMAT, 'arch': ARCH, 'classes': classes, 'input': inp, 'output': output,
        'postprocess': dict(POSTPROCESS),
        'source': {'path': str(source.resolve()), 'sha256': source_sha256,
                   'metadata': dict(tensors.metadata)},
    }
    if onnx_sha256 is not None:
        document['onnx_sha256'] = onnx_sha256
    return document


# ---------------------------------------------------------------------------- writing the bundle


def default_out(model: Path) -> Path:
    return model.with_name(model.stem + '_bundle')


def check_opens(directory: Path) -> None:
    """Load the bundle back and run one mid-grey frame through ONNX Runtime and the decoder."""
    from .backends import BackendError
    from .backends.select import NoBackend
    from .convert import Frame
    from .decode import DecodeError
    from .detector import open_detector
    bundle = load_bundle(directory, check_onnx_hash=True)
    try:
        detector, _ = open_detector(directory / ONNX_NAME, backend='onnxruntime')
        frame = Frame(np.full((bundle.input.height, bundle.input.width, 3), 114, np.uint8), 'rgb8')
        detector.detect(frame)
        detector.backend.close()
    except (BackendError, NoBackend, DecodeError) as exc:
        raise BundleError(f'{directory}: the imported bundle does not run under ONNX Runtime: {exc}') from exc


def _stage(out: Path, force: bool) -> Path:
    if out.exists() and not force:
        raise BundleError(f'{out}: already exists; choose another --out or pass --force')
    staging = out.with_name(out.name + '.partial')
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _install(staging: Path, out: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out


def import_onnx(model: Path, out: Path, classes_file: Path | None = None,
                input_size: tuple[int, int] | None = None, force: bool = False) -> Path:
    tensors = read_onnx(model)
    classes = class_names(tensors, classes_file, str(model))
    sha = sha256_of(model)
    document = model_json_for(tensors, classes, model, sha, input_size=input_size, onnx_sha256=sha)
    staging = _stage(out, force)
    try:
        shutil.copyfile(model, staging / ONNX_NAME)
        write_json(staging / MODEL_JSON, document)
        check_opens(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _install(staging, out)


def engine_tensors(header: Mapping[str, Any], described: Mapping[str, Any]) -> Tensors:
    """An engine's interface from what TensorRT said (``backends.tensorrt.describe_engine``) and the
    header's metadata (as strings, like ONNX metadata_props, so one infer_output reads both)."""
    def shape(t: Mapping[str, Any]) -> list[int | str | None]:
        return [int(d) if int(d) >= 0 else None for d in t['shape']]
    metadata = {k: v if isinstance(v, str) else json.dumps(v) for k, v in header.items()}
    # TensorRT's DataType names (describe_engine lowercases them) -> numpy's.
    trt_types = {'float': 'float32', 'half': 'float16', 'int64': 'int64', 'int32': 'int32'}
    return Tensors(inputs=[(t['name'], shape(t)) for t in described['inputs']],
                   outputs=[(t['name'], shape(t)) for t in described['outputs']], metadata=metadata,
                   input_types={t['name']: trt_types.get(t.get('dtype', ''), t.get('dtype', ''))
                                for t in described['inputs']})


def header_precision(header: Mapping[str, Any]) -> str:
    """The precision an Ultralytics export was built with (its export args int8 / half)."""
    args = header.get('args')
    if not isinstance(args, dict):
        args = {}
    return 'int8' if args.get('int8') else 'fp16' if args.get('half') else 'fp32'


def import_engine(model: Path, out: Path, classes_file: Path | None = None,
                  input_size: tuple[int, int] | None = None, force: bool = False) -> Path:
    """An Ultralytics (or plain) engine: names and imgsz from its header, tensors from TensorRT, and
    a sidecar: the one beside the engine when there is one, else built from the header and what
    this runtime says (reported on stderr by the CLI)."""
    from .sidecar import SidecarError, make_sidecar, read_sidecar, sidecar_path
    from .ultralytics_engine import read_engine
    engine = read_engine(model)  # header errors name the file before TensorRT is asked anything
    from .backends import tensorrt as trt_backend
    if not trt_backend.available():
        found = (f'Ultralytics header with {len(engine.metadata)} metadata keys' if engine.has_header
                 else 'no Ultralytics header')
        raise NeedsTensorRT(f'{model}: {found}; importing an engine also needs its tensors from '
                            'TensorRT, which is not installed here (import the .onnx it was exported '
                            'from instead)')
    described = trt_backend.describe_engine(model)
    tensors = engine_tensors(engine.metadata, described)
    if classes_file is not None or 'names' in engine.metadata:
        classes = class_names(tensors, classes_file, str(model))
    else:
        classes = None
    sha = sha256_of(model)
    document = model_json_for(tensors, classes, model, sha, input_size=input_size, onnx_sha256=None)
    beside = sidecar_path(model)
    staging = _stage(out, force)
    try:
        shutil.copyfile(model, staging / ENGINE_NAME)
        write_json(staging / MODEL_JSON, document)
        load_bundle(staging)
        if beside.is_file():
            shutil.copyfile(beside, sidecar_path(staging / ENGINE_NAME))
            read_sidecar(staging / ENGINE_NAME)
        else:
            facts = described['facts']
            write_json(sidecar_path(staging / ENGINE_NAME), make_sidecar(
                kind='tensorrt', facts=facts, precision=header_precision(engine.metadata),
                profile=described['profile'], inputs=described['inputs'], outputs=described['outputs'],
                model_json=document, onnx_sha256='', build_seconds=0.0,
                plan={'source': 'perception-bundle import: Ultralytics header and the TensorRT runtime',
                      'engine': str(model.resolve())}))
    except SidecarError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BundleError(str(exc)) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _install(staging, out)


def import_model(model: str | Path, out: str | Path | None = None, classes_file: str | Path | None = None,
                 input_size: tuple[int, int] | None = None, force: bool = False) -> Path:
    """Write a bundle for ``model`` (.onnx, or .engine/.plan) into ``out``; returns the directory."""
    path = Path(model)
    if not path.is_file():
        raise BundleError(f'{path}: no such model file')
    target = Path(out) if out is not None else default_out(path)
    classes = Path(classes_file) if classes_file is not None else None
    suffix = path.suffix.lower()
    if suffix == '.onnx':
        return import_onnx(path, target, classes, input_size, force)
    if suffix in ('.engine', '.plan'):
        return import_engine(path, target, classes, input_size, force)
    raise BundleError(f'{path}: import takes an .onnx or an .engine/.plan file')
