"""``perception-bag compare``: two answer bags of one input, frame by frame and box by box.

For regression testing on robot bags that have no ground truth: replay one input bag through two
detectors (two models, two engines, fp16 against int8, before and after a change) and compare what
they answered.

Frames are matched by the input frame's header stamp: ``/replay/time_reference`` maps each answer
back to it when ``perception-bag replay`` recorded the bag (the replay restamps every frame, so the
answers' own stamps differ between two replays), otherwise the answers' stamps are taken as they
are (``ros2 bag play`` keeps them). Reading and latency are :mod:`perception.bag.evaluate`'s.

Boxes are matched per frame with the Hungarian algorithm on IoU: first within each class, then the
boxes left over across classes (a *class flip*: the same object, another class); a pair needs IoU
of at least ``match_iou``. A frame *changed* when a box is on one side only, a class flipped, a
matched pair overlaps less than ``same_iou`` or its score moved by more than ``same_score``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perception.bag.messages import DETECTIONS, IMAGE, Detection, detections_of
from perception.bag.reader import Bag, BagError, stamp_ns
from perception_core.atomic import atomic_path, write_text
from perception_core.decode import pairwise_iou
from perception_core.metrics import summary_ms

log = logging.getLogger(__name__)

MATCH_IOU = 0.5     # a pair below this is two different objects
SAME_IOU = 0.95     # a matched pair below this is a moved box: the frame changed
SAME_SCORE = 0.02   # a score moving more than this: the frame changed
WORST_FRAMES = 6    # frames drawn side by side


# --- reading ----------------------------------------------------------------------------------
@dataclass
class Answers:
    """One answer bag: the first answer to each input frame, keyed by the input frame's stamp."""

    path: Path
    frames: dict[int, list[Detection]]
    latency_ns: dict[int, int]
    published: set[int]        # input stamps sent to the detector (the time reference), else answered
    latency_source: str
    unmatched: int = 0         # answers whose stamp maps to no published frame
    damage: str | None = None


def read_answers(path: str | Path, topic: str, image_topic: str) -> Answers:
    """An answer bag; BagError naming the bag and topic when it has no detections topic."""
    from perception.bag.evaluate import _published  # its mapping of answers to input frames
    bag = Bag(path)
    bag.check_topic(topic, DETECTIONS)
    # No ground truth here: with neither a time reference nor the image topic, stamps map to themselves.
    mapping, sent, source = _published(bag, {}, image_topic)
    identity = not mapping
    frames: dict[int, list[Detection]] = {}
    latency: dict[int, int] = {}
    unmatched = 0
    for log_time, msg in bag.messages(topic, DETECTIONS):
        stamp = stamp_ns(msg)
        frame = stamp if identity else mapping.get(stamp)
        if frame is None:
            unmatched += 1
        elif frame not in frames:  # a second answer to one frame is ignored, as evaluate does
            frames[frame] = detections_of(msg)
            if stamp in sent:
                latency[frame] = log_time - sent[stamp]
    published = set(frames) if identity else set(mapping.values())
    return Answers(bag.path, frames, latency, published, source, unmatched, bag.damage)


# --- matching ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    a: Detection
    b: Detection
    iou: float

    @property
    def score_shift(self) -> float:
        return abs(self.b.score - self.a.score)


def _boxes(detections: list[Detection]) -> np.ndarray:
    return np.array([[d.x1, d.y1, d.x2, d.y2] for d in detections], np.float64).reshape(-1, 4)


def _assign(a: list[Detection], b: list[Detection], match_iou: float) -> list[tuple[int, int, float]]:
    """(index in a, index in b, IoU) of the assignment with the largest total IoU, pairs >= match_iou."""
    if not a or not b:
        return []
    iou = pairwise_iou(_boxes(a), _boxes(b))
    # Pairs below the bar count nothing, so that two poor pairs never outweigh one good one.
    try:  # scipy is a workstation tool, not on the robot image (requirements/runtime.txt)
        from scipy.optimize import linear_sum_assignment
    except ImportError as exc:
        raise SystemExit(f'perception-bag compare needs scipy ({exc}); pip install scipy') from exc
    rows, cols = linear_sum_assignment(np.where(iou >= match_iou, iou, 0.0), maximize=True)
    return [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols, strict=True)
            if iou[r, c] >= match_iou]


@dataclass
class FrameComparison:
    """One input frame answered in both bags."""

    stamp: int
    a: list[Detection]
    b: list[Detection]
    pairs: list[Pair] = field(default_factory=list)   # same class
    flips: list[Pair] = field(default_factory=list)   # matched across classes
    only_a: list[Detection] = field(default_factory=list)
    only_b: list[Detection] = field(default_factory=list)
    changed: bool = False

    @property
    def ious(self) -> list[float]:
        return [p.iou for p in self.pairs + self.flips]

    def badness(self) -> tuple:
        """Sort key, worst first: boxes gained or lost, flips, then the least overlap, the score move."""
        return (-(len(self.only_a) + len(self.only_b) + len(self.flips)),
                min(self.ious, default=1.0), -max((p.score_shift for p in self.pairs), default=0.0))


def compare_frame(stamp: int, a: list[Detection], b: list[Detection], *, match_iou: float = MATCH_IOU,
                  same_iou: float = SAME_IOU, same_score: float = SAME_SCORE) -> FrameComparison:
    frame = FrameComparison(stamp, a, b)
    left_a, left_b = set(range(len(a))), set(range(len(b)))
    for name in sorted({d.class_id for d in a} & {d.class_id for d in b}):
        ia = [i for i in range(len(a)) if a[i].class_id == name]
        ib = [j for j in range(len(b)) if b[j].class_id == name]
        for r, c, iou in _assign([a[i] for i in ia], [b[j] for j in ib], match_iou):
            frame.pairs.append(Pair(a[ia[r]], b[ib[c]], iou))
            left_a.discard(ia[r])
            left_b.discard(ib[c])
    ia, ib = sorted(left_a), sorted(left_b)
    for r, c, iou in _assign([a[i] for i in ia], [b[j] for j in ib], match_iou):
        frame.flips.append(Pair(a[ia[r]], b[ib[c]], iou))
        left_a.discard(ia[r])
        left_b.discard(ib[c])
    frame.only_a = [a[i] for i in sorted(left_a)]
    frame.only_b = [b[j] for j in sorted(left_b)]
    frame.changed = bool(frame.only_a or frame.only_b or frame.flips
                         or any(p.iou < same_iou or p.score_shift > same_score for p in frame.pairs))
    return frame


@dataclass
class Comparison:
    a: Answers
    b: Answers
    frames: list[FrameComparison]   # answered in both, in stamp order
    only_a: list[int]               # input stamps answered in A, not in B
    only_b: list[int]
    settings: dict
    metrics: dict = field(default_factory=dict)


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


def compare(a: Answers, b: Answers, *, match_iou: float = MATCH_IOU, same_iou: float = SAME_IOU,
            same_score: float = SAME_SCORE) -> Comparison:
    """Every frame answered in both bags compared; metrics in ``Comparison.metrics``."""
    if not a.published & b.published:
        raise BagError(f'{a.path} and {b.path} share no input frame (first stamps '
                       f'{min(a.published, default=None)} and {min(b.published, default=None)}): '
                       'answers of different input bags?')
    both = sorted(set(a.frames) & set(b.frames))
    frames = [compare_frame(s, a.frames[s], b.frames[s], match_iou=match_iou, same_iou=same_iou,
                            same_score=same_score) for s in both]
    result = Comparison(a, b, frames, sorted(set(a.frames) - set(b.frames)),
                        sorted(set(b.frames) - set(a.frames)),
                        {'match_iou': match_iou, 'same_iou': same_iou, 'same_score': same_score})
    classes = sorted({d.class_id for f in frames for d in f.a + f.b})
    counts = {}
    for name in classes:
        in_a = sum(d.class_id == name for f in frames for d in f.a)
        in_b = sum(d.class_id == name for f in frames for d in f.b)
        counts[name] = {'a': in_a, 'b': in_b, 'change': in_b - in_a}
    ious = [iou for f in frames for iou in f.ious]
    shifts = [p.score_shift for f in frames for p in f.pairs]
    flips: dict[str, int] = {}
    for f in frames:
        for p in f.flips:
            key = f'{p.a.class_id} -> {p.b.class_id}'
            flips[key] = flips.get(key, 0) + 1
    changed = [f.stamp for f in frames if f.changed]
    result.metrics = {
        'frames': {'published_a': len(a.published), 'published_b': len(b.published),
                   'answered_a': len(a.frames), 'answered_b': len(b.frames), 'compared': len(frames),
                   'changed': len(changed),
                   'changed_fraction': _round(len(changed) / len(frames)) if frames else None,
                   'only_a': len(result.only_a), 'only_b': len(result.only_b)},
        'boxes': {'a': sum(len(f.a) for f in frames), 'b': sum(len(f.b) for f in frames),
                  'matched': sum(len(f.pairs) for f in frames),
                  'class_flips': sum(len(f.flips) for f in frames),
                  'only_a': sum(len(f.only_a) for f in frames), 'only_b': sum(len(f.only_b) for f in frames)},
        'counts_per_class': counts,
        'mean_iou': _round(np.mean(ious)) if ious else None,
        'min_iou': _round(min(ious)) if ious else None,
        'class_flips': flips,
        'score_shift': {'mean_abs': _round(np.mean(shifts)) if shifts else None,
                        'max_abs': _round(max(shifts)) if shifts else None},
        'latency': {side: {'source': answers.latency_source,
                           **summary_ms(v / 1e9 for v in answers.latency_ns.values())}
                    for side, answers in (('a', a), ('b', b))},
        'unmatched_answers': {'a': a.unmatched, 'b': b.unmatched},
        'changed_stamps': changed,
        'only_a_stamps': result.only_a,
        'only_b_stamps': result.only_b,
    }
    return result


# --- thresholds -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameLimit:
    """``--max-changed-frames``: a count (``3``) or a fraction of the compared frames (``0.05``, ``5%``)."""

    value: float
    fraction: bool

    def allowed(self, frames: int) -> float:
        return self.value * frames if self.fraction else self.value

    def __str__(self) -> str:
        return f'{self.value:g} of the frames' if self.fraction else f'{self.value:g} frames'


def frame_limit(text: str) -> FrameLimit:
    try:
        if text.strip().isdigit():
            return FrameLimit(float(int(text)), False)
        value = float(text[:-1]) / 100 if text.endswith('%') else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r}: expected a frame count (3) or a fraction (0.05, 5%)'
                                         ) from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f'{text!r}: a fraction lies in 0..1 (a count has no decimal point)')
    return FrameLimit(value, True)


def failures(comparison: Comparison, max_changed: FrameLimit | None, min_iou: float | None,
             max_missing: FrameLimit | None) -> list[str]:
    """What lies beyond the thresholds, in words; empty: within them."""
    m = comparison.metrics
    compared, out = m['frames']['compared'], []
    if max_changed is not None and m['frames']['changed'] > max_changed.allowed(compared):
        out.append(f'{m["frames"]["changed"]} of {compared} frames changed, more than --max-changed-frames '
                   f'{max_changed} allows')
    if max_missing is not None:
        missing = m['frames']['only_a'] + m['frames']['only_b']
        if missing > max_missing.allowed(compared):
            out.append(f'{missing} frames answered in one bag only, more than --max-missing-frames '
                       f'{max_missing} allows')
    if min_iou is not None:
        if m['mean_iou'] is None and m['boxes']['a'] + m['boxes']['b'] > 0:
            out.append(f'no box matched (of {m["boxes"]["a"]} in A and {m["boxes"]["b"]} in B), '
                       f'--min-iou {min_iou:g}')
        elif m['mean_iou'] is not None and m['mean_iou'] < min_iou:
            out.append(f'mean IoU of matched boxes {m["mean_iou"]:.4f} is below --min-iou {min_iou:g}')
    return out


# --- drawing ----------------------------------------------------------------------------------
def _label(rgb: np.ndarray, text: str) -> np.ndarray:
    import cv2
    bar = np.zeros((24, rgb.shape[1], 3), np.uint8)
    cv2.putText(bar, text, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([bar, rgb])


def draw_frames(comparison: Comparison, stamps: list[int], images: str | Path, image_topic: str,
                out: Path) -> dict[int, str]:
    """{stamp: PNG name}: each frame with A's boxes left, B's right (DROPPED where one did not answer)."""
    import cv2

    from perception.bag.annotate import annotate
    from perception.bag.evaluate import FrameResult
    wanted = set(stamps)
    a, b = comparison.a.frames, comparison.b.frames
    classes = sorted({d.class_id for side in (a, b) for s in wanted for d in side.get(s) or []})
    drawn: dict[int, str] = {}
    for _, image in Bag(images).stamped(image_topic, IMAGE):
        stamp = stamp_ns(image)
        if stamp not in wanted:
            continue
        left = annotate(image, FrameResult(stamp, [], a.get(stamp)), classes)
        right = annotate(image, FrameResult(stamp, [], b.get(stamp)), classes)
        gap = np.full((left.shape[0], 4, 3), 255, np.uint8)
        pair = np.hstack([_label(left, f'A {len(a.get(stamp) or [])} boxes'), _label(gap, ''),
                          _label(right, f'B {len(b.get(stamp) or [])} boxes')])
        name = f'frame_{stamp}.png'
        with atomic_path(out / name) as tmp:
            if not cv2.imwrite(str(tmp), cv2.cvtColor(pair, cv2.COLOR_RGB2BGR)):
                raise OSError(f'{out / name}: OpenCV could not write the PNG')
        drawn[stamp] = name
    missing = wanted - set(drawn)
    if missing:
        log.warning('%s: %d compared frame(s) are not on %s (first stamp %d); not drawn', images,
                    len(missing), image_topic, min(missing))
    return drawn


def worst_frames(comparison: Comparison, count: int = WORST_FRAMES) -> list[int]:
    """Stamps of the ``count`` worst changed frames, then frames answered in one bag only."""
    changed = sorted((f for f in comparison.frames if f.changed), key=FrameComparison.badness)
    picks = [f.stamp for f in changed[:count]]
    return picks + (comparison.only_a + comparison.only_b)[:max(0, count - len(picks))]


# --- report -----------------------------------------------------------------------------------
def _frame_record(f: FrameComparison, image: str | None) -> dict:
    return {'stamp': f.stamp, 'a': len(f.a), 'b': len(f.b), 'matched': len(f.pairs),
            'class_flips': [{'a': p.a.class_id, 'b': p.b.class_id, 'iou': _round(p.iou, 4)} for p in f.flips],
            'only_a': [d.class_id for d in f.only_a], 'only_b': [d.class_id for d in f.only_b],
            'min_iou': _round(min(f.ious), 4) if f.ious else None,
            'max_score_shift': _round(max((p.score_shift for p in f.pairs), default=0.0), 4),
            'image': image}


def _fmt(value: float | None, spec: str = '.4f') -> str:
    return '-' if value is None else format(value, spec)


def _count(value: int | None) -> str:
    return 'not answered' if value is None else str(value)


def _ms(latency: dict, key: str) -> str:
    return '-' if latency.get(key) is None else f'{latency[key]:.1f} ms'


def _markdown(c: Comparison, document: dict) -> str:
    m = c.metrics
    frames, boxes = m['frames'], m['boxes']
    lines = ['# Answer bags compared', '', f'- A: `{c.a.path}`', f'- B: `{c.b.path}`',
             f'- detections topic: `{document["topic"]}`', '',
             f'**{"FAIL" if document["failures"] else "PASS"}**'
             + (': ' + '; '.join(document['failures']) if document['failures'] else
                (' (within the thresholds)' if document['thresholds_given'] else ' (no thresholds given)')),
             '', '| | A | B |', '| --- | --- | --- |',
             f'| frames published | {frames["published_a"]} | {frames["published_b"]} |',
             f'| frames answered | {frames["answered_a"]} | {frames["answered_b"]} |',
             f'| answered here only | {frames["only_a"]} | {frames["only_b"]} |',
             f'| boxes (frames answered in both) | {boxes["a"]} | {boxes["b"]} |',
             f'| boxes without a match | {boxes["only_a"]} | {boxes["only_b"]} |',
             f'| latency p50 | {_ms(m["latency"]["a"], "p50_ms")} | {_ms(m["latency"]["b"], "p50_ms")} |',
             f'| latency p99 | {_ms(m["latency"]["a"], "p99_ms")} | {_ms(m["latency"]["b"], "p99_ms")} |',
             '', '| comparison | value |', '| --- | --- |',
             f'| frames answered in both | {frames["compared"]} |',
             f'| frames changed | {frames["changed"]} ({_fmt(frames["changed_fraction"], ".1%")}) |',
             f'| matched boxes (same class) | {boxes["matched"]} |',
             f'| class flips | {boxes["class_flips"]} |',
             f'| mean IoU of matched boxes | {_fmt(m["mean_iou"])} |',
             f'| min IoU of matched boxes | {_fmt(m["min_iou"])} |',
             f'| score shift, mean abs | {_fmt(m["score_shift"]["mean_abs"])} |',
             f'| score shift, max abs | {_fmt(m["score_shift"]["max_abs"])} |']
    lines += ['', '## Boxes per class (frames answered in both)', '', '| class | A | B | change |',
              '| --- | --- | --- | --- |']
    lines += [f'| {name} | {v["a"]} | {v["b"]} | {v["change"]:+d} |'
              for name, v in m['counts_per_class'].items()]
    if m['class_flips']:
        lines += ['', '## Class flips (A -> B)', '', '| flip | boxes |', '| --- | --- |']
        lines += [f'| {k} | {v} |' for k, v in sorted(m['class_flips'].items(), key=lambda kv: -kv[1])]
    lines += ['', '## Worst frames', '']
    if document['drawing']:
        lines += [document['drawing'], '']
    worst = document['worst_frames']
    if worst:
        lines += ['| input stamp | A | B | only A | only B | flips | min IoU | max score shift |',
                  '| --- | --- | --- | --- | --- | --- | --- | --- |']
        for w in worst:
            lines.append(f'| {w["stamp"]} | {_count(w["a"])} | {_count(w["b"])} | '
                         f'{", ".join(w["only_a"]) or "-"} | {", ".join(w["only_b"]) or "-"} | '
                         f'{len(w["class_flips"])} | '
                         f'{_fmt(w["min_iou"])} | {_fmt(w["max_score_shift"])} |')
        lines += [f'\n![{w["stamp"]}]({w["image"]})' for w in worst if w['image']]
    else:
        lines.append('No frame changed.')
    settings = c.settings
    lines += ['', '## Reading this report', '',
              '- Frames are matched by the input frame\'s stamp; boxes by Hungarian IoU matching (IoU >= '
              f'{settings["match_iou"]:g}), within each class first, then across classes (a **class flip**).',
              '- A frame **changed** when a box is in one bag only, a class flipped, a matched pair overlaps '
              f'less than IoU {settings["same_iou"]:g} or its score moved by more than '
              f'{settings["same_score"]:g}.',
              '- A detection right at the score threshold can fall on either side from float rounding alone '
              '(two runtimes of one model): a frame changed by one such box is expected there.',
              f'- Latency: A {m["latency"]["a"]["source"]}; B {m["latency"]["b"]["source"]}.']
    damage = [d for d in (c.a.damage, c.b.damage) if d]
    if damage:
        lines += ['', '## Damaged input', ''] + [f'- {d}' for d in damage]
    return '\n'.join(lines) + '\n'


def write_report(c: Comparison, out_dir: str | Path, *, topic: str, failures_found: list[str],
                 thresholds: dict, images: str | Path | None = None, image_topic: str = '/camera/image_rect',
                 count: int = WORST_FRAMES) -> dict[str, str]:
    """compare.json, compare.md and the worst frames as PNGs in ``out_dir``; {kind: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    picks = worst_frames(c, count)
    drawn: dict[int, str] = {}
    if images is None:
        drawing = 'Not drawn: give `--images INPUT_BAG` (the bag that was replayed) to draw them.'
    else:
        drawn = draw_frames(c, picks, images, image_topic, out) if picks else {}
        drawing = (f'Drawn from `{images}` ({image_topic}): A left, B right; DROPPED where a bag has '
                   'no answer.')
    by_stamp = {f.stamp: f for f in c.frames}
    worst = []
    for stamp in picks:
        if stamp in by_stamp:
            worst.append(_frame_record(by_stamp[stamp], drawn.get(stamp)))
        else:
            side = c.a.frames.get(stamp) or c.b.frames.get(stamp) or []
            only = 'a' if stamp in c.a.frames else 'b'
            worst.append({'stamp': stamp, 'a': len(side) if only == 'a' else None,
                          'b': len(side) if only == 'b' else None, 'matched': 0, 'class_flips': [],
                          'only_a': [], 'only_b': [], 'min_iou': None, 'max_score_shift': None,
                          'answered_only_in': only.upper(), 'image': drawn.get(stamp)})
    document = {'answers_a': str(c.a.path), 'answers_b': str(c.b.path), 'topic': topic,
                'settings': c.settings, 'thresholds': thresholds,
                'thresholds_given': any(v is not None for v in thresholds.values()),
                'failures': failures_found, 'passed': not failures_found, 'metrics': c.metrics,
                'drawing': drawing, 'worst_frames': worst,
                'damage': [d for d in (c.a.damage, c.b.damage) if d]}
    write_text(out / 'compare.json', json.dumps(document, indent=2) + '\n')
    write_text(out / 'compare.md', _markdown(c, document))
    paths = {'json': str(out / 'compare.json'), 'markdown': str(out / 'compare.md')}
    paths.update({f'frame_{s}': str(out / name) for s, name in drawn.items()})
    return paths


# --- command line -----------------------------------------------------------------------------
def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``compare`` subcommand of ``perception-bag``."""
    cmp = subparsers.add_parser('compare', help='two answer bags of one input: changed frames, IoU, class '
                                'flips, score shifts, latency; exit 1 beyond the thresholds')
    cmp.add_argument('answers_a', help='answer bag A (replay, or ros2 bag record), the reference')
    cmp.add_argument('answers_b', help='answer bag B, of the same input')
    cmp.add_argument('--out', required=True, help='report folder (compare.md, compare.json, PNGs)')
    cmp.add_argument('--config', help='deployment YAML for the topic names (default: the built-in defaults)')
    cmp.add_argument('--topic',
                     help='detections topic (default: the deployment\'s ros_integration.output_topic)')
    cmp.add_argument('--images', metavar='INPUT_BAG',
                     help='the replayed input bag, to draw the worst frames side by side (else not drawn)')
    cmp.add_argument('--image-topic',
                     help='image topic of --images (default: the deployment\'s ros_integration.input_topic)')
    cmp.add_argument('--max-changed-frames', type=frame_limit, metavar='N|FRACTION',
                     help='exit 1 when more frames changed: a count (3) or a fraction of the compared '
                     'frames (0.05 or 5%%)')
    cmp.add_argument('--max-missing-frames', type=frame_limit, metavar='N|FRACTION',
                     help='exit 1 when more frames are answered in one bag only')
    cmp.add_argument('--min-iou', type=float, help='exit 1 when the mean IoU of matched boxes is below this')
    cmp.add_argument('--match-iou', type=float, default=MATCH_IOU,
                     help='least IoU for two boxes to be one object (default %(default)s)')
    cmp.add_argument('--same-iou', type=float, default=SAME_IOU,
                     help='a matched pair overlapping less changes its frame (default %(default)s)')
    cmp.add_argument('--same-score', type=float, default=SAME_SCORE,
                     help='a score moving more changes its frame (default %(default)s)')
    cmp.add_argument('--worst', type=int, default=WORST_FRAMES, help='frames to draw (default %(default)s)')
    cmp.set_defaults(run=run)
    return cmp


def _limit(limit: FrameLimit | None) -> dict | None:
    return None if limit is None else {'value': limit.value, 'fraction': limit.fraction}


def run(args: argparse.Namespace) -> int:
    """0: within the thresholds; 1: beyond them; 2: bad input (one line on stderr naming it)."""
    try:
        from perception.bag.cli import _config_values
        from perception.bag.replay import deployment_topics
        topics = deployment_topics(_config_values(args.config))
        topic = args.topic or topics['detections_topic']
        image_topic = args.image_topic or topics['image_topic']
        a = read_answers(args.answers_a, topic, image_topic)
        b = read_answers(args.answers_b, topic, image_topic)
        if args.images is not None:
            Bag(args.images).check_topic(image_topic, IMAGE)
        comparison = compare(a, b, match_iou=args.match_iou, same_iou=args.same_iou,
                             same_score=args.same_score)
        found = failures(comparison, args.max_changed_frames, args.min_iou, args.max_missing_frames)
        thresholds = {'max_changed_frames': _limit(args.max_changed_frames),
                      'max_missing_frames': _limit(args.max_missing_frames), 'min_iou': args.min_iou}
        paths = write_report(comparison, args.out, topic=topic, failures_found=found, thresholds=thresholds,
                             images=args.images, image_topic=image_topic, count=args.worst)
    except (BagError, FileExistsError, ValueError) as exc:
        print(f'perception-bag compare: {exc}', file=sys.stderr)
        return 2
    m = comparison.metrics
    print(f'{m["frames"]["compared"]} frames in both, {m["frames"]["changed"]} changed, '
          f'{m["frames"]["only_a"]} in A only, {m["frames"]["only_b"]} in B only; mean IoU '
          f'{_fmt(m["mean_iou"])}, {m["boxes"]["class_flips"]} class flips, score shift max '
          f'{_fmt(m["score_shift"]["max_abs"])}; report {paths["markdown"]}')
    for failure in found:
        print(f'perception-bag compare: {failure}', file=sys.stderr)
    return 1 if found else 0
