"""``perception-eval``: score a model bundle on a labelled data set, as the node would run it.

Frames go through the node's preprocessing, the bundle's ONNX model (ONNX Runtime) or TorchScript
model, and the node's decoder; pycocotools computes COCO mAP@[.5:.95], mAP@.5 and per-class AP.
Writes ``eval.json``, ``pr_curve.png`` and a few annotated frames (``sample_*.png``) to ``--out``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from perception_core import atomic
from perception_core.backends import Backend, BackendError, BackendOptions
from perception_core.backends.onnxruntime import OnnxRuntimeBackend
from perception_core.backends.torchscript import TorchScriptBackend
from perception_core.bundle import Bundle, BundleError, load_bundle
from perception_core.coco_metrics import Metrics, evaluate
from perception_core.decode import Detections, Thresholds
from perception_core.interrupt import interrupted
from perception_core.preprocess import Transform, preprocess

from .annotations import DatasetError, LabelledSet
from .plots import annotate, pr_curves, write_rgb_png
from .predictions import decode_batch
from .readers import FORMATS, load_dataset
from .training_data import read_rgb

log = logging.getLogger(__name__)
RUNTIMES = ('onnxruntime', 'torchscript')
BATCH = 16


class Runner:
    """One bundle model in one runtime, through the node's own backends (perception_core.backends:
    the one place that talks to ONNX Runtime and TorchScript, extra inputs included): [B, ...]
    float32 input -> its outputs as numpy arrays. ``batch`` is how many frames one call takes: the
    backend's ``batch_limit`` (up to BATCH; 1 for a model exported with a fixed batch, as most
    foreign exports are, or with extra inputs)."""

    def __init__(self, bundle: Bundle, runtime: str) -> None:
        options = BackendOptions(max_batch_size=BATCH)
        if runtime == 'onnxruntime':
            self.backend: Backend = OnnxRuntimeBackend(bundle.onnx_path, bundle, options)
        else:
            self.backend = TorchScriptBackend(bundle.torchscript_path, bundle, options)
        self.batch = self.backend.batch_limit

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.backend.infer(batch)


Batch = tuple[list[int], np.ndarray, list[Transform]]  # sample indices, input tensor, geometries


def _batches(labelled: LabelledSet, bundle: Bundle, size: int) -> Iterator[Batch]:
    indices, tensors, transforms = [], [], []
    for i, sample in enumerate(labelled.samples):
        rgb = read_rgb(str(sample.image))
        if rgb is None:
            log.warning('%s: unreadable image, left out of the metrics', sample.image)
            continue
        tensor, transform = preprocess(rgb, bundle.input)
        indices.append(i)
        tensors.append(tensor)
        transforms.append(transform)
        if len(indices) == size:
            yield indices, np.concatenate(tensors), transforms
            indices, tensors, transforms = [], [], []
    if indices:
        yield indices, np.concatenate(tensors), transforms


def run_bundle(bundle: Bundle, labelled: LabelledSet, runtime: str, score_threshold: float,
               progress: bool = True) -> dict[int, Detections]:
    runner = Runner(bundle, runtime)
    thresholds = Thresholds(score_threshold, bundle.postprocess.nms_iou_threshold,
                            bundle.postprocess.max_detections)
    found: dict[int, Detections] = {}
    with tqdm(total=len(labelled.samples), desc='evaluating', unit='img', disable=not progress) as bar:
        for indices, batch, transforms in _batches(labelled, bundle, runner.batch):
            outputs = runner(batch)
            for i, d in zip(indices, decode_batch(outputs, bundle.output, len(bundle.classes),
                                                  transforms, thresholds), strict=True):
                found[i] = d
            bar.update(len(indices))
    return found


def evaluate_bundle(bundle_path: str | Path, data: str | Path, out: str | Path, *,
                    runtime: str = 'onnxruntime', data_format: str = 'auto',
                    score_threshold: float = 0.05, samples: int = 6, progress: bool = True,
                    max_occlusion: float | None = None,
                    class_map: str | Path | None = None) -> dict[str, Any]:
    """Score the bundle; writes eval.json, pr_curve.png and sample_*.png into ``out``."""
    bundle = load_bundle(bundle_path, check_onnx_hash=True)
    labelled = load_dataset(data, data_format, bundle.classes, max_occlusion=max_occlusion,
                            class_map=class_map)
    return evaluate_labelled(bundle, labelled, out, title=f'{bundle.directory.name} on {Path(data).name}',
                             runtime=runtime, score_threshold=score_threshold, samples=samples,
                             progress=progress)


def evaluate_labelled(bundle: Bundle, labelled: LabelledSet, out: str | Path, *, title: str,
                      runtime: str = 'onnxruntime', score_threshold: float = 0.05, samples: int = 6,
                      progress: bool = True) -> dict[str, Any]:
    """:func:`evaluate_bundle` on a bundle and a set already loaded (labels indexing
    ``bundle.classes``); the same report and files."""
    found = run_bundle(bundle, labelled, runtime, score_threshold, progress)
    kept = sorted(found)
    metrics: Metrics = evaluate([labelled.samples[i] for i in kept], bundle.classes,
                                {j: found[i] for j, i in enumerate(kept)})
    out = Path(out)
    report = {**metrics.summary(), 'bundle': str(bundle.directory), 'arch': bundle.arch, 'runtime': runtime,
              'score_threshold': score_threshold, 'data': labelled.summary(),
              'unreadable_images': len(labelled.samples) - len(kept)}
    atomic.write_json(out / 'eval.json', report)
    pr_curves(metrics, bundle.classes, out / 'pr_curve.png', title)
    for n, i in enumerate(kept[:samples]):
        rgb = read_rgb(str(labelled.samples[i].image))
        if rgb is not None:
            picture = annotate(rgb, labelled.samples[i], found[i], bundle.classes,
                               bundle.postprocess.score_threshold)
            write_rgb_png(out / f'sample_{n:02d}.png', picture)
    return report


def format_table(report: dict[str, Any]) -> str:
    lines = [f"mAP@[.5:.95] {report['mAP']:.4f}   mAP@.5 {report['mAP50']:.4f}   "
             f"mAP@.75 {report['mAP75']:.4f}   ({report['images']} images)",
             f"{'class':<12}{'AP':>8}{'AP50':>8}{'boxes':>8}"]
    boxes = report['data']['boxes_per_class']
    for name, ap in report['per_class_AP'].items():
        ap50 = report['per_class_AP50'][name]
        lines.append(f"{name:<12}{'-' if ap is None else f'{ap:.4f}':>8}"
                     f"{'-' if ap50 is None else f'{ap50:.4f}':>8}{boxes.get(name, 0):>8}")
    return '\n'.join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog='perception-eval', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--bundle', required=True, type=Path, help='bundle directory (or a model file in it)')
    parser.add_argument('--data', required=True, type=Path, help='labelled data set (any supported format)')
    parser.add_argument('--format', choices=FORMATS, default='auto', dest='data_format')
    parser.add_argument('--max-occlusion', type=float, default=None,
                        help='Replicator BasicWriter: drop boxes whose occlusionRatio is above this')
    parser.add_argument('--class-map', type=Path, default=None,
                        help='YAML {data_name: bundle_name or null}: renames, merges, drops classes')
    parser.add_argument('--out', required=True, type=Path, help='report directory')
    parser.add_argument('--runtime', choices=RUNTIMES, default='onnxruntime')
    parser.add_argument('--score-threshold', type=float, default=0.05, help='lowest score kept for mAP')
    parser.add_argument('--samples', type=int, default=6, help='annotated frames to write')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        report = evaluate_bundle(args.bundle, args.data, args.out, runtime=args.runtime,
                                 data_format=args.data_format, score_threshold=args.score_threshold,
                                 samples=args.samples, max_occlusion=args.max_occlusion,
                                 class_map=args.class_map)
    except (BundleError, BackendError, DatasetError) as exc:
        raise SystemExit(f'perception-eval: {exc}') from None
    except KeyboardInterrupt:
        raise SystemExit(interrupted('perception-eval')) from None
    print(format_table(report))
    print(f'report: {args.out / "eval.json"}, {args.out / "pr_curve.png"}')


if __name__ == '__main__':
    main()
