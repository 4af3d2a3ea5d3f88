"""``perception-gap``: the sim-to-real gap of one bundle, measured on two labelled sets.

The same bundle is scored on both sets exactly as ``perception-eval`` scores it (the node's
preprocessing and decoder, pycocotools), and the sets' images and ground truth are described
side by side (brightness, contrast, sharpness, noise, JPEG blockiness, colour, box sizes and
aspects, objects per image, class mix), with a distance per statistic so the largest shift
stands out. Writes to ``--out``::

    gap.md, gap.json                    the report
    detection.png                       per-class AP, sim against real
    images.png, colour.png, boxes.png   histograms side by side
    sim/, real/                         perception-eval's eval.json, pr_curve.png, samples
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perception_core import atomic
from perception_core.bundle import Bundle, BundleError, load_bundle
from perception_core.interrupt import interrupted

from .annotations import DatasetError, LabelledSet
from .evaluate import RUNTIMES, evaluate_labelled
from .gap_report import write_markdown, write_plots
from .gap_statistics import (
    STATISTICS,
    SetStatistics,
    class_frequency_distance,
    distances,
    largest_shifts,
    set_statistics,
)
from .readers import FORMATS, load_dataset

log = logging.getLogger(__name__)
SETS = ('sim', 'real')


def load_for_bundle(role: str, data: str | Path, bundle: Bundle, data_format: str = 'auto',
                    max_occlusion: float | None = None) -> LabelledSet:
    """The set at ``data`` with its labels re-indexed to the bundle's classes; a class name the
    bundle does not know is an error naming the set and the names (the bundle cannot score them)."""
    try:
        labelled = load_dataset(data, data_format, None, max_occlusion=max_occlusion)
    except DatasetError as exc:
        raise DatasetError(f'{role} set: {exc}') from None  # exc names the file or folder
    unknown = [name for name in labelled.classes if name not in bundle.classes]
    if unknown:
        raise DatasetError(f'{role} set {data}: classes {unknown} are missing from the bundle '
                           f'{bundle.directory} (its classes: {list(bundle.classes)})')
    to_bundle = np.array([bundle.classes.index(name) for name in labelled.classes] or [0], np.int64)
    samples = [dataclasses.replace(s, labels=to_bundle[s.labels]) for s in labelled.samples]
    return LabelledSet(bundle.classes, samples, labelled.source, labelled.format, labelled.issues)


def _drop(sim: float | None, real: float | None) -> float | None:
    return None if sim is None or real is None else round(sim - real, 4)


def measure_gap(bundle_path: str | Path, sim: str | Path, real: str | Path, out: str | Path, *,
                sim_format: str = 'auto', real_format: str = 'auto', runtime: str = 'onnxruntime',
                score_threshold: float = 0.05, samples: int = 4, max_occlusion: float | None = None,
                progress: bool = True) -> dict[str, Any]:
    """Score the bundle on both sets, describe both, write the report; returns gap.json's content."""
    bundle = load_bundle(bundle_path, check_onnx_hash=True)
    out = Path(out)
    data = {'sim': (sim, sim_format), 'real': (real, real_format)}
    sets = {role: load_for_bundle(role, path, bundle, fmt, max_occlusion)
            for role, (path, fmt) in data.items()}
    scores, stats = {}, {}
    for role, labelled in sets.items():
        title = f'{bundle.directory.name} on {role}: {Path(data[role][0]).name}'
        scores[role] = evaluate_labelled(bundle, labelled, out / role, title=title, runtime=runtime,
                                         score_threshold=score_threshold, samples=samples, progress=progress)
        stats[role] = set_statistics(labelled, bundle.classes, f'statistics {role}', progress)
    found = distances(stats['sim'], stats['real'])
    ranked = [n for n in largest_shifts(found) if found[n]['normalized'] is not None]
    report = {
        'bundle': str(bundle.directory), 'runtime': runtime, 'score_threshold': score_threshold,
        'sets': {role: {'path': str(data[role][0]), **scores[role]} for role in SETS},
        'drop': _drops(scores['sim'], scores['real']),
        'classes_without_ground_truth': {
            role: [n for n, c in stats[role].class_counts.items() if c == 0] for role in SETS},
        'statistics': _statistics(stats, found),
        'class_frequency': {'sim': stats['sim'].class_counts, 'real': stats['real'].class_counts,
                            'total_variation': class_frequency_distance(stats['sim'].class_counts,
                                                                        stats['real'].class_counts)},
        'largest_shifts': ranked,
    }
    pictures = write_plots(out, report, stats)
    report['pictures'] = [p.name for p in pictures]
    atomic.write_json(out / 'gap.json', report)
    write_markdown(out / 'gap.md', report)
    return report


def _drops(sim: dict[str, Any], real: dict[str, Any]) -> dict[str, Any]:
    """sim minus real: positive = worse on the real set."""
    return {'mAP': _drop(sim['mAP'], real['mAP']), 'mAP50': _drop(sim['mAP50'], real['mAP50']),
            'per_class_AP': {n: _drop(ap, real['per_class_AP'][n]) for n, ap in sim['per_class_AP'].items()},
            'per_class_AP50': {n: _drop(ap, real['per_class_AP50'][n])
                               for n, ap in sim['per_class_AP50'].items()}}


def _statistics(stats: dict[str, SetStatistics], found: dict[str, dict]) -> dict[str, Any]:
    summaries = {role: stats[role].summary() for role in SETS}
    return {name: {'unit': unit, 'meaning': meaning, 'sim': summaries['sim'][name],
                   'real': summaries['real'][name], **found[name]}
            for name, (unit, meaning) in STATISTICS.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog='perception-gap', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--bundle', required=True, type=Path, help='bundle directory (or a model file in it)')
    parser.add_argument('--sim', required=True, type=Path, help='labelled synthetic set (any format)')
    parser.add_argument('--real', required=True, type=Path, help='labelled real set (any format)')
    parser.add_argument('--out', required=True, type=Path, help='report directory')
    parser.add_argument('--sim-format', choices=FORMATS, default='auto')
    parser.add_argument('--real-format', choices=FORMATS, default='auto')
    parser.add_argument('--max-occlusion', type=float, default=None,
                        help='Replicator BasicWriter: drop boxes whose occlusionRatio is above this')
    parser.add_argument('--runtime', choices=RUNTIMES, default='onnxruntime')
    parser.add_argument('--score-threshold', type=float, default=0.05, help='lowest score kept for mAP')
    parser.add_argument('--samples', type=int, default=4, help='annotated frames to write per set')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        report = measure_gap(args.bundle, args.sim, args.real, args.out, sim_format=args.sim_format,
                             real_format=args.real_format, runtime=args.runtime,
                             score_threshold=args.score_threshold, samples=args.samples,
                             max_occlusion=args.max_occlusion)
    except (BundleError, DatasetError) as exc:
        raise SystemExit(f'perception-gap: {exc}') from None
    except KeyboardInterrupt:
        raise SystemExit(interrupted('perception-gap')) from None
    sim, real = report['sets']['sim'], report['sets']['real']
    print(f"mAP@[.5:.95] sim {sim['mAP']:.4f} real {real['mAP']:.4f} drop {report['drop']['mAP']:+.4f}   "
          f"mAP@.5 sim {sim['mAP50']:.4f} real {real['mAP50']:.4f} drop {report['drop']['mAP50']:+.4f}")
    print('largest shifts: ' + ', '.join(f"{n} {report['statistics'][n]['normalized']:.2f}"
                                         for n in report['largest_shifts'][:3]))
    print(f'report: {args.out / "gap.md"}')


if __name__ == '__main__':
    main()
