"""Isaac Sim Replicator's BasicWriter output, read as the writer leaves it.

Per frame ``NNNN`` (``frame_padding`` digits, after an optional sequence id), in one folder::

    rgb_NNNN.png                                   RGBA image (the alpha channel is ignored)
    bounding_box_2d_tight_NNNN.npy                 structured array, one row per box
    bounding_box_2d_tight_labels_NNNN.json         {"<semanticId>": {"class": "name[,name...]"}}
    bounding_box_2d_tight_prim_paths_NNNN.json     prim path per row (not needed for training)

and the same for ``bounding_box_2d_loose``. The array's fields are ``semanticId`` (uint32),
``x_min``, ``y_min``, ``x_max``, ``y_max`` (int32) and, in the plain (not ``_fast``) annotators,
``occlusionRatio`` (float32: 0 visible .. 1 hidden; -1 where a prim has labelled children, so
unknown). Semantic ids are per frame: the labels file of the same frame names them.

With several render products the writer puts each in its own folder (``RenderProduct_*/`` or a
camera name), optionally with one folder per annotator (``.../rgb/rgb_NNNN.png``,
``.../bounding_box_2d_tight/bounding_box_2d_tight_NNNN.npy``); every such folder under the data
set directory is found.

Box corners: the annotator reports the first and the last pixel the object covers (a one-pixel
object has ``x_min == x_max``), so the trainer's edge coordinates are ``x_min, y_min, x_max + 1,
y_max + 1``. ``BACKGROUND`` and ``UNLABELLED`` rows are not objects and are dropped.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .annotations import DatasetError, LabelledSet, SetBuilder

FORMAT = 'replicator'
BOX_TYPES = ('tight', 'loose')
BOX_FIELDS = ('semanticId', 'x_min', 'y_min', 'x_max', 'y_max')
OCCLUSION_FIELD = 'occlusionRatio'
NOT_OBJECTS = frozenset({'BACKGROUND', 'UNLABELLED'})
IMAGE_PREFIX = 'rgb'
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')
# x_max/y_max name the last covered pixel; the trainer's x2/y2 are the edge after it.
LAST_PIXEL_TO_EDGE = 1


def _box_files(root: Path, box_type: str) -> list[Path]:
    stem = re.compile(rf'bounding_box_2d_{box_type}_(?!labels_|prim_paths_)(.+)\.npy$')
    return sorted(p for p in root.rglob(f'bounding_box_2d_{box_type}_*.npy') if stem.match(p.name))


def find_box_type(root: Path) -> str | None:
    """The box annotator a BasicWriter folder holds (tight preferred), or None if none."""
    for box_type in BOX_TYPES:
        pattern = f'bounding_box_2d_{box_type}_*.npy'
        if next(iter(root.rglob(pattern)), None) is not None:
            return box_type
    return None


def _frame_of(npy: Path, box_type: str) -> str:
    return npy.stem[len(f'bounding_box_2d_{box_type}_'):]


def _image_for(npy: Path, box_type: str, frame: str) -> Path:
    """rgb_<frame> beside the array, or in the camera folder's rgb/ when annotators have folders."""
    camera = npy.parent.parent if npy.parent.name == f'bounding_box_2d_{box_type}' else npy.parent
    for folder in (npy.parent, camera, camera / IMAGE_PREFIX):
        for suffix in IMAGE_SUFFIXES:
            candidate = folder / f'{IMAGE_PREFIX}_{frame}{suffix}'
            if candidate.is_file():
                return candidate
    return camera / f'{IMAGE_PREFIX}_{frame}{IMAGE_SUFFIXES[0]}'  # missing: the builder names it


def _pick_label(labels: str, classes: Sequence[str]) -> str:
    """A prim with several labels ('cup,mug'): the one the class list knows, else the first."""
    names = [n.strip() for n in labels.split(',') if n.strip()]
    for name in names:
        if name in classes:
            return name
    return names[0] if names else ''


def _read_labels(path: Path) -> dict[str, str] | str:
    try:
        document = json.loads(path.read_text(encoding='utf-8'))
    except FileNotFoundError:
        return f'no labels file {path.name} beside it: semantic ids cannot be named'
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f'labels file {path} is not readable JSON: {exc}'
    if not isinstance(document, dict):
        return f'labels file {path}: expected {{"<semanticId>": {{"class": "name"}}}}'
    found = {}
    for key, value in document.items():
        if isinstance(value, dict) and isinstance(value.get('class'), str):
            found[str(key)] = value['class']
        elif isinstance(value, str):  # older writers stored the label string directly
            found[str(key)] = value
    return found


def _read_boxes(path: Path) -> np.ndarray | str:
    try:
        rows = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return f'unreadable: {exc}'
    names = rows.dtype.names or ()
    missing = [f for f in BOX_FIELDS if f not in names]
    if missing or rows.ndim != 1:
        return (f'expected a 1-D structured array with fields {list(BOX_FIELDS)} (+ {OCCLUSION_FIELD}), '
                f'got dtype {rows.dtype} shape {rows.shape}')
    return rows


def read_replicator(directory: str | Path, classes: Sequence[str] | None = None, *,
                    max_occlusion: float | None = None, box_type: str | None = None) -> LabelledSet:
    """Read a BasicWriter output folder; ``max_occlusion`` drops rows more occluded than it.

    Without ``classes`` the class list is every label found, sorted; with it, other labels are
    reported once each with their box count."""
    root = Path(directory)
    if not root.is_dir():
        raise DatasetError(f'{root}: not a directory')
    box_type = box_type or find_box_type(root)
    if box_type not in BOX_TYPES:
        raise DatasetError(f'{root}: no bounding_box_2d_tight_*.npy or bounding_box_2d_loose_*.npy '
                           'files (BasicWriter with bounding_box_2d_tight=True)')
    files = _box_files(root, box_type)
    if not files:
        raise DatasetError(f'{root}: no bounding_box_2d_{box_type}_*.npy files')
    builder = SetBuilder(str(root), FORMAT, classes)
    known = list(classes or [])
    found: list[tuple[Path, str, list[float], str]] = []
    for npy in files:
        frame = _frame_of(npy, box_type)
        if not builder.add_image(npy, _image_for(npy, box_type, frame), str(npy)):
            continue
        rows = _read_boxes(npy)
        if isinstance(rows, str):
            builder.issue(str(npy), rows)
            continue
        if not len(rows):
            continue
        labels = _read_labels(npy.with_name(f'bounding_box_2d_{box_type}_labels_{frame}.json'))
        if isinstance(labels, str):
            builder.issue(str(npy), labels)
            continue
        occlusion = rows[OCCLUSION_FIELD] if OCCLUSION_FIELD in rows.dtype.names else None
        for i, row in enumerate(rows):
            where = f'{npy}: row {i}'
            semantic = str(int(row['semanticId']))
            if semantic not in labels:
                builder.issue(where, f'semanticId {semantic} is not in '
                                     f'bounding_box_2d_{box_type}_labels_{frame}.json')
                continue
            name = _pick_label(labels[semantic], known)
            if not name or name in NOT_OBJECTS:
                continue
            # Negative (labelled children) or NaN ratios are unknown: such rows are kept.
            if max_occlusion is not None and occlusion is not None and occlusion[i] > max_occlusion:
                continue
            box = [float(row['x_min']), float(row['y_min']),
                   float(row['x_max']) + LAST_PIXEL_TO_EDGE, float(row['y_max']) + LAST_PIXEL_TO_EDGE]
            found.append((npy, name, box, where))
    if classes is None:
        builder.declare(sorted({name for _, name, _, _ in found}))
    unknown: Counter[str] = Counter()
    first: dict[str, str] = {}
    for key, name, box, where in found:
        if classes is not None and name not in builder.classes:
            unknown[name] += 1
            first.setdefault(name, where)
            continue
        builder.add_box(key, name, box, where)
    for name, count in sorted(unknown.items()):
        builder.issue(first[name], f'unknown class {name!r}: {count} boxes skipped '
                                   f'(classes: {builder.classes})')
    return builder.build()
