"""The model bundle: the one contract between trainer, engine builder and node.

A bundle is a directory holding ``model.json`` beside the model files (``model.onnx``,
``model.ts``, optionally ``*.engine`` with a sidecar ``*.engine.json``). ``model.json``
says everything a consumer needs to turn camera pixels into the network's input and the
network's outputs into boxes; nothing about preprocessing or decoding is hard-coded elsewhere.

model.json (format 1)::

    {
      "format": 1,
      "arch": "centernet",                      # informative
      "classes": ["cup", "bottle", ...],        # index -> class name
      "input": {
        "name": "images", "height": 256, "width": 320,
        "layout": "NCHW",                        # or "NHWC"
        "color": "RGB",                          # channel order the network expects
        "resize": "letterbox",                   # or "stretch"
        "pad_value": 114,                        # letterbox border, 0..255
        "mean": [0.0, 0.0, 0.0],                 # applied after scaling pixels to [0, 1]
        "std": [1.0, 1.0, 1.0],
        "extra_inputs": {                        # optional: constant inputs beside the image
          "orig_target_sizes": {"dtype": "int64", "value": "network_size"}
        }
      },
      "output": {"format": "dense_boxes_scores", "names": ["detections"]},
      "postprocess": {"score_threshold": 0.3, "nms_iou_threshold": 0.5, "max_detections": 100},
      "onnx_sha256": "...",                      # of model.onnx
      "weights": {"storage": "float16", ...},    # optional, informative: how the files store them
      ... free-form: "training", "metrics", "versions"
    }

Weights (``weights``, written by perception-export): ``float16`` bundles store each weight as
float16 in both files and compute in the runtime's own precision: model.onnx holds float16
initializers behind ``Cast`` nodes (ONNX Runtime and TensorRT fold them when they load), model.ts
float16 buffers cast to the input's dtype as each module runs, with batch norms folded into the
convolutions. Both files run as they are; no consumer needs to read this key.

Extra inputs (``input.extra_inputs``, optional): constant tensors the backends feed beside the
image on every frame, for models that take more than one input, as the RT-DETR reference export
(lyuwenyu/RT-DETR ``tools/export_onnx.py``) and Isaac ROS's RT-DETR / SyntheticaDETR models do
with ``orig_target_sizes``. Each entry maps the model's input name to ``{"dtype", "value"}``:
``dtype`` one of ``EXTRA_DTYPES``; ``value`` a list of numbers (fed as shape ``[1, len]``, a batch
of one), a list of equal-length lists (fed as that ``[rows, len]``), or ``"network_size"``:
``[[width, height]]`` of ``input``. Width first, because RT-DETR's postprocessor scales its
normalised x1, y1, x2, y2 by ``orig_target_sizes.repeat(1, 2)``: the first number multiplies x.
Fed the network size, its boxes come out in network-input pixels, which ``boxes_scores_labels``
takes as they are. The TorchScript backend passes them as positional arguments after the image,
in the order model.json lists them.

Output formats (see ``decode.py``):

``dense_boxes_scores``
    One output ``[B, N, 4 + C]``: columns 0-3 are x1, y1, x2, y2 in network-input pixels,
    columns 4.. are per-class scores in [0, 1]; non-peak locations are already zeroed in
    the graph, so each object has one candidate per class.
``class_box``
    The design card's single-object model (``--arch single_object``): outputs ``[B, C]`` class
    logits and ``[B, 4]`` box x1, y1, x2, y2 normalised to [0, 1] of the network input; one
    detection per image.

Foreign detectors (``perception-bundle import`` picks the format from the model's metadata and
output shapes, ``output_formats.infer_output``; set ``output.format`` to override it). Their
score threshold keeps scores strictly above it, as their reference postprocessing does:

``yolo_v8``
    Ultralytics YOLOv8/YOLO11 detect export: one output ``[1, 4 + C, N]``, rows cx, cy, w, h in
    network-input pixels, then C sigmoided class scores (no objectness), N anchors whatever the
    shape says. Each anchor's best class, threshold, class-aware NMS, max detections (as
    Ultralytics' ``non_max_suppression`` with multi_label off).
``yolo_end2end``
    NMS-free exports (YOLOv10, YOLO26, ``nms=True``): one output ``[1, K, 6]``, rows x1, y1, x2,
    y2 (network pixels), score, class. Threshold and max detections, no NMS.
``rtdetr``
    RT-DETR as Ultralytics exports it: one output ``[1, Q, 4 + C]``, cx, cy, w, h normalised to
    [0, 1] of the network input, then C sigmoided scores. Best class per query, threshold, max
    detections, no NMS. Ultralytics predicts RT-DETR on a stretched input (``"resize": "stretch"``).
    Option ``"normalised": false`` for boxes already in network pixels. Option ``"layout":
    "top_k"`` for ``[1, K, 6]`` rows of cx, cy, w, h, score, class: the decoder's own top-K in the
    graph, as Ultralytics 8.4 exports RT-DETR (``"class_scores"``, the default, is ``[1, Q, 4 + C]``).
``boxes_scores_labels``
    torchvision-style / NMS-in-graph detectors: outputs ``boxes [1, K, 4]``, ``scores [1, K]``,
    ``labels [1, K]`` (integers) and optionally ``num_detections [1]`` (valid rows first), named
    in that order in ``output.names``. Threshold and max detections, no NMS. Options:
    ``"boxes": "xyxy"`` (default) or ``"cxcywh"``; ``"normalised": true`` for boxes in [0, 1] of
    the network input (default false: network pixels); ``"class_offset": 1`` for labels counted
    from 1 with 0 the background, as torchvision's (label - class_offset indexes ``classes``;
    labels outside ``classes`` are dropped). RT-DETR exported with its postprocessor (inputs
    ``images`` + ``orig_target_sizes``, outputs ``labels``, ``boxes``, ``scores``) is this format
    with ``input.extra_inputs.orig_target_sizes`` fed the network size: boxes in network pixels.

e.g. ``"output": {"format": "boxes_scores_labels", "names": ["boxes", "scores", "labels"],
"class_offset": 1}``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BUNDLE_FORMAT = 1
MODEL_JSON = 'model.json'
OUTPUT_FORMATS = ('dense_boxes_scores', 'class_box', 'yolo_v8', 'yolo_end2end', 'rtdetr',
                  'boxes_scores_labels')
# How many outputs each format decodes, fewest and most (``output.names`` lists them in this order).
OUTPUT_COUNTS = {'dense_boxes_scores': (1, 1), 'class_box': (2, 2), 'yolo_v8': (1, 1),
                 'yolo_end2end': (1, 1), 'rtdetr': (1, 1), 'boxes_scores_labels': (3, 4)}
# The ``output`` options each format takes; any of them on another format is an error, since it
# would silently do nothing.
OUTPUT_OPTIONS = {'rtdetr': ('normalised', 'layout'),
                  'boxes_scores_labels': ('boxes', 'normalised', 'class_offset')}
BOX_ENCODINGS = ('xyxy', 'cxcywh')
# rtdetr's two output layouts: per query C class scores, or the decoder's own top-K rows (cx, cy,
# w, h, score, class), which Ultralytics 8.4 exports.
RTDETR_LAYOUTS = ('class_scores', 'top_k')
# Element types an extra input may declare (numpy names; ONNX Runtime and TensorRT spell them
# tensor(int64) / DataType.INT64).
EXTRA_DTYPES = ('int64', 'int32', 'float32', 'float16')
# The value an extra input may name instead of spelling it: the network input's [[width, height]].
NETWORK_SIZE = 'network_size'
LAYOUTS = ('NCHW', 'NHWC')
COLORS = ('RGB', 'BGR')
RESIZE_MODES = ('letterbox', 'stretch')


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class ExtraInput:
    """A constant input the backends feed beside the image (``input.extra_inputs``)."""
    name: str
    dtype: str
    value: str | tuple[tuple[float, ...], ...]   # NETWORK_SIZE, or rows of numbers

    def array(self, height: int, width: int) -> np.ndarray:
        """The tensor fed for a network input of ``height`` x ``width``."""
        rows = ((width, height),) if self.value == NETWORK_SIZE else self.value
        return np.array(rows, dtype=self.dtype)


@dataclass(frozen=True)
class InputSpec:
    name: str
    height: int
    width: int
    layout: str = 'NCHW'
    color: str = 'RGB'
    resize: str = 'letterbox'
    pad_value: int = 114
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    extra: tuple[ExtraInput, ...] = ()

    def extra_arrays(self) -> dict[str, np.ndarray]:
        """Each extra input's tensor by name, in model.json's order (empty for one-input models)."""
        return {e.name: e.array(self.height, self.width) for e in self.extra}

    def shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        """The network input tensor's shape for ``batch`` frames, in this layout."""
        if self.layout == 'NHWC':
            return (batch, self.height, self.width, 3)
        return (batch, 3, self.height, self.width)


@dataclass(frozen=True)
class OutputSpec:
    format: str
    names: tuple[str, ...]
    boxes: str = 'xyxy'        # boxes_scores_labels: 'xyxy' or 'cxcywh'
    normalised: bool = False   # boxes in [0, 1] of the network input (rtdetr: true unless set)
    class_offset: int = 0      # model label - class_offset = index into classes
    layout: str = 'class_scores'  # rtdetr: 'class_scores' ([1, Q, 4 + C]) or 'top_k' ([1, K, 6])


@dataclass(frozen=True)
class Postprocess:
    score_threshold: float = 0.3
    nms_iou_threshold: float = 0.5
    max_detections: int = 100


@dataclass(frozen=True)
class Bundle:
    directory: Path
    classes: tuple[str, ...]
    input: InputSpec
    output: OutputSpec
    postprocess: Postprocess
    onnx_sha256: str | None = None
    arch: str = ''
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def onnx_path(self) -> Path:
        return self.directory / 'model.onnx'

    @property
    def torchscript_path(self) -> Path:
        return self.directory / 'model.ts'

    @property
    def weights_storage(self) -> str:
        """'float16' where the files store folded, float16-rounded weights; else 'float32'."""
        weights = self.raw.get('weights')
        return 'float16' if isinstance(weights, dict) and weights.get('storage') == 'float16' else 'float32'


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def bundle_directory(path: str | Path) -> Path:
    """The bundle directory for a bundle directory or any model file inside one."""
    p = Path(path)
    return p if p.is_dir() else p.parent


def _require(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise BundleError(f'{where}: {message}')


def _choice(section: dict, key: str, choices: tuple[str, ...], where: str, default: str) -> str:
    value = section.get(key, default)
    _require(value in choices, f'{where}: {key}', f'must be one of {list(choices)}, got {value!r}')
    return value


def _triple(section: dict, key: str, where: str, default: tuple) -> tuple[float, float, float]:
    value = section.get(key, list(default))
    _require(isinstance(value, (list, tuple)) and len(value) == 3
             and all(isinstance(v, (int, float)) for v in value),
             f'{where}: {key}', f'must be three numbers, got {value!r}')
    return (float(value[0]), float(value[1]), float(value[2]))


def _extra_value(value: Any, dtype: str, where: str) -> str | tuple[tuple[float, ...], ...]:
    if value == NETWORK_SIZE:
        return NETWORK_SIZE

    def number(v: Any) -> bool:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        return ok and (isinstance(v, int) or not dtype.startswith('int'))
    rows = value if isinstance(value, list) and value and all(isinstance(r, list) for r in value) \
        else [value]
    _require(all(isinstance(r, list) and r and all(number(v) for v in r) for r in rows)
             and len({len(r) for r in rows}) == 1, where,
             f'must be {NETWORK_SIZE!r}, a list of numbers or a list of equal-length lists of numbers'
             + (' (integers for an integer dtype)' if dtype.startswith('int') else '') + f', got {value!r}')
    if dtype.startswith('int'):
        info = np.iinfo(dtype)
        _require(all(info.min <= v <= info.max for r in rows for v in r), where,
                 f'{value!r} does not fit {dtype}')
    return tuple(tuple(r) for r in rows)


def _extra_inputs(inp: dict, image: str, where: str) -> tuple[ExtraInput, ...]:
    extras = inp.get('extra_inputs', {})
    _require(isinstance(extras, dict), f'{where}: input.extra_inputs',
             f'must map input names to {{"dtype", "value"}}, got {extras!r}')
    found = []
    for name, entry in extras.items():
        key = f'{where}: input.extra_inputs.{name}'
        _require(bool(name) and name != image, key,
                 f'must name an input other than the image input {image!r}')
        _require(isinstance(entry, dict), key, f'must be {{"dtype": ..., "value": ...}}, got {entry!r}')
        unknown = sorted(set(entry) - {'dtype', 'value'})
        _require(not unknown, f'{key}.{unknown[0]}' if unknown else key,
                 'unknown key (it takes dtype, value)')
        _require('value' in entry, f'{key}.value', 'missing')
        dtype = _choice(entry, 'dtype', EXTRA_DTYPES, key, '')
        value = _extra_value(entry['value'], dtype, f'{key}.value')
        found.append(ExtraInput(name=name, dtype=dtype, value=value))
    return tuple(found)


def _output_spec(out: dict, names: tuple[str, ...], where: str) -> OutputSpec:
    fmt = _choice(out, 'format', OUTPUT_FORMATS, f'{where}: output', '')
    fewest, most = OUTPUT_COUNTS[fmt]
    _require(fewest <= len(names) <= most, f'{where}: output.names',
             f'wrong number of outputs for {fmt}: {len(names)}, expected '
             + (f'{fewest}' if fewest == most else f'{fewest} to {most}'))
    _require(len(set(names)) == len(names), f'{where}: output.names', 'names an output twice')
    taken = OUTPUT_OPTIONS.get(fmt, ())
    for key in ('boxes', 'normalised', 'class_offset', 'layout'):
        _require(key not in out or key in taken, f'{where}: output.{key}',
                 f'does not apply to format {fmt}' + (f' (it takes {list(taken)})' if taken else ''))
    boxes = _choice(out, 'boxes', BOX_ENCODINGS, f'{where}: output', 'xyxy')
    normalised = out.get('normalised', fmt == 'rtdetr')
    _require(isinstance(normalised, bool), f'{where}: output.normalised',
             f'must be true or false, got {normalised!r}')
    offset = out.get('class_offset', 0)
    _require(isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0,
             f'{where}: output.class_offset', f'must be a non-negative integer, got {offset!r}')
    layout = _choice(out, 'layout', RTDETR_LAYOUTS, f'{where}: output', 'class_scores')
    return OutputSpec(format=fmt, names=names, boxes=boxes, normalised=normalised, class_offset=offset,
                      layout=layout)


def parse_model_json(data: dict[str, Any], directory: Path, where: str) -> Bundle:
    """Validate a model.json document; ``where`` names it in errors."""
    _require(isinstance(data, dict), where, 'must be a JSON object')
    _require(data.get('format') == BUNDLE_FORMAT, f'{where}: format',
             f'expected {BUNDLE_FORMAT}, got {data.get("format")!r}')
    classes = data.get('classes')
    _require(isinstance(classes, list) and classes and all(isinstance(c, str) and c for c in classes),
             f'{where}: classes', 'must be a non-empty list of class names')
    _require(len(set(classes)) == len(classes), f'{where}: classes', 'class names must be unique')

    inp = data.get('input')
    _require(isinstance(inp, dict), f'{where}: input', 'missing or not an object')
    for key in ('height', 'width'):
        _require(isinstance(inp.get(key), int) and inp[key] > 0, f'{where}: input.{key}',
                 f'must be a positive integer, got {inp.get(key)!r}')
    _require(isinstance(inp.get('name'), str) and inp['name'], f'{where}: input.name',
             'must name the network input tensor')
    std = _triple(inp, 'std', f'{where}: input', (1.0, 1.0, 1.0))
    _require(all(s > 0 for s in std), f'{where}: input.std', 'must be positive')
    pad = inp.get('pad_value', 114)
    _require(isinstance(pad, int) and 0 <= pad <= 255, f'{where}: input.pad_value', 'must be 0..255')
    input_spec = InputSpec(
        name=inp['name'], height=inp['height'], width=inp['width'],
        layout=_choice(inp, 'layout', LAYOUTS, f'{where}: input', 'NCHW'),
        color=_choice(inp, 'color', COLORS, f'{where}: input', 'RGB'),
        resize=_choice(inp, 'resize', RESIZE_MODES, f'{where}: input', 'letterbox'),
        pad_value=pad, mean=_triple(inp, 'mean', f'{where}: input', (0.0, 0.0, 0.0)), std=std,
        extra=_extra_inputs(inp, inp['name'], where))

    out = data.get('output')
    _require(isinstance(out, dict), f'{where}: output', 'missing or not an object')
    names = out.get('names')
    _require(isinstance(names, list) and names and all(isinstance(n, str) for n in names),
             f'{where}: output.names', 'must list the output tensor names')
    output_spec = _output_spec(out, tuple(names), where)

    post = data.get('postprocess', {})
    _require(isinstance(post, dict), f'{where}: postprocess', 'must be an object')
    postprocess = Postprocess(**{k: post[k] for k in ('score_threshold', 'nms_iou_threshold',
                                                      'max_detections') if k in post})
    _require(0.0 <= postprocess.score_threshold <= 1.0, f'{where}: postprocess.score_threshold',
             'must be in [0, 1]')
    _require(0.0 < postprocess.nms_iou_threshold <= 1.0, f'{where}: postprocess.nms_iou_threshold',
             'must be in (0, 1]')
    _require(isinstance(postprocess.max_detections, int) and postprocess.max_detections > 0,
             f'{where}: postprocess.max_detections', 'must be a positive integer')
    return Bundle(directory=directory, classes=tuple(classes), input=input_spec, output=output_spec,
                  postprocess=postprocess, onnx_sha256=data.get('onnx_sha256'),
                  arch=str(data.get('arch', '')), raw=data)


def load_bundle(path: str | Path, check_onnx_hash: bool = False) -> Bundle:
    """Load the bundle that holds ``path`` (the directory or a model file in it)."""
    if not Path(path).exists() and not Path(path).suffix:  # a model file may be one to build (an engine)
        raise BundleError(f'{path}: no such bundle (a directory holding model.json, or a model file in one)')
    directory = bundle_directory(path)
    model_json = directory / MODEL_JSON
    if not model_json.is_file():
        raise BundleError(f'{model_json}: no model.json; a bundle directory needs one '
                          '(perception-export writes it)')
    try:
        data = json.loads(model_json.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f'{model_json}: unreadable: {exc}') from exc
    bundle = parse_model_json(data, directory, str(model_json))
    if check_onnx_hash and bundle.onnx_sha256 and bundle.onnx_path.is_file():
        actual = sha256_of(bundle.onnx_path)
        if actual != bundle.onnx_sha256:
            raise BundleError(f'{bundle.onnx_path}: sha256 {actual} does not match '
                              f'model.json onnx_sha256 {bundle.onnx_sha256}')
    return bundle
