"""The trainer's model family timed the way the shipped bundle is: ``perception-family-bench``.

For each --size x --backbone (and input size) asked for, a bundle is made by the trainer's own
export (``perception_trainer.export.export_bundle``: ONNX + TorchScript, verified) from a checkpoint
of freshly initialised weights, then timed by ``backends.measure``: the network alone at batch 1 and
a 640x480 camera frame -> detections through the node's Detector, on ONNX Runtime CPU here and, on
a machine with CUDA, fp16 + CUDA graph (the node's torch_cuda) too. Untrained weights cost what
trained ones do in the network; decoding may differ (a trained model leaves fewer candidates
above the threshold), so the frame figure's decoding part is the shipped bundle's kind, not this
member's. Accuracy is not measured here: that is training (bench/README.md).

    perception-family-bench --out out/family [--members n:tiny,n:resnet18:640x480] [--quick]

Writes family.json and prints the Markdown rows of the trainer README's "Choosing a model" table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perception_core.bundle import load_bundle
from perception_core.interrupt import on_ctrl_c
from perception_core.synth import DEFAULT_CLASSES

from . import backends
from .backends import VARIANTS, Effort
from .stats import median_of

log = logging.getLogger(__name__)
CLASSES = DEFAULT_CLASSES  # the synthetic sets' classes (the timed frames are drawn with them)
TIMED = ('onnxruntime_cpu', 'fp16_graph')  # the node's CPU and GPU defaults


@dataclass(frozen=True)
class Member:
    size: str
    backbone: str
    width: int = 320
    height: int = 256

    def __post_init__(self) -> None:
        from perception_trainer.architectures import ARCHITECTURES
        from perception_trainer.centernet import NECK  # its keys are the sizes

        backbones = ARCHITECTURES['centernet'].backbones
        if self.size not in NECK:
            raise ValueError(f'--members: size {self.size!r} is not one of {", ".join(NECK)} (SIZE:BACKBONE)')
        if self.backbone not in backbones:
            raise ValueError(f'--members: backbone {self.backbone!r} is not one of {", ".join(backbones)}')

    @property
    def name(self) -> str:
        return f'{self.size}_{self.backbone}_{self.width}x{self.height}'

    @classmethod
    def parse(cls, text: str) -> Member:
        """``SIZE:BACKBONE[:WIDTHxHEIGHT]``, e.g. ``n:resnet18:640x480``."""
        parts = text.split(':')
        if len(parts) not in (2, 3):
            raise ValueError(f'--members: {text!r} is not SIZE:BACKBONE[:WIDTHxHEIGHT]')
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        width, _, height = parts[2].partition('x')
        if not (width.isdigit() and height.isdigit()):
            raise ValueError(f'--members: {parts[2]!r} in {text!r} is not WIDTHxHEIGHT')
        return cls(parts[0], parts[1], int(width), int(height))


def every_member() -> list[Member]:
    """The trainer README's table: every size x backbone at 320x256, the n size at 640x480."""
    from perception_trainer.architectures import ARCHITECTURES

    backbones = ARCHITECTURES['centernet'].backbones
    return ([Member(size, backbone) for size in ('n', 's', 'm') for backbone in backbones]
            + [Member('n', backbone, 640, 480) for backbone in backbones])


def member_bundle(member: Member, folder: Path) -> Path:
    """A verified bundle of ``member`` with initialised (untrained) weights, in ``folder``."""
    import torch

    from perception_trainer import checkpoint
    from perception_trainer.architectures import ARCHITECTURES
    from perception_trainer.export import export_bundle

    arch = ARCHITECTURES['centernet']
    torch.manual_seed(0)
    model = arch.model(len(CLASSES), member.backbone, member.size)
    spec = arch.input_spec(member.height, member.width)
    meta = {'arch': arch.name, 'classes': list(CLASSES),
            'input': {k: list(v) if isinstance(v, tuple) else v for k, v in spec.__dict__.items()},
            'config': {'backbone': member.backbone, 'size': member.size}, 'epoch': 0}
    folder.mkdir(parents=True, exist_ok=True)
    saved = checkpoint.save(folder / 'initialised.pt', {'model': model.state_dict(), 'meta': meta})
    export_bundle(saved, folder / 'bundle')
    saved.unlink()
    return folder / 'bundle'


def time_member(member: Member, folder: Path, effort: Effort) -> dict[str, Any]:
    bundle_dir = member_bundle(member, folder / member.name)
    bundle = load_bundle(bundle_dir)
    variants = [v for v in VARIANTS if v.key in TIMED]
    found = backends.measure(bundle, [1], effort, variants)
    document = load_bundle(bundle_dir).raw
    row: dict[str, Any] = {'member': member.__dict__, 'parameters': document['model']['parameters'],
                           'gflops': document['model']['gflops'],
                           'bundle_mb': round(sum(f.stat().st_size for f in bundle_dir.iterdir()) / 1e6, 1)}
    for key in TIMED:
        entry = found['variants'][key]
        if 'network' not in entry:
            row[key] = {'skipped': entry.get('skipped') or entry.get('error', 'not measured')}
            continue
        row[key] = {'network_p50_ms': median_of(entry['network']['1']),
                    'frame_640x480_p50_ms': median_of(entry['frame_640x480']['frame_to_detections']),
                    'description': entry['description']}
    return row


def measure(members: Sequence[Member], folder: Path, effort: Effort) -> dict[str, Any]:
    """The ``family`` section of ``make bench``: each member's row (its error where one fails)."""
    rows: list[dict[str, Any]] = []
    for member in members:
        try:
            rows.append(time_member(member, folder, effort))
        except Exception as exc:  # one member that cannot export must not cost the others
            log.exception('%s: not timed', member.name)
            rows.append({'member': member.__dict__, 'error': f'{type(exc).__name__}: {exc}'})
    return {'rows': rows}


def markdown_rows(rows: Sequence[dict[str, Any]]) -> str:
    """The trainer README table's rows: one per member, CPU and GPU figures side by side."""
    def figures(entry: dict[str, Any]) -> str:
        if 'network_p50_ms' not in entry:
            return 'not measured here'
        return f"{entry['network_p50_ms']:.2f} / {entry['frame_640x480_p50_ms']:.2f} ms"

    lines = ['| size | backbone | input | parameters | GFLOPs | bundle | ONNX Runtime CPU: network / frame | '
             'fp16 CUDA graph: network / frame |', '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for row in rows:
        m = row['member']
        if 'error' in row:
            lines.append(f"| {m['size']} | {m['backbone']} | {m['width']}x{m['height']} | "
                         f"failed: {row['error']} | | | | |")
            continue
        lines.append(f"| {m['size']} | {m['backbone']} | {m['width']}x{m['height']} | "
                     f"{row['parameters'] / 1e6:.2f} M | {row['gflops']:.2f} | {row['bundle_mb']} MB | "
                     f"{figures(row['onnxruntime_cpu'])} | {figures(row['fp16_graph'])} |")
    return '\n'.join(lines)


@on_ctrl_c('perception-family-bench')
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='perception-family-bench', description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, default=Path('out/family'))
    parser.add_argument('--members', default='', help='SIZE:BACKBONE[:WxH],... (default: every member)')
    parser.add_argument('--quick', action='store_true', help='fewer calls per figure (a smoke run)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    try:
        members = [Member.parse(t) for t in args.members.split(',') if t.strip()] or every_member()
    except ValueError as exc:
        print(f'perception-family-bench: {exc}', file=sys.stderr)
        return 2
    effort = Effort(repeats=1, cpu_calls=5, gpu_calls=20, warmup=2) if args.quick else Effort()
    rows = []
    for member in members:
        print(f'{member.name}: exporting and timing', file=sys.stderr, flush=True)
        rows.append(time_member(member, args.out, effort))
        # written after every member: an interrupted run keeps what it measured
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / 'family.json').write_text(json.dumps({'rows': rows}, indent=1))
    print(markdown_rows(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
