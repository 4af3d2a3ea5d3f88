"""Labelled images as every reader returns them, and the checks every reader applies.

A bad annotation (box outside the image or degenerate, unknown class, missing or unreadable
image, malformed entry) becomes an *issue* naming the file and line or index, is logged and
skipped; the rest of the data set is kept. A set with no usable image or no box at all is a
:class:`DatasetError`, raised before any training starts.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from perception_core.coco_metrics import Sample

log = logging.getLogger(__name__)

# Box corners may overshoot the image by this much (float rounding in exporters) before the
# box counts as outside; such boxes are clipped to the image.
EDGE_TOLERANCE = 1.0
ISSUES_LOGGED = 20  # individual issues logged per set; all of them are kept in LabelledSet.issues


class DatasetError(ValueError):
    """A data set that cannot be used at all; the message names the file."""


@dataclass
class LabelledSet:
    classes: tuple[str, ...]
    samples: list[Sample]
    source: str
    format: str
    issues: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        counts = Counter(int(label) for s in self.samples for label in s.labels)
        return {'source': self.source, 'format': self.format, 'images': len(self.samples),
                'boxes': sum(counts.values()), 'issues': len(self.issues),
                'boxes_per_class': {name: counts.get(i, 0) for i, name in enumerate(self.classes)}}


def check_box(box: Sequence[float], width: int, height: int) -> tuple[np.ndarray | None, str]:
    """The box clipped to the image, or None and why it is unusable."""
    if len(box) != 4 or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in box):
        return None, f'box must be four finite numbers, got {list(box)!r}'
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        return None, f'degenerate box {[x1, y1, x2, y2]}'
    t = EDGE_TOLERANCE
    if x1 < -t or y1 < -t or x2 > width + t or y2 > height + t:
        return None, f'box {[x1, y1, x2, y2]} lies outside the {width}x{height} image'
    clipped = np.array([max(x1, 0.0), max(y1, 0.0), min(x2, width), min(y2, height)], np.float32)
    if clipped[2] - clipped[0] < 1.0 or clipped[3] - clipped[1] < 1.0:
        return None, f'box {[x1, y1, x2, y2]} is less than a pixel wide or high'
    return clipped, ''


def image_size(path: Path) -> tuple[int, int] | str:
    """(width, height) from the image header, or why the image cannot be used."""
    if not path.is_file():
        return f'image {path} does not exist'
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as exc:
        return f'image {path} is unreadable: {exc}'


class SetBuilder:
    """Collects images and boxes from one reader, applying the checks and recording issues."""

    def __init__(self, source: str, format: str, classes: Sequence[str] | None) -> None:
        self.source = source
        self.format = format
        self.fixed = classes is not None  # a given class list: other names are unknown classes
        self.classes: list[str] = list(classes or [])
        self.issues: list[str] = []
        self._images: dict[object, tuple[Path, int, int]] = {}
        self._boxes: dict[object, list[tuple[np.ndarray, int]]] = {}

    def issue(self, where: str, message: str) -> None:
        text = f'{where}: {message}'
        if len(self.issues) < ISSUES_LOGGED:
            log.warning('skipped: %s', text)
        self.issues.append(text)

    def declare(self, names: Sequence[str]) -> None:
        """Class names the file itself declares (COCO categories); kept in the file's order."""
        if not self.fixed:
            for name in names:
                if name not in self.classes:
                    self.classes.append(name)

    def class_index(self, name: str, where: str) -> int | None:
        if name in self.classes:
            return self.classes.index(name)
        if self.fixed:
            self.issue(where, f'unknown class {name!r} (classes: {self.classes})')
            return None
        self.classes.append(name)
        return len(self.classes) - 1

    def add_image(self, key: object, path: Path, where: str) -> bool:
        size = image_size(path)
        if isinstance(size, str):
            self.issue(where, size)
            return False
        self._images[key] = (path, size[0], size[1])
        self._boxes.setdefault(key, [])
        return True

    def has_image(self, key: object) -> bool:
        return key in self._images

    def add_box(self, key: object, class_name: str, box: Sequence[float], where: str) -> None:
        if key not in self._images:
            self.issue(where, 'refers to an image that is missing or was skipped')
            return
        _, width, height = self._images[key]
        clipped, why = check_box(box, width, height)
        if clipped is None:
            self.issue(where, why)
            return
        index = self.class_index(class_name, where)
        if index is not None:
            self._boxes[key].append((clipped, index))

    def build(self) -> LabelledSet:
        samples = []
        for key, (path, width, height) in self._images.items():
            found = self._boxes[key]
            boxes = np.array([b for b, _ in found], np.float32).reshape(-1, 4)
            labels = np.array([c for _, c in found], np.int64)
            samples.append(Sample(path, width, height, boxes, labels))
        if len(self.issues) > ISSUES_LOGGED:
            log.warning('%s: %d more issues not shown', self.source, len(self.issues) - ISSUES_LOGGED)
        if not samples:
            raise DatasetError(f'{self.source}: no usable image ({len(self.issues)} issues; first: '
                               f'{self.issues[0] if self.issues else "none"})')
        if not any(len(s.labels) for s in samples):
            raise DatasetError(f'{self.source}: {len(samples)} images but no usable box '
                               f'({len(self.issues)} issues)')
        return LabelledSet(tuple(self.classes), samples, self.source, self.format, self.issues)


@dataclass(frozen=True)
class ImageRecord:
    """One written image and its boxes, as the format writers take them."""

    file_name: str  # relative to the data set directory, '/' separated
    width: int
    height: int
    boxes: tuple  # of synth.Box


ClassMap = dict[str, 'str | None']


def load_class_map(path: str | Path) -> ClassMap:
    """``{source_name: our_name}`` from a YAML file; ``our_name: null`` drops the class."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f'{path}: unreadable class map: {exc}') from exc
    if not isinstance(document, dict) or not document:
        raise DatasetError(f'{path}: a class map is a non-empty mapping {{source_name: our_name or null}}')
    mapping: ClassMap = {}
    for key, value in document.items():
        if not isinstance(key, str) or not (value is None or isinstance(value, str)) or value == '':
            raise DatasetError(f'{path}: {key!r}: expected a class name or null, got {value!r}')
        mapping[key] = value
    return mapping


def apply_class_map(labelled: LabelledSet, mapping: ClassMap,
                    classes: Sequence[str] | None = None) -> LabelledSet:
    """Rename, merge (several names to one) and drop (to null) the set's classes.

    Names the map does not mention keep their name. With ``classes`` the result has that list and
    order and every other name is one issue with its box count; without, the mapped names in the
    order they first appear. Counts are logged once per set, not per box."""
    target = {name: mapping.get(name, name) for name in labelled.classes}
    if classes is not None:
        result = list(classes)
    else:
        result = list(dict.fromkeys(t for t in target.values() if t is not None))
    counts = Counter(int(label) for s in labelled.samples for label in s.labels)
    dropped: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    index: dict[int, int] = {}
    for i, name in enumerate(labelled.classes):
        to = target[name]
        if to is None:
            dropped[name] += counts.get(i, 0)
        elif to not in result:
            unknown[name] += counts.get(i, 0)
        else:
            index[i] = result.index(to)
    samples = []
    for s in labelled.samples:
        keep = np.array([int(label) in index for label in s.labels], bool)
        labels = np.array([index[int(label)] for label in s.labels[keep]], np.int64)
        samples.append(Sample(s.image, s.width, s.height, s.boxes[keep].reshape(-1, 4), labels))
    issues = list(labelled.issues)
    for name, count in sorted(unknown.items()):
        issues.append(f'{labelled.source}: unknown class {name!r}'
                      + (f' (mapped to {target[name]!r})' if target[name] != name else '')
                      + f': {count} boxes skipped (classes: {result})')
    if dropped:
        log.info('%s: class map dropped %s', labelled.source,
                 ', '.join(f'{n} ({c} boxes)' for n, c in sorted(dropped.items())))
    if unknown:
        log.warning('%s: unknown classes skipped: %s (classes: %s)', labelled.source,
                    ', '.join(f'{n} ({c} boxes)' for n, c in sorted(unknown.items())), result)
    if not any(len(s.labels) for s in samples):
        raise DatasetError(f'{labelled.source}: no box left after the class map '
                           f'(dropped {dict(dropped)}, unknown {dict(unknown)}, classes {result})')
    return LabelledSet(tuple(result), samples, labelled.source, labelled.format, issues)
