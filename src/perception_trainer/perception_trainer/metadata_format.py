"""``metadata.json``, one object per sample: write and read (``data_format: metadata``; the old
name ``lesson``, after the source document this workspace started from, still works).

::

    {"classes": ["cup", ...],                 # optional; else names in order of appearance
     "bbox_format": "xyxy",                   # optional: "xyxy" (default) or "xywh", pixels
     "samples": [{"image": "images/000000.jpg", "label": "cup", "bbox": [x1, y1, x2, y2]}, ...]}

A multi-object image is several samples with the same ``image``. ``label`` may be a class name or
an index into ``classes``. Image paths are relative to the file's directory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from perception_core import atomic

from .annotations import DatasetError, ImageRecord, LabelledSet, SetBuilder

FORMAT = 'metadata'
BBOX_FORMATS = ('xyxy', 'xywh')


def write_metadata(path: str | Path, classes: Sequence[str], records: Sequence[ImageRecord]) -> Path:
    samples = [{'image': r.file_name, 'label': b.class_name, 'bbox': [b.x1, b.y1, b.x2, b.y2]}
               for r in records for b in r.boxes]
    return atomic.write_json(path, {'classes': list(classes), 'bbox_format': 'xyxy', 'samples': samples})


def read_metadata(path: str | Path, classes: Sequence[str] | None = None) -> LabelledSet:
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f'{path}: not a readable JSON file: {exc}') from exc
    if not isinstance(document, dict) or not isinstance(document.get('samples'), list):
        raise DatasetError(f'{path}: samples: missing or not a list')
    bbox_format = document.get('bbox_format', 'xyxy')
    if bbox_format not in BBOX_FORMATS:
        raise DatasetError(f'{path}: bbox_format: must be one of {list(BBOX_FORMATS)}, got {bbox_format!r}')
    declared = document.get('classes')
    names_ok = isinstance(declared, list) and all(isinstance(c, str) for c in declared)
    if declared is not None and not names_ok:
        raise DatasetError(f'{path}: classes: must be a list of names')
    builder = SetBuilder(str(path), FORMAT, classes)
    builder.declare(declared or [])
    for i, sample in enumerate(document['samples']):
        where = f'{path}: samples[{i}]'
        if not isinstance(sample, dict) or not isinstance(sample.get('image'), str):
            builder.issue(where, 'needs image, label and bbox')
            continue
        label, bbox = sample.get('label'), sample.get('bbox')
        if isinstance(label, int) and not isinstance(label, bool):
            if not declared or not 0 <= label < len(declared):
                builder.issue(where, f'label index {label} has no entry in classes')
                continue
            label = declared[label]
        if not isinstance(label, str) or not isinstance(bbox, list) or len(bbox) != 4:
            builder.issue(where, 'needs a label (name or index) and a bbox of four numbers')
            continue
        if bbox_format == 'xywh' and all(isinstance(v, (int, float)) for v in bbox):
            bbox = [bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]]
        key = sample['image']
        if not builder.has_image(key) and not builder.add_image(key, path.parent / key, where):
            continue
        builder.add_box(key, label, bbox, where)
    return builder.build()
