"""Does ``--augment strong`` close the sim-to-real gap? Measured, not guessed.

Renders a training, a validation and a held-out set, plus a copy of the held-out set shifted as a
real camera would shift it (Gaussian blur, darker exposure, sensor noise, JPEG compression; the
same labels), then trains the same recipe once per policy with the same budget (epochs, and the
time limit if given), exports each best checkpoint and scores each bundle with ``perception-gap``
on the held-out pair. Prints and writes (``<out>/augment_measure.json`` and ``.md``) per policy:
mAP on the synthetic and on the shifted set, and the drop between them, overall and per class
(``augment_measure.png``).

    python -m perception_trainer.augment_measure --out runs/augment --device cuda --epochs 30
    python -m perception_trainer.augment_measure --out runs/augment --config config/train_default.yaml

The second trains the shipped recipe; ``--time-limit-minutes 3`` gives each policy three minutes.

A tiny budget (``--train-images 40 --epochs 1``) only proves the pipeline runs; it measures nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception_core import atomic
from perception_core.backends import BackendError
from perception_core.bundle import BundleError
from perception_core.interrupt import interrupted

from .augment import POLICIES
from .config import load_config
from .export import ExportError, export_bundle
from .gap import measure_gap
from .gap_report import COLOURS, plt, save_figure
from .generate import RenderInterrupted, generate_dataset, parse_size
from .readers import COCO_FILE
from .train import TRAINING_ERRORS, train

log = logging.getLogger('perception_trainer.augment_measure')
PROG = 'python -m perception_trainer.augment_measure'
# (role, seed); seed 3 is the recipe's held-out seed, never trained on.
SEEDS = {'train': 1, 'val': 2, 'test_sim': 3}
# The shift of the 'real' copy: test_gap.py's blur / darken / JPEG, plus sensor noise.
BLUR_SIGMA = 1.5
DARKEN = 0.6
NOISE_SIGMA = 6.0  # grey levels
JPEG_QUALITY = 15
# A budget for the trainer's own defaults (no --config), small enough for a CPU.
BUDGET_WITHOUT_CONFIG = {'epochs': 30, 'batch_size': 32, 'workers': 2}
# Not the gap report's sim / real colours: the policies' bars stand beside those.
POLICY_COLOURS = ('tab:gray', 'tab:green', 'tab:purple', 'tab:brown')


def _render(out: Path, images: int, seed: int, size: tuple[int, int], workers: int) -> Path:
    """The set, rendered unless a set of that many images is already there (re-runs reuse it)."""
    coco = out / COCO_FILE
    if coco.is_file() and len(json.loads(coco.read_text())['images']) == images:
        return out
    return generate_dataset(out, images, seed, size=size, workers=workers, progress=False)


def shifted_copy(clean: Path, out: Path, *, seed: int = 0) -> Path:
    """``clean`` copied to ``out`` with every JPEG blurred, darkened, noised and recompressed."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(clean, out)  # the same annotation files: same labels, same image names
    rng = np.random.default_rng(seed)
    for path in sorted((out / 'images').glob('*.jpg')):
        bgr = cv2.GaussianBlur(cv2.imread(str(path)), (0, 0), BLUR_SIGMA).astype(np.float32) * DARKEN
        bgr += rng.normal(0.0, NOISE_SIGMA, bgr.shape).astype(np.float32)
        if not cv2.imwrite(str(path), np.clip(bgr, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY,
                                                                                 JPEG_QUALITY]):
            raise RuntimeError(f'{path}: OpenCV could not write the shifted frame')
    return out


def measure(out: Path, *, policies: Sequence[str], train_images: int, val_images: int, test_images: int,
            render_size: tuple[int, int], workers: int, recipe: dict[str, Any],
            config: Path | None = None) -> dict[str, Any]:
    """Train, export and gap-score one bundle per policy; returns augment_measure.json's content.

    ``config``: the recipe YAML the runs start from (``recipe`` on top of it); None: the trainer's
    defaults."""
    data = out / 'data'
    # Every policy's recipe first: one that cannot train fails here, before minutes of rendering.
    configs = {name: load_config(path=config, overrides={**recipe, 'train_data': str(data / 'train'),
                                                         'val_data': str(data / 'val'), 'augment': name,
                                                         'out': str(out / name / 'run')})
               for name in policies}
    _render(data / 'train', train_images, SEEDS['train'], render_size, workers)
    val_set = _render(data / 'val', val_images, SEEDS['val'], render_size, workers)
    sim = _render(data / 'test_sim', test_images, SEEDS['test_sim'], render_size, workers)
    real = shifted_copy(sim, data / 'test_real')
    results: dict[str, Any] = {}
    report = {'config': str(config) if config else None, 'recipe': recipe, 'render_size': list(render_size),
              'images': {'train': train_images, 'val': val_images, 'test': test_images},
              'shift': {'blur_sigma': BLUR_SIGMA, 'darken': DARKEN, 'noise_sigma': NOISE_SIGMA,
                        'jpeg_quality': JPEG_QUALITY},
              'policies': results}
    for name, cfg in configs.items():
        run = out / name
        started = time.perf_counter()
        best = train(cfg)
        seconds = time.perf_counter() - started
        bundle = export_bundle(best, run / f'augment_{name}', verify_data=str(val_set)).parent
        gap = measure_gap(bundle, sim, real, run / 'gap', samples=2, progress=False)
        results[name] = {'train_seconds': round(seconds, 1), 'bundle': str(bundle),
                         'sim': {k: gap['sets']['sim'][k] for k in ('mAP', 'mAP50')},
                         'real': {k: gap['sets']['real'][k] for k in ('mAP', 'mAP50')},
                         'drop': {k: gap['drop'][k] for k in ('mAP', 'mAP50')},
                         'drop_per_class_AP': gap['drop']['per_class_AP'],
                         'report': str(run / 'gap' / 'gap.md')}
        # Written after each policy: a run cut short keeps the policies it finished.
        atomic.write_json(out / 'augment_measure.json', report)
        atomic.write_text(out / 'augment_measure.md', markdown(report))
        write_plot(out / 'augment_measure.png', results)
    return report


def write_plot(path: Path, policies: dict[str, Any]) -> Path:
    """mAP on the synthetic and the shifted set per policy, beside each class's AP drop per policy."""
    fig, (scores, drops) = plt.subplots(1, 2, figsize=(13, 4.2), dpi=100, width_ratios=(1, 2.4))
    names = list(policies)
    x = np.arange(len(names))
    for k, role in enumerate(('sim', 'real')):
        bars = scores.bar(x + (k - 0.5) * 0.4, [policies[n][role]['mAP'] for n in names], 0.4,
                          color=COLOURS[role], label=f'{role} mAP@[.5:.95]')
        scores.bar_label(bars, fmt='%.3f', fontsize=8)
    scores.set_xticks(x, names)
    scores.set(ylim=(0, 1.05), title='mAP per policy, same budget')
    scores.legend(fontsize=8, loc='lower right')
    classes = list(next(iter(policies.values()))['drop_per_class_AP'])
    cx = np.arange(len(classes))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        drop = [np.nan if v is None else v for v in policies[name]['drop_per_class_AP'].values()]
        drops.bar(cx + (k - (len(names) - 1) / 2) * width, drop, width, label=name,
                  color=POLICY_COLOURS[k % len(POLICY_COLOURS)])
    drops.set_xticks(cx, classes, rotation=45, ha='right')
    drops.set(ylabel='AP sim - AP real', title='drop per class (lower is better)')
    drops.grid(axis='y', alpha=0.3)
    drops.legend(fontsize=8)
    return save_figure(fig, path)


def markdown(report: dict[str, Any]) -> str:
    rows = ['| policy | train s | sim mAP | real mAP | drop mAP | sim mAP@.5 | real mAP@.5 | drop mAP@.5 |',
            '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for name, r in report['policies'].items():
        rows.append(f"| {name} | {r['train_seconds']:.0f} | {r['sim']['mAP']:.4f} | {r['real']['mAP']:.4f} | "
                    f"{r['drop']['mAP']:.4f} | {r['sim']['mAP50']:.4f} | {r['real']['mAP50']:.4f} | "
                    f"{r['drop']['mAP50']:.4f} |")
    return '\n'.join(rows) + '\n'


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True, type=Path, help='working directory: data, runs, reports')
    parser.add_argument('--policies', nargs='+', choices=POLICIES, default=['default', 'strong'])
    parser.add_argument('--train-images', type=int, default=4000)
    parser.add_argument('--val-images', type=int, default=300)
    parser.add_argument('--test-images', type=int, default=500)
    parser.add_argument('--render-size', type=parse_size, default=(640, 480), help='WxH of rendered frames')
    parser.add_argument('--render-workers', type=int, default=None, help='rendering processes')
    # The training budget, the same for every policy; any other recipe key via --recipe. Without
    # --config the trainer's defaults apply, with it the file's; these options override either.
    parser.add_argument('--config', type=Path, default=None, help='recipe YAML the runs start from')
    without = {k: f'(default: {v} without --config)' for k, v in BUDGET_WITHOUT_CONFIG.items()}
    parser.add_argument('--epochs', type=int, default=None, help=without['epochs'])
    parser.add_argument('--time-limit-minutes', type=float, default=None)
    parser.add_argument('--batch-size', type=int, default=None, help=without['batch_size'])
    parser.add_argument('--workers', type=int, default=None,
                        help=f'data loader processes {without["workers"]}')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto')
    parser.add_argument('--recipe', nargs='*', default=[], metavar='KEY=VALUE',
                        help='further perception-train keys, e.g. input_height=128 input_width=160')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    budget = {'epochs': args.epochs, 'time_limit_minutes': args.time_limit_minutes,
              'batch_size': args.batch_size, 'workers': args.workers}
    recipe: dict[str, Any] = {**({} if args.config else BUDGET_WITHOUT_CONFIG),
                              **{k: v for k, v in budget.items() if v is not None}, 'device': args.device}
    for item in args.recipe:
        key, sep, value = item.partition('=')
        if not sep:
            parser.error(f'--recipe {item!r}: expected KEY=VALUE')
        recipe[key] = value
    try:
        report = measure(args.out, policies=args.policies, train_images=args.train_images,
                         val_images=args.val_images, test_images=args.test_images,
                         render_size=args.render_size, workers=args.render_workers or 2, recipe=recipe,
                         config=args.config)
    except (*TRAINING_ERRORS, ExportError, BundleError, BackendError) as exc:
        raise SystemExit(f'{PROG}: {exc}') from None
    except RenderInterrupted as exc:
        raise SystemExit(interrupted(PROG, str(exc))) from None
    except KeyboardInterrupt:
        raise SystemExit(interrupted(PROG, f'{args.out / "augment_measure.json"} holds the policies that '
                                           'finished')) from None
    print(markdown(report), end='')
    print(f'report: {args.out / "augment_measure.json"}')


if __name__ == '__main__':
    main()
