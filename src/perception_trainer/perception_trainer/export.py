"""``perception-export``: a checkpoint -> the model bundle (model.onnx, model.ts, model.json).

Weights are stored as float16 by default (``--weights``; :mod:`.float16_weights`): both files are
then verified against the folded, rounded model they store, and what the rounding changed against
the trained model is measured, recorded in model.json ``weights`` and held to its limits.

The bundle is the contract between trainer, engine builder and node
(``perception_core.bundle``). Export verifies itself: on real images, preprocessed by the
node's own preprocessing, ONNX Runtime and TorchScript outputs must match PyTorch within
``TOLERANCE`` (max abs) at batch 1 and at a larger batch (the batch axis is dynamic), and the
written model.json must load with ``load_bundle``; otherwise export fails and writes no model.json.

One exception, reported rather than hidden: where the in-graph 3x3 peak test compares two scores
equal to within ``TIE`` (float rounding), a runtime may keep or zero that score; such locations
are counted in model.json ``verification`` and must hold either the score or zero.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch.utils.flop_counter import FlopCounterMode

from perception_core import atomic
from perception_core.bundle import InputSpec, load_bundle, sha256_of
from perception_core.interrupt import interrupted
from perception_core.preprocess import preprocess
from perception_core.synth import render_scene

from . import checkpoint
from .architectures import ARCHITECTURES, Architecture, Deployed, model_options
from .float16_weights import (
    STORAGE,
    float16_buffers,
    float16_initializers,
    rounding_change,
    rounding_problem,
    stored_model,
)
from .readers import load_dataset
from .training_data import read_rgb
from .versions import versions

log = logging.getLogger(__name__)
OPSET = 17
TOLERANCE = 1e-4
TIE = 1e-6  # values this close in the peak test are a tie, whichever runtime breaks it
VERIFY_IMAGES = 4
VERIFY_SEED = 990_001  # scenes for verification when no data set is given; never a training seed
POSTPROCESS = {'score_threshold': 0.3, 'nms_iou_threshold': 0.6, 'max_detections': 100}
DECODING = {
    'dense_boxes_scores': 'detections[b, n, 0:4] = x1, y1, x2, y2 in network-input pixels; '
                          'detections[b, n, 4:] = class scores (sigmoid, zero except at 3x3 heatmap '
                          'peaks of at least 0.01). Keep scores >= score_threshold, class-aware NMS, '
                          'map boxes back through the letterbox.',
    'class_box': 'class_logits[b] -> softmax -> best class and its probability; box[b] = x1, y1, x2, y2 '
                 'normalised to the network input. One detection per image.',
}


class ExportError(RuntimeError):
    """Export that did not verify; the message says which file and by how much."""


def model_cost(model: torch.nn.Module, spec: InputSpec) -> dict[str, float]:
    """Parameters and GFLOPs (2 x multiply-accumulates) for one image at the input size."""
    dummy = torch.zeros(1, 3, spec.height, spec.width)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(dummy)
    return {'parameters': sum(p.numel() for p in model.parameters()),
            'gflops': round(counter.get_total_flops() / 1e9, 4)}


def family_costs(classes: int = 8, height: int = 256, width: int = 320) -> list[dict[str, Any]]:
    """Parameters and GFLOPs of every CenterNet --size x --backbone at one input: the README's
    "Choosing a model" table (``python -c 'from perception_trainer.export import print_family_costs;
    print_family_costs()'``)."""
    arch = ARCHITECTURES['centernet']
    spec = arch.input_spec(height, width)
    rows = []
    for size in ('n', 's', 'm'):
        for backbone in arch.backbones:
            model = arch.model(classes, backbone, size).eval()
            rows.append({'size': size, 'backbone': backbone, 'input': f'{width}x{height}',
                         **model_cost(Deployed(model, arch), spec)})
    return rows


def print_family_costs(classes: int = 8, height: int = 256, width: int = 320) -> None:
    print('| size | backbone | input | parameters | GFLOPs |\n|---|---|---|---|---|')
    for row in family_costs(classes, height, width):
        print(f"| {row['size']} | {row['backbone']} | {row['input']} | {row['parameters'] / 1e6:.2f} M | "
              f"{row['gflops']:.2f} |")


def verification_images(data: str | None) -> list[np.ndarray]:
    if data:
        samples = load_dataset(data).samples[:VERIFY_IMAGES]
        images = [read_rgb(str(s.image)) for s in samples]
        return [im for im in images if im is not None]
    return [render_scene(VERIFY_SEED, i).image for i in range(VERIFY_IMAGES)]


def compare(expected: Sequence[np.ndarray], actual: Sequence[np.ndarray],
            ties: Sequence[np.ndarray | None]) -> tuple[float, int]:
    """(max difference outside numerical ties, how many tie locations the runtimes broke
    differently). At a tie the other runtime may keep the score or zero it, nothing else. The
    difference is absolute for values up to 1 (scores) and relative above (boxes in network pixels:
    float32 sums in a deeper backbone differ by ~1e-4 px at 300 px, ResNet-18 on the H200)."""
    worst, broken = 0.0, 0
    for e, a, tie in zip(expected, actual, ties, strict=True):
        diff = np.nan_to_num(np.abs(e - a) / np.maximum(1.0, np.abs(e)), nan=np.inf)  # NaN never verifies
        if tie is not None:
            differs = tie & (diff > TOLERANCE)
            explained = differs & ((np.abs(a) <= TOLERANCE) | (np.abs(e) <= TOLERANCE))
            broken += int(explained.sum())
            diff = np.where(explained, 0.0, diff)
        worst = max(worst, float(diff.max()))
    return worst, broken


def _batch(images: Sequence[np.ndarray], spec: InputSpec) -> torch.Tensor:
    """Frames through the node's own preprocessing, as one network input batch."""
    return torch.from_numpy(np.concatenate([preprocess(image, spec)[0] for image in images]))


def verify(model: torch.nn.Module, arch: Architecture, bundle_dir: Path, spec: InputSpec,
           images: Sequence[np.ndarray]) -> dict[str, float]:
    """Max difference (``compare``) of ONNX Runtime and TorchScript against PyTorch, per batch size."""
    onnx_path, ts_path = bundle_dir / 'model.onnx', bundle_dir / 'model.ts'
    tensors = [_batch([image], spec) for image in images]
    session = ort.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider'])
    scripted = torch.jit.load(str(ts_path), map_location='cpu')
    report: dict[str, float] = {}
    for batch in (tensors[:1], tensors):
        x = torch.cat(batch)
        with torch.no_grad():
            raw = model(x)
            expected = [o.numpy() for o in arch.head(raw)]
            ties = ([arch.ties(raw, TIE).numpy()] if arch.ties else [None]) * len(expected)
            from_ts = [o.numpy() for o in scripted(x)]
        from_onnx = session.run(None, {spec.name: x.numpy()})
        for runtime, actual in (('onnxruntime', from_onnx), ('torchscript', from_ts)):
            worst, broken = compare(expected, actual, ties)
            report[f'{runtime}_batch{len(batch)}'] = worst
            report[f'{runtime}_batch{len(batch)}_ties_broken_differently'] = broken
    worst = max(v for k, v in report.items() if not k.endswith('differently'))
    if worst > TOLERANCE:
        raise ExportError(f'{onnx_path.parent}: exported model differs from PyTorch by {worst:.2e} '
                          f'(limit {TOLERANCE:.0e}): {report}')
    return report


def _export_onnx(graph: torch.nn.Module, arch: Architecture, spec: InputSpec, path: Path) -> None:
    dummy = torch.zeros(1, 3, spec.height, spec.width)
    axes = {name: {0: 'batch'} for name in (spec.name, *arch.output_names)}
    with atomic.atomic_path(path) as tmp, warnings.catch_warnings():
        # Fixed spatial sizes become constants on purpose (only the batch axis is dynamic).
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        torch.onnx.export(graph, (dummy,), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=[spec.name], output_names=list(arch.output_names), dynamic_axes=axes)
        onnx.checker.check_model(str(tmp))


def _export_torchscript(graph: torch.nn.Module, spec: InputSpec, path: Path) -> None:
    dummy = torch.zeros(2, 3, spec.height, spec.width)  # batch 2: the trace keeps the batch axis free
    with atomic.atomic_path(path) as tmp, torch.no_grad():
        torch.jit.trace(graph, (dummy,), check_trace=False).save(str(tmp))


def export_bundle(checkpoint_path: str | Path, out: str | Path, *, verify_data: str | None = None,
                  metrics: dict[str, Any] | None = None, postprocess: dict[str, Any] | None = None,
                  weights: str = 'float16') -> Path:
    """Write and verify the bundle; returns the path of its model.json. ``weights``: how the
    files store them (:mod:`.float16_weights`), float16 by default."""
    if weights not in STORAGE:
        raise ValueError(f'weights {weights!r}: one of {", ".join(STORAGE)}')
    state = checkpoint.load(checkpoint_path)
    meta = state['meta']
    arch = ARCHITECTURES[meta['arch']]
    spec = InputSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta['input'].items()})
    model = arch.model(len(meta['classes']), **model_options(meta))
    model.load_state_dict(state['model'])
    broken = [key for key, value in state['model'].items()
              if value.is_floating_point() and not value.isfinite().all()]
    if broken:  # NaN outputs would also compare as no difference below
        raise ExportError(f'{checkpoint_path}: {", ".join(broken[:3])}{" ..." if len(broken) > 3 else ""} '
                          f'hold NaN or inf ({len(broken)} tensors): the training diverged')
    model.eval()
    half = weights == 'float16'
    reference = stored_model(model, torch.zeros(1, 3, spec.height, spec.width)) if half else model
    graph = Deployed(reference, arch).eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path, ts_path, json_path = out / 'model.onnx', out / 'model.ts', out / 'model.json'
    json_path.unlink(missing_ok=True)  # no model.json until the new model files verify
    _export_onnx(graph, arch, spec, onnx_path)
    if half:
        float16_initializers(onnx_path)
    _export_torchscript(Deployed(float16_buffers(reference), arch).eval() if half else graph, spec, ts_path)
    images = verification_images(verify_data)
    differences = verify(reference, arch, out, spec, images)
    log.info('verified: %s (limit %.0e)', differences, TOLERANCE)
    storage: dict[str, Any] = {'storage': weights}
    if half:
        storage.update(batchnorm='folded into the convolutions',
                       rounding=rounding_change(model, reference, arch, _batch(images, spec)))
        problem = rounding_problem(storage['rounding'])
        if problem:
            raise ExportError(f'{onnx_path.parent}: float16 weights change the {problem}; '
                              'export it with --weights float32')
        log.info('float16 weights change the outputs by %s', storage['rounding'])
    document = {
        'format': 1, 'arch': arch.name, 'description': arch.description, 'classes': meta['classes'],
        'input': {k: list(v) if isinstance(v, tuple) else v for k, v in spec.__dict__.items()},
        'output': {'format': arch.output_format, 'names': list(arch.output_names),
                   'decoding': DECODING[arch.output_format]},
        'postprocess': {**POSTPROCESS, **(postprocess or {})},
        'onnx_sha256': sha256_of(onnx_path), 'onnx_opset': OPSET,
        'model': model_cost(Deployed(model, arch).eval(), spec), 'weights': storage,
        'training': {'epochs': meta.get('epoch'), 'data': meta.get('data'), 'config': meta.get('config'),
                     'validation': meta.get('metrics')},
        'metrics': metrics or {},
        'verification': {'tolerance': TOLERANCE, 'tie': TIE, 'images': VERIFY_IMAGES,
                         'max_abs_difference': differences},
        'versions': {'training': meta.get('versions', {}), 'export': versions()},
    }
    with tempfile.TemporaryDirectory() as staging:
        atomic.write_json(Path(staging) / 'model.json', document)
        load_bundle(staging)  # the contract's own validation, before the real file appears
    atomic.write_json(json_path, document)
    load_bundle(json_path, check_onnx_hash=True)
    return json_path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog='perception-export', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', required=True, type=Path, help='best.pt from perception-train')
    parser.add_argument('--out', required=True, type=Path, help='bundle directory (e.g. models/detector)')
    parser.add_argument('--verify-data', help='data set whose first images verify the export '
                        '(default: freshly rendered scenes)')
    parser.add_argument('--metrics', type=Path, help='eval.json from perception-eval to record in model.json')
    parser.add_argument('--score-threshold', type=float, help='default score threshold for the node')
    parser.add_argument('--nms-iou-threshold', type=float)
    parser.add_argument('--max-detections', type=int)
    parser.add_argument('--weights', choices=STORAGE, default='float16',
                        help='how model.onnx and model.ts store the weights: float16 (half the size; '
                        'the change in the outputs is measured and recorded) or float32')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    post = {k: v for k, v in (('score_threshold', args.score_threshold),
                              ('nms_iou_threshold', args.nms_iou_threshold),
                              ('max_detections', args.max_detections)) if v is not None}
    metrics = json.loads(args.metrics.read_text()) if args.metrics else None
    try:
        path = export_bundle(args.checkpoint, args.out, verify_data=args.verify_data, metrics=metrics,
                             postprocess=post, weights=args.weights)
    except (ExportError, checkpoint.CheckpointError, ValueError) as exc:
        raise SystemExit(f'perception-export: {exc}') from None
    except KeyboardInterrupt:  # model.json is written last, after verification: no half bundle loads
        raise SystemExit(interrupted('perception-export')) from None
    print(f'bundle written: {path.parent} (model.onnx, model.ts, model.json)')


if __name__ == '__main__':
    main()
