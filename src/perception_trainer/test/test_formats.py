"""perception-synth's three formats and their readers, including bad annotations."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from perception_core.synth import render_scene
from perception_trainer.annotations import DatasetError
from perception_trainer.generate import generate_dataset
from perception_trainer.readers import COCO_FILE, METADATA_FILE, load_dataset


def test_three_formats_hold_the_same_boxes_as_the_renderer(small_set: Path) -> None:
    sets = {fmt: load_dataset(small_set, fmt) for fmt in ('coco', 'kitti', 'lesson')}
    assert load_dataset(small_set).format == 'coco'
    for fmt, labelled in sets.items():
        assert len(labelled.samples) == 12 and not labelled.issues, fmt
        for index, sample in enumerate(labelled.samples):
            scene = render_scene(5, index)
            truth = {(b.class_name, b.x1, b.y1, b.x2, b.y2) for b in scene.boxes}
            found = {(labelled.classes[c], *np.round(b, 2).tolist())
                     for b, c in zip(sample.boxes, sample.labels, strict=True)}
            assert found == truth, (fmt, index)


def test_worker_count_does_not_change_the_data(tmp_path: Path) -> None:
    one = generate_dataset(tmp_path / 'one', 6, seed=8, workers=1, progress=False)
    two = generate_dataset(tmp_path / 'two', 6, seed=8, workers=2, progress=False)
    for name in ('images/000005.jpg', 'labels/000003.txt', COCO_FILE, METADATA_FILE):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_cli_writes_the_formats_replicator_users_have(tmp_path: Path, cli: Callable) -> None:
    out = tmp_path / 'cli'
    cli('generate', '--out', out, '--num-images', 3, '--seed', 2, '--size', '320x240',
        '--classes', 'cup', 'cone', '--workers', 1)
    coco = json.loads((out / COCO_FILE).read_text())
    assert [c['name'] for c in coco['categories']] == ['cup', 'cone']
    assert {i['width'] for i in coco['images']} == {320}
    fields = (out / 'labels' / '000000.txt').read_text().splitlines()[0].split()
    assert len(fields) == 15 and fields[0] in ('cup', 'cone')
    lesson = json.loads((out / METADATA_FILE).read_text())
    assert set(lesson['samples'][0]) == {'image', 'label', 'bbox'}


def _copy(small_set: Path, tmp_path: Path) -> Path:
    target = tmp_path / 'set'
    shutil.copytree(small_set, target)
    return target


def test_ctrl_c_while_rendering_leaves_no_annotations_and_says_so(tmp_path: Path, cli: Callable,
                                                                   popen: Callable) -> None:
    """Ctrl-C reaches perception-synth and its render processes: one message, exit 130, and no
    annotations (an older set's are removed first), so no reader takes the folder for a set."""
    out = tmp_path / 'set'
    cli('generate', '--out', out, '--num-images', 2, '--seed', 1, '--workers', 1)
    assert (out / COCO_FILE).is_file()
    process = popen('generate', '--out', out, '--num-images', 5000, '--seed', 2, '--workers', 2)
    deadline = time.monotonic() + 120
    while len(list((out / 'images').iterdir())) < 20 and time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ''
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130 and 'Traceback' not in output, output[-3000:]
    assert 'perception-synth: interrupted; ' in output and 'of 5000 images rendered' in output
    assert not (out / COCO_FILE).exists() and not (out / METADATA_FILE).exists()


def test_bad_coco_annotations_are_reported_and_skipped(small_set: Path, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    root = _copy(small_set, tmp_path)
    path = root / COCO_FILE
    coco = json.loads(path.read_text())
    anns = coco['annotations']
    anns[0]['bbox'] = [600.0, 400.0, 200.0, 200.0]  # outside the 640x480 image
    anns[1]['bbox'] = [10.0, 10.0, 0.0, 5.0]  # degenerate
    anns[2]['category_id'] = 99  # unknown class
    anns[3].pop('bbox')  # malformed
    (root / 'images' / '000004.jpg').unlink()  # missing image
    (root / 'images' / '000005.jpg').write_bytes(b'not an image')  # unreadable image
    path.write_text(json.dumps(coco))
    with caplog.at_level(logging.WARNING):
        labelled = load_dataset(root)
    text = '\n'.join(labelled.issues)
    assert f'{path}: annotations[0]: box' in text and 'outside the 640x480 image' in text
    assert 'annotations[1]: degenerate box' in text
    assert "annotations[2]: unknown category_id 99" in text
    assert 'annotations[3]: needs a bbox' in text
    assert 'images[4]: image' in text and 'does not exist' in text
    assert 'images[5]: image' in text and 'unreadable' in text
    assert len(labelled.samples) == 10  # every other image is kept
    total = sum(len(s.labels) for s in labelled.samples)
    assert total == len(anns) - 4 - sum(1 for a in anns if a['image_id'] in (5, 6))
    assert 'skipped:' in caplog.text


def test_bad_kitti_lines_name_file_and_line(small_set: Path, tmp_path: Path) -> None:
    root = _copy(small_set, tmp_path)
    label = root / 'labels' / '000000.txt'
    lines = label.read_text().splitlines()
    lines[0] = 'cup 0 0 0 10 10 20'  # too few fields
    lines[1] = lines[1].replace(lines[1].split()[4], 'abc', 1)  # not a number
    lines.append('chair 0.00 0 0.00 1 1 30 30 0 0 0 0 0 0 0')  # unknown with a fixed class list
    lines.append('DontCare -1 -1 -10 1 1 30 30 -1 -1 -1 -1000 -1000 -1000 -10')  # ignored, no issue
    label.write_text('\n'.join(lines) + '\n')
    labelled = load_dataset(root, 'kitti', classes=load_dataset(small_set).classes)
    issues = '\n'.join(labelled.issues)
    assert f'{label}:1: expected 15 fields, got 7' in issues
    assert f'{label}:2: box fields are not numbers' in issues
    assert f"{label}:{len(lines) - 1}: unknown class 'chair'" in issues
    assert len(labelled.issues) == 3


def test_lesson_metadata_labels_by_name_or_index(tmp_path: Path, small_set: Path) -> None:
    shutil.copytree(small_set / 'images', tmp_path / 'images')
    doc = {'classes': ['cup', 'ball'], 'bbox_format': 'xywh', 'samples': [
        {'image': 'images/000000.jpg', 'label': 1, 'bbox': [10, 20, 30, 40]},
        {'image': 'images/000000.jpg', 'label': 'cup', 'bbox': [100, 100, 10, 10]},
        {'image': 'images/000001.jpg', 'label': 7, 'bbox': [1, 1, 5, 5]},
        {'image': 'images/missing.jpg', 'label': 'cup', 'bbox': [1, 1, 5, 5]}]}
    (tmp_path / METADATA_FILE).write_text(json.dumps(doc))
    labelled = load_dataset(tmp_path / METADATA_FILE)
    first = labelled.samples[0]
    assert first.boxes.tolist() == [[10, 20, 40, 60], [100, 100, 110, 110]]
    assert [labelled.classes[c] for c in first.labels] == ['ball', 'cup']
    issues = '\n'.join(labelled.issues)
    assert 'samples[2]: label index 7 has no entry in classes' in issues
    assert 'samples[3]: image' in issues and 'does not exist' in issues


def test_a_set_without_usable_samples_is_an_error_before_training(tmp_path: Path) -> None:
    (tmp_path / METADATA_FILE).write_text(json.dumps({'samples': [
        {'image': 'nowhere.png', 'label': 'cup', 'bbox': [0, 0, 4, 4]}]}))
    with pytest.raises(DatasetError, match='no usable image'):
        load_dataset(tmp_path)
    (tmp_path / COCO_FILE).write_text('{"images": [')
    with pytest.raises(DatasetError, match=f'{tmp_path / COCO_FILE}: not a readable JSON file'):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match='no such data set'):
        load_dataset(tmp_path / 'absent')


def test_metadata_is_read_under_its_name_and_its_old_name_lesson(small_set: Path) -> None:
    found = load_dataset(small_set / METADATA_FILE)
    assert found.format == 'metadata'
    for name in ('metadata', 'lesson'):
        labelled = load_dataset(small_set, name)
        assert labelled.format == 'metadata' and labelled.classes == found.classes
        assert [s.boxes.tolist() for s in labelled.samples] == [s.boxes.tolist() for s in found.samples]
    with pytest.raises(DatasetError, match="unknown format 'lessons'"):
        load_dataset(small_set, 'lessons')
