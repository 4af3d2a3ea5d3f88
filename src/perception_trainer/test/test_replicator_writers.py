"""Replicator's KittiWriter layout and the class map (--class-map), on files written here.

The KittiWriter fixtures follow that writer's ``_write_object_detection`` / ``_write_rgb`` as
copied (with their docstrings) into public OceanSim writers derived from omni.replicator.core's
``kitti.py`` (the 1.7.9+ changelog's ``use_kitti_dir_names``): one folder per camera prim,
``rgb/<frame>.png`` (RGBA) and ``object_detection/<frame>.txt``, 15 space-separated fields with
the class, ``0.00`` truncation, an occlusion code, ``0.00`` alpha and integer box corners.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception_core.synth import Box
from perception_trainer.annotations import DatasetError, ImageRecord
from perception_trainer.coco_format import write_coco
from perception_trainer.config import load_config
from perception_trainer.readers import detect_format, load_dataset


def kitti_line(name: str, box: tuple[int, int, int, int], occluded: int = 0) -> str:
    x1, y1, x2, y2 = box
    return ' '.join([name, '0.00', str(occluded), '0.00', str(x1), str(y1), str(x2), str(y2)]
                    + ['0.00'] * 7)


def write_camera(root: Path, camera: str, frame: int, lines: list[str], *, kitti_names: bool = False,
                 size: tuple[int, int] = (96, 64)) -> None:
    images = root / camera / ('image_02' if kitti_names else 'rgb')
    labels = root / camera / ('label_02' if kitti_names else 'object_detection')
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    w, h = size
    cv2.imwrite(str(images / f'{frame}.png'), np.full((h, w, 4), 200, np.uint8))
    (labels / f'{frame}.txt').write_text(''.join(line + '\n' for line in lines), encoding='utf-8')


def boxes_of(labelled, stem: str, camera: str) -> list[tuple[str, list[float]]]:
    for s in labelled.samples:
        if s.image.stem == stem and s.image.parent.parent.name == camera:
            return [(labelled.classes[int(c)], [float(v) for v in b])
                    for b, c in zip(s.boxes, s.labels, strict=True)]
    raise AssertionError(f'no sample {camera}/{stem}')


@pytest.fixture
def kitti_writer(tmp_path: Path) -> Path:
    write_camera(tmp_path, 'Camera', 0, [kitti_line('cone', (10, 5, 40, 40)),
                                         kitti_line('box', (50, 20, 90, 60), 1)])
    write_camera(tmp_path, 'Camera', 1, [kitti_line('box', (0, 0, 30, 30))])
    write_camera(tmp_path, 'Camera_01', 0, [kitti_line('crate', (5, 5, 35, 45))], kitti_names=True)
    return tmp_path


def test_kitti_writer_camera_folders_are_detected_and_read_with_exact_boxes(kitti_writer: Path) -> None:
    assert detect_format(kitti_writer) == ('kitti', kitti_writer)
    labelled = load_dataset(kitti_writer)
    assert len(labelled.samples) == 3 and not labelled.issues
    assert boxes_of(labelled, '0', 'Camera') == [('cone', [10, 5, 40, 40]), ('box', [50, 20, 90, 60])]
    assert boxes_of(labelled, '1', 'Camera') == [('box', [0, 0, 30, 30])]
    assert boxes_of(labelled, '0', 'Camera_01') == [('crate', [5, 5, 35, 45])]


def test_kitti_writer_malformed_files_name_file_and_row(kitti_writer: Path) -> None:
    labels = kitti_writer / 'Camera' / 'object_detection'
    (labels / '2.txt').write_text(kitti_line('box', (1, 1, 20, 20)) + '\nbox 0.00 0 0.00 1 2 3\n')
    cv2.imwrite(str(kitti_writer / 'Camera' / 'rgb' / '2.png'), np.zeros((64, 96, 4), np.uint8))
    (labels / '3.txt').write_text(kitti_line('box', (1, 1, 20, 20)) + '\n')  # no 3.png
    labelled = load_dataset(kitti_writer, classes=['box', 'cone', 'crate'])
    issues = '\n'.join(labelled.issues)
    assert f'{labels / "2.txt"}:2: expected 15 fields, got 7' in issues
    assert f'{labels / "3.txt"}: image {kitti_writer / "Camera" / "rgb" / "3.png"} does not exist' in issues
    assert boxes_of(labelled, '2', 'Camera') == [('box', [1, 1, 20, 20])]


def write_map(path: Path, text: str) -> Path:
    path.write_text(text, encoding='utf-8')
    return path


def test_class_map_renames_merges_and_drops_with_counts_once(kitti_writer: Path, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    mapping = write_map(tmp_path / 'map.yaml', 'box: parcel\ncrate: parcel\ncone: null\n')
    labelled = load_dataset(kitti_writer, class_map=mapping)
    assert labelled.classes == ('parcel',)
    assert boxes_of(labelled, '0', 'Camera') == [('parcel', [50, 20, 90, 60])]
    assert boxes_of(labelled, '0', 'Camera_01') == [('parcel', [5, 5, 35, 45])]
    assert labelled.summary()['boxes_per_class'] == {'parcel': 3}
    # Unknown to --classes: one warning naming every such class with its box count.
    mapping = write_map(tmp_path / 'map2.yaml', 'box: parcel\n')
    with caplog.at_level(logging.WARNING):
        labelled = load_dataset(kitti_writer, classes=['parcel'], class_map=mapping)
    warnings = [r.getMessage() for r in caplog.records if 'unknown classes' in r.getMessage()]
    assert len(warnings) == 1
    assert 'cone (1 boxes)' in warnings[0] and 'crate (1 boxes)' in warnings[0]
    assert labelled.summary()['boxes_per_class'] == {'parcel': 2}
    assert sorted(i.split(': ', 1)[1] for i in labelled.issues) == [
        "unknown class 'cone': 1 boxes skipped (classes: ['parcel'])",
        "unknown class 'crate': 1 boxes skipped (classes: ['parcel'])"]


def test_class_map_applies_to_coco_too(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((40, 60, 3), np.uint8))
    box = Box('mug', 2, 3, 20, 30)
    write_coco(tmp_path / 'coco.json', ['mug'], [ImageRecord('a.png', 60, 40, (box,))])
    labelled = load_dataset(tmp_path / 'coco.json', class_map={'mug': 'cup'})
    assert labelled.classes == ('cup',)
    assert [list(map(float, b)) for b in labelled.samples[0].boxes] == [[2, 3, 20, 30]]


def test_a_bad_class_map_names_the_file_and_key(kitti_writer: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"map\.yaml: 'box': expected a class name or null, got 3"):
        load_dataset(kitti_writer, class_map=write_map(tmp_path / 'map.yaml', 'box: 3\n'))
    with pytest.raises(DatasetError, match='no box left after the class map'):
        load_dataset(kitti_writer, class_map={'box': None, 'cone': None, 'crate': None})


def test_the_training_recipe_has_a_class_map_field(tmp_path: Path) -> None:
    cfg = load_config(overrides={'train_data': str(tmp_path), 'class_map': str(tmp_path / 'm.yaml')})
    assert cfg.class_map == tmp_path / 'm.yaml'


def test_coco_writer_output_dir_is_detected_and_read(tmp_path: Path) -> None:
    # omni.replicator.core CocoWriter (writers_default/coco.py, __version__ 0.0.1): one
    # coco_annotations_<dataset_id>.json in output_dir, images under the render product's folder,
    # bbox [x_min, y_min, x_max - x_min, y_max - y_min], category ids from its COCO label table.
    image = 'RenderProduct_Replicator/rgb_Camera_abcdefgh.0000.png'
    (tmp_path / 'RenderProduct_Replicator').mkdir()
    cv2.imwrite(str(tmp_path / image), np.zeros((48, 64, 4), np.uint8))
    document = {'info': {'description': 'COCO dataset created with Omniverse Replicator'}, 'licenses': [],
                'images': [{'file_name': image, 'id': 0, 'height': 48, 'width': 64, 'license': 0}],
                'annotations': [{'id': 0, 'image_id': 0, 'bbox': [4, 6, 20, 30], 'area': 600.0,
                                 'bbox_mode': 1, 'category_id': 3, 'iscrowd': 0, 'segmentation': []}],
                'categories': [{'name': 'car', 'id': 3, 'supercategory': 'vehicle', 'color': [0, 0, 142],
                                'isthing': 1}]}
    (tmp_path / 'coco_annotations_abcdefgh.json').write_text(json.dumps(document), encoding='utf-8')
    assert detect_format(tmp_path) == ('coco', tmp_path / 'coco_annotations_abcdefgh.json')
    labelled = load_dataset(tmp_path, class_map={'car': 'vehicle'})
    assert labelled.classes == ('vehicle',)
    assert [list(map(float, b)) for b in labelled.samples[0].boxes] == [[4, 6, 24, 36]]
    (tmp_path / 'coco_annotations_zzzzzzzz.json').write_text(json.dumps(document), encoding='utf-8')
    with pytest.raises(DatasetError, match='several CocoWriter files'):
        detect_format(tmp_path)
