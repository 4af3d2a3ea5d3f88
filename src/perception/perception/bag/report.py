"""The evaluation report: report.json, report.md, latency.png, strip.png and annotated.mp4."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from perception.bag.annotate import write_strip, write_video
from perception.bag.evaluate import Evaluation
from perception_core.atomic import atomic_path, write_text

log = logging.getLogger(__name__)


def _ms(value: float | None) -> str:
    return '-' if value is None else f'{value:.1f} ms'


def summary_rows(metrics: dict, backend: str = '') -> list[tuple[str, str]]:
    """The short table the CLI and the demo print."""
    latency = metrics['latency']
    return [('frames', str(metrics['frames'])),
            ('answered', str(metrics['answered'])),
            ('dropped frames', str(metrics['dropped'])),
            ('detections', str(metrics['detections'])),
            ('mAP@.5', f'{metrics["map50"]:.3f}'),
            ('mAP@.5:.95', f'{metrics["map50_95"]:.3f}'),
            ('latency p50', _ms(latency.get('p50_ms'))),
            ('latency p99', _ms(latency.get('p99_ms'))),
            ('backend', backend or '-')]


def summary_table(metrics: dict, backend: str = '') -> str:
    rows = summary_rows(metrics, backend)
    width = max(len(k) for k, _ in rows)
    return '\n'.join(f'{k.ljust(width)}  {v}' for k, v in rows)


def _latency_plot(evaluation: Evaluation, path: Path) -> Path | None:
    points = [(i, f.latency_ns / 1e6) for i, f in enumerate(evaluation.frames) if f.latency_ns is not None]
    if not points:
        return None
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    index, latency = zip(*points, strict=True)
    fig, (timeline, histogram) = plt.subplots(1, 2, figsize=(11, 3.5), gridspec_kw={'width_ratios': [2, 1]})
    timeline.plot(index, latency, '.', markersize=3)
    dropped = [i for i, f in enumerate(evaluation.frames) if f.answer is None]
    if dropped:
        timeline.plot(dropped, [0] * len(dropped), 'rx', markersize=4, label='dropped')
        timeline.legend(loc='upper right')
    timeline.set_xlabel('frame')
    timeline.set_ylabel('latency (ms)')
    timeline.set_title('Per-frame latency (publish -> answer)')
    histogram.hist(latency, bins=40)
    histogram.set_xlabel('latency (ms)')
    histogram.set_title('Distribution')
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def _markdown(evaluation: Evaluation, metrics: dict, context: dict[str, str], files: dict[str, str]) -> str:
    latency = metrics['latency']
    lines = ['# Replay evaluation', '',
             f'- ground truth: `{evaluation.truth_bag}`',
             f'- answers: `{evaluation.answers_bag}`']
    lines += [f'- {key}: `{value}`' for key, value in context.items()]
    lines += ['', '| metric | value |', '| --- | --- |']
    lines += [f'| {k} | {v} |' for k, v in summary_rows(metrics, context.get('backend', ''))]
    lines += ['', '## Accuracy per class (AP@.5)', '', '| class | AP@.5 |', '| --- | --- |']
    lines += [f'| {name} | {"-" if ap is None else f"{ap:.3f}"} |'
              for name, ap in metrics['ap50_per_class'].items()]
    lines += ['', '## Latency', '', f'Measured as {latency["source"]}.']
    if latency.get('count'):
        lines += ['', f'{latency["count"]} answers: mean {latency["mean_ms"]:.1f} ms, '
                  f'p50 {latency["p50_ms"]:.1f} ms, p90 {latency["p90_ms"]:.1f} ms, '
                  f'p99 {latency["p99_ms"]:.1f} ms, max {latency["max_ms"]:.1f} ms.']
    if 'latency_plot' in files:
        lines += ['', f'![latency]({files["latency_plot"]})']
    lines += ['', '## Frames', '',
              'White: ground truth. Coloured, with class and score: what the detector reported. '
              'DROPPED: published, never answered.']
    if 'strip' in files:
        lines += ['', f'![frames]({files["strip"]})']
    if 'video' in files:
        lines += ['', f'Every frame: [{files["video"]}]({files["video"]})']
    lines += ['', '## Reading this report', '',
              '- **mAP@.5** is COCO average precision at IoU 0.5 over the answered frames (pycocotools); '
              '**mAP@.5:.95** averages IoU 0.5 to 0.95.',
              '- **dropped frames** were published but never answered: the detector skipped them '
              '(rate limit, overload) or they were lost in transport.',
              '- **latency** is end to end, camera message out to detections in, transport both ways '
              'included.']
    if metrics['unmatched_answers']:
        lines += [f'- {metrics["unmatched_answers"]} answers matched no published frame (ignored).']
    if evaluation.damage:
        lines += ['', '## Damaged input', ''] + [f'- {d}' for d in evaluation.damage]
    return '\n'.join(lines) + '\n'


def write_report(evaluation: Evaluation, out_dir: str | Path, *, image_topic: str = '/camera/image_rect',
                 fps: float = 30.0, context: dict[str, str] | None = None, video: bool = True,
                 progress: bool = True) -> dict[str, str]:
    """Write every report file into ``out_dir``; returns {kind: path} of what was written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    context = dict(context or {})
    files: dict[str, str] = {}
    for kind, path in (('latency_plot', _latency_plot(evaluation, out / 'latency.png')),
                       ('strip', write_strip(evaluation, out / 'strip.png', image_topic)),
                       ('video', write_video(evaluation, out / 'annotated.mp4', image_topic, fps, progress)
                        if video else None)):
            if path is not None:
                files[kind] = path.name
    document = {'truth_bag': str(evaluation.truth_bag), 'answers_bag': str(evaluation.answers_bag),
                'context': context, 'metrics': evaluation.metrics, 'damage': evaluation.damage,
                'files': files,
                'frames': [{'stamp': f.stamp, 'answered': f.answer is not None, 'latency_ns': f.latency_ns,
                            'truth': len(f.truth), 'detections': len(f.answer or [])}
                           for f in evaluation.frames]}
    write_text(out / 'report.json', json.dumps(document, indent=2) + '\n')
    write_text(out / 'report.md', _markdown(evaluation, evaluation.metrics, context, files))
    paths = {kind: str(out / name) for kind, name in files.items()}
    paths.update(json=str(out / 'report.json'), markdown=str(out / 'report.md'))
    log.info('report in %s', out)
    return paths
