"""The gap report as people read it: ``gap.md`` and histograms side by side (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from perception_core import atomic
from perception_core.atomic import atomic_path

from .gap_statistics import BOX_STATISTICS, CHANNELS, IMAGE_STATISTICS, SetStatistics

matplotlib.use('Agg')  # files only; no display on robots or CI
import matplotlib.pyplot as plt

COLOURS = {'sim': 'tab:blue', 'real': 'tab:orange'}
BINS = 30
# What closes each gap, from the training side first (options of perception-train / the recipe)
# and from the camera or the simulator second.
JITTER = 'the colour jitter (default policy: brightness, contrast, saturation +-25 %, on 70 % of samples)'
# (when the real value is lower, when it is higher)
REMEDIES: dict[str, tuple[str, str]] = {
    'brightness': (f'widen {JITTER}; or raise the camera exposure / dim the simulated lighting',) * 2,
    'contrast': (f'widen {JITTER}; or match the camera gamma / tone mapping in the renderer',) * 2,
    'sharpness': ('blur and motion blur augmentation (default policy: Gaussian blur 3-5 px on 15 % of '
                  'samples); or shorter exposure / refocus the camera',
                  'the real frames are sharper: render at a higher resolution, less blur augmentation'),
    'noise': ('the real frames are smoother (blur, denoising or compression in the camera): blur / '
              'JPEG augmentation',
              'sensor noise augmentation (default policy: Gaussian noise 2-6 % on 15 % of samples)'),
    'blockiness': ('the sim frames are the more compressed: write them as PNG (perception-synth '
                   '--image-format png)',
                   'JPEG-artefact augmentation; or record / subscribe to the raw image topic instead '
                   'of a compressed one'),
    **{f'colour_{c}': (f'hue / saturation jitter (part of {JITTER}); or the camera white balance',) * 2
       for c in CHANNELS},
    'box_area': ('scale jitter (default policy: 0.75-1.3x); or a larger input size; or move the '
                 "simulated camera to the robot's distances",) * 2,
    'box_aspect': ('render the viewpoints and object poses the robot sees',) * 2,
    'objects_per_image': ('render scenes as crowded (or as empty) as the real ones',) * 2,
}


def save_figure(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png')
    plt.close(fig)
    return path


def _title(name: str, report: dict[str, Any]) -> str:
    normalized = report['statistics'][name]['normalized']
    return name if normalized is None else f'{name} (distance {normalized:.2f})'


def _histograms(ax: Any, name: str, stats: dict[str, SetStatistics], report: dict[str, Any],
                log_x: bool = False) -> None:
    values = {role: s.values[name] for role, s in stats.items()}
    pooled = np.concatenate(list(values.values()))
    if not pooled.size:
        ax.set_title(f'{name}: no values')
        return
    lo, hi = float(pooled.min()), float(pooled.max())
    if log_x:
        bins = np.geomspace(max(lo, 1e-6), max(hi, lo * 1.01, 2e-6), BINS + 1)
        ax.set_xscale('log')
    elif name == 'objects_per_image':  # counts: one bin per count
        bins = np.arange(lo - 0.5, hi + 1.5)
    else:
        bins = np.linspace(lo, hi if hi > lo else lo + 1, BINS + 1)
    for role, v in values.items():
        ax.hist(v, bins=bins, histtype='step', density=True, linewidth=1.6, color=COLOURS[role],
                label=f'{role} (n={v.size})')
    unit = {**IMAGE_STATISTICS, **BOX_STATISTICS}[name][0]
    ax.set(title=_title(name, report), xlabel=unit, ylabel='density')
    ax.legend(fontsize=7)


def write_plots(out: Path, report: dict[str, Any], stats: dict[str, SetStatistics]) -> list[Path]:
    """detection.png, images.png, colour.png, boxes.png into ``out``."""
    written = []
    # Per-class AP, sim against real, with the two mAPs first.
    sim, real = report['sets']['sim'], report['sets']['real']
    names = ['mAP', 'mAP@.5', *sim['per_class_AP']]
    heights = {role: [s['mAP'], s['mAP50'], *(np.nan if v is None else v for v in s['per_class_AP'].values())]
               for role, s in (('sim', sim), ('real', real))}
    fig, ax = plt.subplots(figsize=(max(8, 0.7 * len(names)), 4.5), dpi=100)
    x = np.arange(len(names))
    for k, role in enumerate(('sim', 'real')):
        ax.bar(x + (k - 0.5) * 0.4, heights[role], 0.4, color=COLOURS[role], label=role)
    ax.set_xticks(x, names, rotation=45, ha='right')
    ax.set(ylim=(0, 1.05), ylabel='AP@[.5:.95]',
           title=f"{Path(report['bundle']).name}: drop mAP {report['drop']['mAP']:+.3f}, "
                 f"mAP@.5 {report['drop']['mAP50']:+.3f}")
    ax.grid(axis='y', alpha=0.3)
    ax.legend()
    written.append(save_figure(fig, out / 'detection.png'))

    fig, axes = plt.subplots(1, len(IMAGE_STATISTICS), figsize=(4 * len(IMAGE_STATISTICS), 3.6), dpi=100)
    for ax, name in zip(axes, IMAGE_STATISTICS, strict=True):
        _histograms(ax, name, stats, report, log_x=name == 'sharpness')
    written.append(save_figure(fig, out / 'images.png'))

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=100)
    for c, (ax, channel) in enumerate(zip(axes, CHANNELS, strict=True)):
        for role, s in stats.items():
            counts = s.colour[c]
            ax.plot(np.arange(256), counts / max(counts.sum(), 1), color=COLOURS[role], label=role)
        ax.set(title=_title(f'colour_{channel}', report), xlabel='channel level', ylabel='fraction of pixels',
               xlim=(0, 255))
        ax.legend(fontsize=7)
    written.append(save_figure(fig, out / 'colour.png'))

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), dpi=100)
    _histograms(axes[0], 'box_area', stats, report, log_x=True)
    _histograms(axes[1], 'box_aspect', stats, report, log_x=True)
    _histograms(axes[2], 'objects_per_image', stats, report)
    frequency = report['class_frequency']
    classes = list(frequency['sim'])
    x = np.arange(len(classes))
    for k, role in enumerate(('sim', 'real')):
        counts = np.array([frequency[role][n] for n in classes], np.float64)
        axes[3].bar(x + (k - 0.5) * 0.4, counts / max(counts.sum(), 1), 0.4, color=COLOURS[role], label=role)
    axes[3].set_xticks(x, classes, rotation=45, ha='right')
    axes[3].set(title=f"class frequency (total variation {frequency['total_variation']:.2f})",
                ylabel='fraction of boxes')
    axes[3].legend(fontsize=7)
    written.append(save_figure(fig, out / 'boxes.png'))
    return written


def _number(value: float | None, digits: int = 4) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def _signed(value: float | None) -> str:
    return '-' if value is None else f'{value:+.4f}'


def write_markdown(path: Path, report: dict[str, Any]) -> Path:
    sim, real, drop = report['sets']['sim'], report['sets']['real'], report['drop']
    lines = [
        f"# Sim-to-real gap: `{Path(report['bundle']).name}`", '',
        f"* sim: `{sim['path']}` ({sim['images']} images, {sim['data']['boxes']} boxes)",
        f"* real: `{real['path']}` ({real['images']} images, {real['data']['boxes']} boxes)",
        f"* bundle `{report['bundle']}`, {report['runtime']}, scores >= {report['score_threshold']}", '',
        '## Detection', '',
        '| metric | sim | real | drop |', '| --- | --- | --- | --- |',
        f"| mAP@[.5:.95] | {sim['mAP']:.4f} | {real['mAP']:.4f} | {drop['mAP']:+.4f} |",
        f"| mAP@.5 | {sim['mAP50']:.4f} | {real['mAP50']:.4f} | {drop['mAP50']:+.4f} |", '',
        '| class | AP sim | AP real | drop | AP50 sim | AP50 real | drop |',
        '| --- | --- | --- | --- | --- | --- | --- |',
    ]
    for name, ap in sim['per_class_AP'].items():
        lines.append(f"| {name} | {_number(ap)} | {_number(real['per_class_AP'][name])} | "
                     f"{_signed(drop['per_class_AP'][name])} | {_number(sim['per_class_AP50'][name])} | "
                     f"{_number(real['per_class_AP50'][name])} | {_signed(drop['per_class_AP50'][name])} |")
    for role, missing in report['classes_without_ground_truth'].items():
        if missing:
            lines.append(f"\nNo ground truth in the {role} set for {', '.join(missing)}: no AP there, and "
                         'the two mAPs average over different classes.')
    lines += ['', '![per-class AP](detection.png)', '', '## Images and labels, largest shift first', '',
              'distance: Wasserstein distance between the two sets over the pooled standard deviation '
              '(0 = same distribution; 1 = shifted by a typical spread; about 2 = no overlap at all).', '',
              '| statistic | unit | sim mean | real mean | sim p5-p95 | real p5-p95 | Wasserstein '
              '| distance |',
              '| --- | --- | --- | --- | --- | --- | --- | --- |']
    statistics = report['statistics']
    for name in report['largest_shifts'] + [n for n in statistics if n not in report['largest_shifts']]:
        s = statistics[name]
        lines.append(f"| {name} | {s['unit']} | {_number(s['sim']['mean'], 3)} | "
                     f"{_number(s['real']['mean'], 3)} | "
                     f"{_number(s['sim']['p5'], 3)}-{_number(s['sim']['p95'], 3)} | "
                     f"{_number(s['real']['p5'], 3)}-{_number(s['real']['p95'], 3)} | "
                     f"{_number(s['wasserstein'], 4)} | **{_number(s['normalized'], 2)}** |")
    frequency = report['class_frequency']
    lines += ['', f"Class frequency: total variation distance {frequency['total_variation']:.3f} "
              '(0 = same mix of classes, 1 = none in common).', '', '## What to do first', '']
    for name in report['largest_shifts'][:3]:
        s = statistics[name]
        if (s['normalized'] or 0) > 0:
            lines.append(f"* **{name}** ({s['meaning']}; sim {_number(s['sim']['mean'], 3)}, real "
                         f"{_number(s['real']['mean'], 3)}, distance {s['normalized']:.2f}): "
                         f"{REMEDIES[name][s['real']['mean'] > s['sim']['mean']]}")
    if lines[-1] == '':
        lines.append('No shift: the two sets are alike in every statistic measured.')
    lines += ['', '![image statistics](images.png)', '', '![colour](colour.png)', '',
              '![boxes](boxes.png)', '',
              'Per set: `sim/` and `real/` hold perception-eval\'s `eval.json`, `pr_curve.png` and '
              'annotated frames.', '']
    atomic.write_text(path, '\n'.join(lines))
    return path
