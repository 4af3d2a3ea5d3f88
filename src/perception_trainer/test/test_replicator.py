"""Replicator BasicWriter output, read as the writer leaves it.

The fixtures follow the BasicWriter / annotator documentation of omni.replicator.core 1.11
(Isaac Sim 4.x, docs.omniverse.nvidia.com/py/replicator/1.11.8, "annotators docs"): per frame
``rgb_NNNN.png`` (RGBA), ``bounding_box_2d_tight_NNNN.npy`` (structured array semanticId <u4,
x_min, y_min, x_max, y_max <i4, occlusionRatio <f4), ``bounding_box_2d_tight_labels_NNNN.json``
(``{"<semanticId>": {"class": "comma,delimited,labels"}}``, ids per frame) and
``bounding_box_2d_tight_prim_paths_NNNN.json``; the same for ``bounding_box_2d_loose``. Boxes
are drawn into the image over the pixels x_min..x_max, y_min..y_max (both inclusive).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from perception_trainer.annotations import DatasetError
from perception_trainer.architectures import ARCHITECTURES
from perception_trainer.config import ConfigError, load_config
from perception_trainer.readers import load_dataset
from perception_trainer.training_data import DetectionDataset

BOX_DTYPE = np.dtype([('semanticId', '<u4'), ('x_min', '<i4'), ('y_min', '<i4'), ('x_max', '<i4'),
                      ('y_max', '<i4'), ('occlusionRatio', '<f4')])
WIDTH, HEIGHT = 160, 120
Row = tuple[int, int, int, int, int, float]  # semanticId, x_min, y_min, x_max, y_max, occlusion


def write_frame(folder: Path, frame: int, rows: Sequence[Row], labels: dict[int, str], *,
                box_type: str = 'tight', image_folder: Path | None = None,
                box_folder: Path | None = None) -> Path:
    """One BasicWriter frame; ``image_folder``/``box_folder`` for per-annotator folders."""
    images = image_folder or folder
    boxes = box_folder or folder
    images.mkdir(parents=True, exist_ok=True)
    boxes.mkdir(parents=True, exist_ok=True)
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    rgba[..., 3] = 255
    for i, (_, x0, y0, x1, y1, _) in enumerate(rows):
        colour = (40 + 50 * i, 200 - 40 * i, 120, 255)
        cv2.rectangle(rgba, (x0, y0), (x1, y1), colour, thickness=-1)  # fills x0..x1 inclusive
    cv2.imwrite(str(images / f'rgb_{frame:04d}.png'), rgba)
    name = f'bounding_box_2d_{box_type}'
    npy = boxes / f'{name}_{frame:04d}.npy'
    np.save(npy, np.array(list(rows), BOX_DTYPE))
    (boxes / f'{name}_labels_{frame:04d}.json').write_text(
        json.dumps({str(k): {'class': v} for k, v in labels.items()}))
    (boxes / f'{name}_prim_paths_{frame:04d}.json').write_text(
        json.dumps([f'/World/object_{r[0]}' for r in rows]))
    return npy


def edges(rows: Sequence[Row]) -> list[list[float]]:
    """The trainer's boxes for these rows: x_max/y_max are last pixels, x2/y2 the edge after."""
    return [[x0, y0, x1 + 1, y1 + 1] for _, x0, y0, x1, y1, _ in rows]


def found(labelled, index: int) -> list[tuple[str, list[float]]]:
    sample = labelled.samples[index]
    return [(labelled.classes[c], b.tolist()) for b, c in zip(sample.boxes, sample.labels, strict=True)]


FRAME0 = [(0, 0, 0, 0, 0, 0.0), (2, 10, 20, 49, 59, 0.0), (3, 70, 30, 99, 89, 0.2)]  # 0: BACKGROUND
LABELS0 = {0: 'BACKGROUND', 2: 'cup', 3: 'mug,cup'}
FRAME1 = [(5, 5, 5, 24, 34, 0.0), (1, 100, 60, 159, 119, 0.0), (7, 30, 40, 60, 70, 0.0)]
LABELS1 = {5: 'ball', 1: 'UNLABELLED', 7: 'cone'}  # ids are per frame: 5 is ball here only


@pytest.fixture
def basic(tmp_path: Path) -> Path:
    root = tmp_path / '_output'
    write_frame(root, 0, FRAME0, LABELS0)
    write_frame(root, 1, FRAME1, LABELS1)
    return root


def test_basic_writer_folder_reads_with_the_exact_boxes(basic: Path) -> None:
    labelled = load_dataset(basic)
    assert labelled.format == 'replicator' and not labelled.issues
    assert labelled.classes == ('ball', 'cone', 'cup', 'mug')  # union of labels, sorted
    assert [s.image.name for s in labelled.samples] == ['rgb_0000.png', 'rgb_0001.png']
    assert (labelled.samples[0].width, labelled.samples[0].height) == (WIDTH, HEIGHT)
    # BACKGROUND / UNLABELLED rows are dropped; 'mug,cup' takes its first label without a class list
    assert found(labelled, 0) == [('cup', [10, 20, 50, 60]), ('mug', [70, 30, 100, 90])]
    assert found(labelled, 1) == [('ball', [5, 5, 25, 35]), ('cone', [30, 40, 61, 71])]
    assert found(labelled, 1)[1][1] == edges(FRAME1[2:])[0]


def test_the_box_covers_exactly_the_pixels_drawn(basic: Path) -> None:
    sample = load_dataset(basic).samples[0]
    bgr = cv2.imread(str(sample.image), cv2.IMREAD_COLOR)  # as the trainer reads it: alpha dropped
    x1, y1, x2, y2 = (int(v) for v in sample.boxes[0])
    drawn = np.argwhere((bgr == bgr[y1, x1]).all(axis=2))  # the cup, FRAME0 row 1, alone in its colour
    assert drawn[:, 1].min() == x1 and drawn[:, 1].max() + 1 == x2
    assert drawn[:, 0].min() == y1 and drawn[:, 0].max() + 1 == y2


def test_given_classes_pick_the_matching_label_and_list_unknown_ones_once(basic: Path) -> None:
    labelled = load_dataset(basic, classes=['cup', 'ball'])
    assert labelled.classes == ('cup', 'ball')
    assert found(labelled, 0) == [('cup', [10, 20, 50, 60]), ('cup', [70, 30, 100, 90])]  # 'mug,cup'
    assert found(labelled, 1) == [('ball', [5, 5, 25, 35])]
    assert len(labelled.issues) == 1
    assert labelled.issues[0] == (f"{basic / 'bounding_box_2d_tight_0001.npy'}: row 2: unknown class 'cone': "
                                  "1 boxes skipped (classes: ['cup', 'ball'])")


def test_render_product_and_camera_folders_are_found(tmp_path: Path) -> None:
    root = tmp_path / 'out'
    product = root / 'RenderProduct_Replicator'
    write_frame(product, 0, FRAME0, LABELS0, image_folder=product / 'rgb',
                box_folder=product / 'bounding_box_2d_tight')
    write_frame(root / 'camera_left', 3, FRAME1, LABELS1)
    labelled = load_dataset(root, classes=['cup', 'mug', 'ball', 'cone'])
    assert not labelled.issues
    images = sorted(str(s.image.relative_to(root)) for s in labelled.samples)
    assert images == ['RenderProduct_Replicator/rgb/rgb_0000.png', 'camera_left/rgb_0003.png']
    assert sum(len(s.labels) for s in labelled.samples) == 4


def test_loose_boxes_are_read_when_tight_ones_are_absent(tmp_path: Path) -> None:
    write_frame(tmp_path, 0, FRAME0, LABELS0, box_type='loose')
    labelled = load_dataset(tmp_path, 'replicator')
    assert found(labelled, 0) == [('cup', [10, 20, 50, 60]), ('mug', [70, 30, 100, 90])]


def test_max_occlusion_drops_rows_above_it_and_keeps_unknown_ratios(tmp_path: Path) -> None:
    rows = [(1, 0, 0, 9, 9, 0.1), (1, 20, 20, 29, 29, 0.6), (1, 40, 40, 49, 49, -1.0),
            (1, 60, 60, 69, 69, 0.5)]
    write_frame(tmp_path, 0, rows, {1: 'cup'})
    assert len(load_dataset(tmp_path).samples[0].labels) == 4  # default: every row kept
    kept = load_dataset(tmp_path, max_occlusion=0.5).samples[0].boxes.tolist()
    assert kept == [[0, 0, 10, 10], [40, 40, 50, 50], [60, 60, 70, 70]]
    assert load_config(overrides={'train_data': str(tmp_path), 'max_occlusion': 0.5}).max_occlusion == 0.5
    with pytest.raises(ConfigError, match='max_occlusion'):
        load_config(overrides={'train_data': str(tmp_path), 'max_occlusion': 1.5})


def test_malformed_files_are_issues_naming_file_and_row(tmp_path: Path) -> None:
    good = write_frame(tmp_path, 0, FRAME0, LABELS0)
    wrong = write_frame(tmp_path, 1, FRAME0, LABELS0)
    np.save(wrong, np.array([[2, 10, 20, 49, 59]], np.int32))  # plain array, not the structured dtype
    no_labels = write_frame(tmp_path, 2, FRAME0, LABELS0)
    no_labels.with_name('bounding_box_2d_tight_labels_0002.json').unlink()
    missing_id = write_frame(tmp_path, 3, [(2, 1, 1, 9, 9, 0.0), (9, 20, 20, 30, 30, 0.0)], {2: 'cup'})
    no_image = write_frame(tmp_path, 4, FRAME0, LABELS0)
    (tmp_path / 'rgb_0004.png').unlink()
    outside = write_frame(tmp_path, 5, [(2, 100, 100, 200, 110, 0.0), (2, 5, 5, 3, 9, 0.0)], {2: 'cup'})
    labelled = load_dataset(tmp_path)
    issues = labelled.issues
    assert any(i.startswith(f'{wrong}: expected a 1-D structured array with fields') and 'int32' in i
               for i in issues)
    text = '\n'.join(issues)
    assert f'{no_labels}: no labels file bounding_box_2d_tight_labels_0002.json beside it' in text
    assert f'{missing_id}: row 1: semanticId 9 is not in bounding_box_2d_tight_labels_0003.json' in issues
    assert f'{no_image}: image {tmp_path / "rgb_0004.png"} does not exist' in issues
    assert f'{outside}: row 0: box [100.0, 100.0, 201.0, 111.0] lies outside the 160x120 image' in issues
    assert f'{outside}: row 1: degenerate box [5.0, 5.0, 4.0, 10.0]' in issues
    assert len(issues) == 6
    # the good frame and the good row of frame 3 are kept
    assert {s.image.name: len(s.labels) for s in labelled.samples}['rgb_0000.png'] == 2
    assert {s.image.name: len(s.labels) for s in labelled.samples}['rgb_0003.png'] == 1
    assert good.exists()


def test_a_folder_with_nothing_known_names_the_replicator_files(tmp_path: Path) -> None:
    (tmp_path / 'rgb_0000.png').write_bytes(b'')
    with pytest.raises(DatasetError, match='Replicator BasicWriter bounding_box_2d_tight_'):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match='no bounding_box_2d_tight_'):
        load_dataset(tmp_path, 'replicator')


def test_the_training_data_reads_a_batch_from_a_basic_writer_folder(basic: Path) -> None:
    labelled = load_dataset(basic)
    centernet = ARCHITECTURES['centernet']
    spec = centernet.input_spec(96, 128)
    data = DetectionDataset(labelled.samples, spec, centernet.encode, len(labelled.classes), train=True)
    batch = next(iter(DataLoader(data, batch_size=2)))
    assert batch['image'].shape == (2, 3, 96, 128) and batch['image'].dtype == torch.uint8
    assert bool(batch['valid'].all())


def test_perception_train_accepts_the_writer_folder(basic: Path, tmp_path: Path, cli) -> None:
    out = tmp_path / 'run'
    done = cli('train', '--train-data', basic, '--val-data', basic, '--epochs', 1, '--batch-size', 2,
               '--workers', 0, '--device', 'cpu', '--input-height', 64, '--input-width', 64,
               '--max-occlusion', 0.5, '--out', out)
    assert 'centernet: 2 train / 2 val images, 4 classes' in done.stderr
    history = json.loads((out / 'history.json').read_text())
    assert [r['epoch'] for r in history] == [1]
    assert sorted(history[0]['per_class_AP']) == ['ball', 'cone', 'cup', 'mug']
    assert 'max_occlusion: 0.5' in (out / 'config.yaml').read_text()
    assert (out / 'last.pt').is_file()
