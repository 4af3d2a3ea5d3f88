"""KITTI object labels (as Replicator's KittiWriter and NVIDIA TAO use): write and read.

One text file per image, one object per line::

    class truncated occluded alpha x1 y1 x2 y2 height width length x y z rotation_y [score]

Only the class and the 2D box matter for a 2D detector. Label and image folders are found
under the data set directory by the usual names (TAO ``labels``/``images``, KITTI
``label_2``/``image_2``, Replicator ``object_detection``/``rgb``); images pair with labels by
file stem. ``DontCare`` regions are not objects and are ignored.

Replicator's KittiWriter (omni.replicator.core; read from copies of its ``kitti.py`` that carry
its docstring and ``_write_object_detection``, see the README) writes one folder per render
product, named after the camera prim, holding ``rgb/<frame>.png`` and
``object_detection/<frame>.txt`` (``image_02``/``label_02`` with ``use_kitti_dir_names``), so
such camera folders one level down are read too. That writer leaves out boxes under 25 pixels
high and boxes not wholly inside the image: what it did not write cannot be read back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .annotations import DatasetError, LabelledSet, SetBuilder

LABEL_DIRS = ('labels', 'label_2', 'label_02', 'object_detection')
IMAGE_DIRS = ('images', 'image_2', 'image_02', 'rgb')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')
FIELDS = 15


def occlusion_level(visibility: float) -> int:
    """KITTI's occlusion code: 0 fully visible, 1 partly, 2 largely occluded."""
    return 0 if visibility >= 0.95 else 1 if visibility >= 0.5 else 2


def label_text(boxes: Sequence) -> str:
    """The label file for these synth.Box objects."""
    lines = [f'{b.class_name} {b.truncated:.2f} {occlusion_level(b.visibility)} 0.00 '
             f'{b.x1:.2f} {b.y1:.2f} {b.x2:.2f} {b.y2:.2f} 0.00 0.00 0.00 0.00 0.00 0.00 0.00'
             for b in boxes]
    return ''.join(line + '\n' for line in lines)


def _find(root: Path, names: Sequence[str], what: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise DatasetError(f'{root}: no {what} folder (looked for {", ".join(names)})')


def _image_for(images: Path, stem: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        candidate = images / (stem + suffix)
        if candidate.exists():
            return candidate
    return images / (stem + IMAGE_SUFFIXES[0])  # missing: reported by the builder with this name


def has_labels(folder: Path) -> bool:
    return any((folder / d).is_dir() for d in LABEL_DIRS)


def camera_folders(root: Path) -> list[Path]:
    """The data set folder itself, or (KittiWriter, several render products) its camera folders."""
    if has_labels(root):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and has_labels(p)) if root.is_dir() else []


def read_kitti(directory: str | Path, classes: Sequence[str] | None = None) -> LabelledSet:
    root = Path(directory)
    builder = SetBuilder(str(root), 'kitti', classes)
    pairs = []
    for camera in camera_folders(root) or [root]:
        labels, images = _find(camera, LABEL_DIRS, 'label'), _find(camera, IMAGE_DIRS, 'image')
        found = sorted(labels.glob('*.txt'))
        if not found:
            raise DatasetError(f'{labels}: no .txt label files')
        pairs += [(label_file, images) for label_file in found]
    for label_file, images in pairs:
        if not builder.add_image(label_file, _image_for(images, label_file.stem), str(label_file)):
            continue
        try:
            lines = label_file.read_text(encoding='utf-8').splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            builder.issue(str(label_file), f'unreadable: {exc}')
            continue
        for number, line in enumerate(lines, start=1):
            where = f'{label_file}:{number}'
            fields = line.split()
            if not fields or fields[0] == 'DontCare':
                continue
            if len(fields) not in (FIELDS, FIELDS + 1):
                builder.issue(where, f'expected {FIELDS} fields, got {len(fields)}')
                continue
            try:
                box = [float(v) for v in fields[4:8]]
            except ValueError:
                builder.issue(where, f'box fields are not numbers: {fields[4:8]}')
                continue
            builder.add_box(label_file, fields[0], box, where)
    return builder.build()
