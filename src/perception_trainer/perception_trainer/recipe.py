"""``perception-train-default``: reproduce the shipped bundle ``models/detector`` (``make train``).

1. ``perception-synth``: training set (seed 1), validation set (seed 2), held-out test set (seed 3,
   never seen in training), unless already there.
2. ``perception-train --config config/train_default.yaml --resume`` (a re-run continues).
3. ``perception-export`` of the best checkpoint into the bundle directory.
4. ``perception-eval`` of the bundle on the held-out set; the report goes to ``<bundle>/eval`` and
   its numbers into model.json ``metrics``.

Options not listed below are passed to perception-train (``--device cuda --workers 12``...). To
train on a GPU host and export here: ``--skip-export`` there, copy the run directory (``--out``)
back, then ``--skip-train`` here.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from perception_core import atomic
from perception_core.backends import BackendError
from perception_core.bundle import BundleError
from perception_core.interrupt import interrupted

from .checkpoint import BEST
from .config import ConfigError, TrainConfig, add_arguments, load_config
from .evaluate import evaluate_bundle, format_table
from .export import ExportError, export_bundle
from .generate import RenderInterrupted, generate_dataset
from .readers import COCO_FILE
from .train import TRAINING_ERRORS, device_type, saved_so_far, train

log = logging.getLogger('perception_trainer.recipe')
PROG = 'perception-train-default'
# (directory name, images, seed); the test seed is never used for training or validation.
DATA_SETS = {'train': ('synth_train', 8000, 1), 'val': ('synth_val', 500, 2), 'test': ('synth_test', 500, 3)}
EVAL_SAMPLES = 1  # sample images in <bundle>/eval: each ~0.6 MB of the shipped bundle's 10 MB


def ensure_dataset(root: Path, role: str, workers: int | None) -> Path:
    name, images, seed = DATA_SETS[role]
    out = root / name
    coco = out / COCO_FILE
    if coco.is_file() and len(json.loads(coco.read_text())['images']) == images:
        log.info('%s: already there (%d images)', out, images)
        return out
    return generate_dataset(out, images, seed, workers=workers)


def record_metrics(model_json: Path, report: dict) -> None:
    """Put the held-out evaluation into model.json (the ONNX file, and so its hash, is unchanged)."""
    document = json.loads(model_json.read_text())
    keys = ('mAP', 'mAP50', 'mAP75', 'per_class_AP', 'per_class_AP50', 'images', 'score_threshold')
    document['metrics'] = {'held_out': {k: report[k] for k in keys},
                           'held_out_data': {'seed': DATA_SETS['test'][2], 'images': DATA_SETS['test'][1]}}
    atomic.write_json(model_json, document)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', type=Path, default=Path('data'), help='where the data sets go')
    parser.add_argument('--bundle', type=Path, default=Path('models/detector'), help='bundle directory')
    parser.add_argument('--synth-workers', type=int, default=None, help='rendering processes')
    parser.add_argument('--skip-export', action='store_true', help='train only (e.g. on a GPU host)')
    parser.add_argument('--skip-train', action='store_true',
                        help='export and evaluate the best checkpoint already in --out')
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.config is None:
        args.config = Path('config/train_default.yaml')
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    data = {role: args.data_dir / DATA_SETS[role][0] for role in DATA_SETS}
    try:
        cfg = load_config(args, overrides={'train_data': str(data['train']), 'val_data': str(data['val']),
                                           'resume': getattr(args, 'resume', 'true')})
    except ConfigError as exc:
        raise SystemExit(f'{PROG}: {exc}') from None
    try:
        _run(args, cfg)
    except (*TRAINING_ERRORS, ExportError, BundleError, BackendError) as exc:
        raise SystemExit(f'{PROG}: {exc}') from None
    except RenderInterrupted as exc:
        raise SystemExit(interrupted(PROG, str(exc))) from None
    except KeyboardInterrupt:  # the recipe resumes by default
        raise SystemExit(interrupted(PROG, saved_so_far(Path(cfg.out), 'the same command continues from '
                                                        'there'))) from None


def _run(args: argparse.Namespace, cfg: TrainConfig) -> None:
    """Render what is missing, train, export and score on the held-out set, as ``args`` say."""
    if args.skip_train:
        best = Path(cfg.out) / BEST
    else:
        if cfg.backbone != 'tiny' and device_type(cfg.device) == 'cpu':
            log.warning('training %s %s on the CPU: a few images/s, hours for %d epochs; '
                        '--backbone tiny --size n is the CPU recipe', cfg.backbone, cfg.size, cfg.epochs)
        ensure_dataset(args.data_dir, 'train', args.synth_workers)
        ensure_dataset(args.data_dir, 'val', args.synth_workers)
        best = train(cfg)
    if args.skip_export:
        return
    test_dir = ensure_dataset(args.data_dir, 'test', args.synth_workers)
    model_json = export_bundle(best, args.bundle, verify_data=str(test_dir))
    report = evaluate_bundle(args.bundle, test_dir, args.bundle / 'eval', samples=EVAL_SAMPLES)
    record_metrics(model_json, report)
    print(format_table(report))
    print(f'bundle: {args.bundle}; held-out report: {args.bundle / "eval"}')


if __name__ == '__main__':
    main()
