"""One entry point for every annotation format: ``load_dataset(path)``.

``path`` may be a directory written by ``perception-synth`` (holding all three formats), a COCO
JSON file, a ``metadata.json`` (one object per sample), a KITTI/TAO directory (as Replicator's
KittiWriter writes it), or a Replicator BasicWriter output directory (``bounding_box_2d_*.npy``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .annotations import ClassMap, DatasetError, LabelledSet, apply_class_map, load_class_map
from .coco_format import read_coco
from .kitti_format import LABEL_DIRS, camera_folders, read_kitti
from .metadata_format import read_metadata
from .replicator_format import find_box_type, read_replicator

FORMAT_ALIASES = {'lesson': 'metadata'}  # old name (after the source lesson) -> current name
FORMATS = ('auto', 'coco', 'kitti', 'metadata', 'replicator', *FORMAT_ALIASES)
COCO_FILE = 'coco_instances.json'
# Replicator's CocoWriter: coco_annotations_<dataset_id>.json in its output_dir, image file_names
# relative to that folder (<render product>/rgb_<camera>_<dataset_id>.<frame>.png).
COCO_WRITER_GLOB = 'coco_annotations_*.json'
METADATA_FILE = 'metadata.json'


def detect_format(path: Path) -> tuple[str, Path]:
    """(format, the file or directory to read) for a data set path."""
    if path.is_dir():
        if (path / COCO_FILE).is_file():
            return 'coco', path / COCO_FILE
        written = sorted(path.glob(COCO_WRITER_GLOB))
        if len(written) > 1:
            raise DatasetError(f'{path}: several CocoWriter files ({", ".join(p.name for p in written)}); '
                               'point --data at one of them')
        if written:
            return 'coco', written[0]
        if (path / METADATA_FILE).is_file():
            return 'metadata', path / METADATA_FILE
        if camera_folders(path):
            return 'kitti', path
        if find_box_type(path) is not None:
            return 'replicator', path
        raise DatasetError(f'{path}: no {COCO_FILE}, {METADATA_FILE}, KITTI label folder '
                           f'({", ".join(LABEL_DIRS)}) or Replicator BasicWriter '
                           'bounding_box_2d_tight_*.npy / bounding_box_2d_loose_*.npy inside')
    if path.suffix == '.json' and path.is_file():
        try:
            with open(path, encoding='utf-8') as f:
                head = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f'{path}: not a readable JSON file: {exc}') from exc
        if isinstance(head, dict) and 'annotations' in head:
            return 'coco', path
        if isinstance(head, dict) and 'samples' in head:
            return 'metadata', path
        raise DatasetError(f'{path}: neither COCO (annotations) nor metadata.json (samples)')
    raise DatasetError(f'{path}: no such data set (a directory or a .json annotation file)')


def load_dataset(path: str | Path, format: str = 'auto', classes: Sequence[str] | None = None, *,
                 max_occlusion: float | None = None,
                 class_map: str | Path | ClassMap | None = None) -> LabelledSet:
    """Read a data set; ``classes`` fixes the class list (others become issues);
    ``max_occlusion`` drops Replicator boxes whose occlusionRatio is above it (other formats
    carry no ratio); ``class_map`` (a YAML file or a dict ``{name: our_name or None}``) renames,
    merges and drops classes before ``classes`` applies, for every format."""
    if class_map is not None:
        mapping = class_map if isinstance(class_map, dict) else load_class_map(class_map)
        # Read every name as the files spell it; the map and then the class list decide.
        return apply_class_map(load_dataset(path, format, None, max_occlusion=max_occlusion),
                               mapping, classes)
    path = Path(path)
    if format not in FORMATS:
        raise DatasetError(f'{path}: unknown format {format!r}; one of {list(FORMATS)}')
    format = FORMAT_ALIASES.get(format, format)
    if format == 'auto':
        format, path = detect_format(path)
    elif path.is_dir() and format not in ('kitti', 'replicator'):
        path = path / (COCO_FILE if format == 'coco' else METADATA_FILE)
    if format == 'coco':
        return read_coco(path, classes)
    if format == 'metadata':
        return read_metadata(path, classes)
    if format == 'replicator':
        return read_replicator(path, classes, max_occlusion=max_occlusion)
    return read_kitti(path, classes)
