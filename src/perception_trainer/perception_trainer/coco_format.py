"""COCO instances JSON (what Replicator's COCO writer and most tools produce): write and read.

Image ``file_name`` is resolved against ``images_dir`` when given, else against the JSON file's
directory and its ``images/`` folder. Crowd annotations are not instances and are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from perception_core import atomic

from .annotations import DatasetError, ImageRecord, LabelledSet, SetBuilder


def write_coco(path: str | Path, classes: Sequence[str], records: Sequence[ImageRecord],
               info: dict | None = None) -> Path:
    category = {name: i + 1 for i, name in enumerate(classes)}
    images, annotations = [], []
    for image_id, record in enumerate(records, start=1):
        images.append({'id': image_id, 'file_name': record.file_name, 'width': record.width,
                       'height': record.height})
        for box in record.boxes:
            w, h = box.x2 - box.x1, box.y2 - box.y1
            annotations.append({'id': len(annotations) + 1, 'image_id': image_id,
                                'category_id': category[box.class_name], 'bbox': [box.x1, box.y1, w, h],
                                'area': w * h, 'iscrowd': 0})
    document = {'info': info or {}, 'images': images, 'annotations': annotations,
                'categories': [{'id': i, 'name': n, 'supercategory': 'object'} for n, i in category.items()]}
    return atomic.write_json(path, document)


def _load(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f'{path}: not a readable JSON file: {exc}') from exc
    if not isinstance(document, dict):
        raise DatasetError(f'{path}: a COCO file is a JSON object')
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(document.get(key), list):
            raise DatasetError(f'{path}: {key}: missing or not a list')
    return document


def _image_path(file_name: str, json_dir: Path, images_dir: Path | None) -> Path:
    if images_dir is not None:
        return images_dir / file_name
    direct = json_dir / file_name
    return direct if direct.exists() else json_dir / 'images' / file_name


def read_coco(path: str | Path, classes: Sequence[str] | None = None,
              images_dir: str | Path | None = None) -> LabelledSet:
    path = Path(path)
    document = _load(path)
    builder = SetBuilder(str(path), 'coco', classes)
    names: dict[object, str] = {}
    for i, cat in enumerate(document['categories']):
        if not isinstance(cat, dict) or not isinstance(cat.get('name'), str) or 'id' not in cat:
            builder.issue(f'{path}: categories[{i}]', 'needs an id and a name')
            continue
        names[cat['id']] = cat['name']
    builder.declare(list(names.values()))
    folder = Path(images_dir) if images_dir is not None else None
    for i, entry in enumerate(document['images']):
        where = f'{path}: images[{i}]'
        if not isinstance(entry, dict) or not isinstance(entry.get('file_name'), str) or 'id' not in entry:
            builder.issue(where, 'needs an id and a file_name')
            continue
        builder.add_image(entry['id'], _image_path(entry['file_name'], path.parent, folder), where)
    for i, ann in enumerate(document['annotations']):
        where = f'{path}: annotations[{i}]'
        if not isinstance(ann, dict) or not isinstance(ann.get('bbox'), list) or len(ann['bbox']) != 4:
            builder.issue(where, 'needs a bbox [x, y, width, height]')
            continue
        if ann.get('iscrowd'):
            continue
        if ann.get('category_id') not in names:
            builder.issue(where, f'unknown category_id {ann.get("category_id")!r}')
            continue
        x, y, w, h = ann['bbox']
        if not all(isinstance(v, (int, float)) for v in (x, y, w, h)):
            builder.issue(where, f'bbox must be numbers, got {ann["bbox"]!r}')
            continue
        builder.add_box(ann.get('image_id'), names[ann['category_id']], [x, y, x + w, y + h], where)
    return builder.build()
