"""Trains and exports the foreign detectors the bring-your-own-model path is checked against, with
their frameworks' own numbers (run on the GPU device, where Ultralytics and torchvision import):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl_ul/*.whl
    PYTHONPATH=/tmp/site:src/perception_core:src/perception_trainer YOLO_OFFLINE=1 \
        python3 tools/foreign_models.py --out $OUT

1. The data: perception-synth's default sets (8,000 training frames of seed 1, 500 validation of
   seed 2, the 500 held-out frames of seed 3, 640x480), written by the trainer's own generator and
   given to Ultralytics in its YOLO layout.
2. YOLO11n (2.6M parameters, from scratch) trained for --yolo-minutes at 320x320; Ultralytics'
   own val() on the held-out set; exported to ONNX as Ultralytics exports it (``[1, 4 + C, N]``) and
   with ``nms=True`` (``[1, 300, 6]``); its ONNX predictions on the held-out set (Ultralytics'
   AutoBackend, letterbox and NMS, conf 0.001) for pycocotools here.
3. Small fixtures for the tests, each with its framework's own predictions on the committed scenes
   (src/perception_core/test/fixtures/ultralytics/scene_*.png):
   - a YOLO26 at a small width, trained --small-minutes, exported NMS-free (``nms=False``: the
     one-to-one head, ``[1, 300, 6]``), and its val() on the held-out set;
   - an RT-DETR at a small width (rtdetr_tiny.yaml, written below), trained --small-minutes, exported
     as Ultralytics 8.4 exports it (``[1, 300, 6]``: its decoder's top-K rows);
   - a torchvision Faster R-CNN (MobileNetV3-small features from scratch: torchvision's checkpoints
     need the network), trained --small-minutes with torchvision's losses, exported with its
     transform and postprocessing in the graph (outputs boxes, scores, labels; labels count the
     background as 0), and torchvision's own
     detections in PyTorch on the same frame.
Everything lands in --out: the .onnx files, reference.json (metrics, predictions, versions) and
heldout_predictions.json. Stages that fail are recorded in reference.json and the rest go on.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import traceback
from pathlib import Path

import cv2
import numpy as np
import torch

SCENES = Path('src/perception_core/test/fixtures/ultralytics')
SETS = (('train', 8000, 1), ('val', 500, 2), ('test', 500, 3))

RTDETR_TINY = """
nc: 10
scales:
  n: [0.50, 0.25, 1024]
backbone:
  - [-1, 1, Conv, [64, 3, 2]]
  - [-1, 1, Conv, [128, 3, 2]]
  - [-1, 2, C3k2, [256, False, 0.25]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [-1, 2, C3k2, [512, False, 0.25]]   # 4 P3/8
  - [-1, 1, Conv, [512, 3, 2]]
  - [-1, 2, C3k2, [512, True]]          # 6 P4/16
  - [-1, 1, Conv, [1024, 3, 2]]
  - [-1, 2, C3k2, [1024, True]]         # 8 P5/32
head:
  - [-1, 1, Conv, [256, 1, 1, None, 1, 1, False]]   # 9
  - [-1, 1, AIFI, [256, 4]]
  - [-1, 1, Conv, [256, 1, 1]]                       # 11 Y5
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [6, 1, Conv, [256, 1, 1, None, 1, 1, False]]
  - [[-2, -1], 1, Concat, [1]]
  - [-1, 1, RepC3, [256]]
  - [-1, 1, Conv, [256, 1, 1]]                       # 16 Y4
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [4, 1, Conv, [256, 1, 1, None, 1, 1, False]]
  - [[-2, -1], 1, Concat, [1]]
  - [-1, 1, RepC3, [256]]                            # 20 X3
  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, 16], 1, Concat, [1]]
  - [-1, 1, RepC3, [256]]                            # 23 F4
  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, 11], 1, Concat, [1]]
  - [-1, 1, RepC3, [256]]                            # 26 F5
  - [[20, 23, 26], 1, RTDETRDecoder, [nc, 64, 300, 4, 4, 2, 256]]
"""


class Report:
    """reference.json, rewritten after every stage so a run cut short still returns what it did."""

    def __init__(self, out: Path) -> None:
        self.path = out / 'reference.json'
        self.data: dict = {'stages': {}}

    def stage(self, name: str, fn, *args, **kwargs):
        started = time.monotonic()
        print(f'== {name}', flush=True)
        try:
            result = fn(*args, **kwargs)
            self.data['stages'][name] = {'ok': True, 'seconds': round(time.monotonic() - started, 1)}
            return result
        except Exception as error:
            traceback.print_exc()
            self.data['stages'][name] = {'ok': False, 'error': f'{type(error).__name__}: {error}',
                                         'seconds': round(time.monotonic() - started, 1)}
            return None
        finally:
            self.save()

    def save(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=1))


def write_data(root: Path, classes: tuple[str, ...]) -> Path:
    """perception-synth's sets, and the same frames and boxes in Ultralytics' YOLO layout."""
    from perception_trainer.generate import generate_dataset
    for split, count, seed in SETS:
        synth = root / f'synth_{split}'
        if not (synth / 'coco_instances.json').is_file():
            generate_dataset(synth, count, seed, workers=16, progress=False)
        coco = json.loads((synth / 'coco_instances.json').read_text())
        images = root / 'yolo' / split / 'images'
        labels = root / 'yolo' / split / 'labels'
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        names = {c['id']: c['name'] for c in coco['categories']}
        lines: dict[int, list[str]] = {im['id']: [] for im in coco['images']}
        sizes = {im['id']: (im['width'], im['height']) for im in coco['images']}
        for a in coco['annotations']:
            w, h = sizes[a['image_id']]
            x, y, bw, bh = a['bbox']
            cls = classes.index(names[a['category_id']])
            lines[a['image_id']].append(
                f'{cls} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}')
        for im in coco['images']:
            target = images / Path(im['file_name']).name
            if not target.exists():
                target.symlink_to((synth / im['file_name']).resolve())
            (labels / f'{target.stem}.txt').write_text(''.join(line + '\n' for line in lines[im['id']]))
    data = root / 'yolo' / 'data.yaml'
    data.write_text(json.dumps({'path': str(root / 'yolo'), 'train': 'train/images', 'val': 'val/images',
                                'test': 'test/images', 'names': dict(enumerate(classes))}))
    return data


def ultralytics_val(model, data: Path, imgsz: int) -> dict:
    metrics = model.val(data=str(data), split='test', imgsz=imgsz, batch=64, conf=0.001, iou=0.7,
                        plots=False, device=0, verbose=False)
    names = model.names
    return {'map50_95': float(metrics.box.map), 'map50': float(metrics.box.map50),
            'map75': float(metrics.box.map75),
            'per_class_map50_95': {names[i]: float(v) for i, v in enumerate(metrics.box.maps)}}


def scene_predictions(model, imgsz: int, **predict) -> list[dict]:
    frames = []
    for png in sorted(SCENES.glob('scene_*.png')):
        bgr = cv2.imread(str(png))
        result = model.predict(bgr, imgsz=imgsz, device='cpu', verbose=False, **predict)[0]
        frames.append({'image': png.name, 'width': bgr.shape[1], 'height': bgr.shape[0],
                       'boxes': result.boxes.xyxy.tolist(), 'scores': result.boxes.conf.tolist(),
                       'classes': [int(c) for c in result.boxes.cls.tolist()]})
    return frames


def train(model, data: Path, minutes: float, *, imgsz: int, batch: int, project: Path, run_name: str,
          workers: int = 14) -> None:
    model.train(data=str(data), imgsz=imgsz, epochs=1000, time=minutes / 60, batch=batch, workers=workers,
                cache='ram', device=0, pretrained=False, plots=False, val=False, project=str(project),
                name=run_name, exist_ok=True, verbose=False, seed=0, deterministic=False)


def yolo11n(report: Report, data: Path, work: Path, out: Path, minutes: float) -> None:
    from ultralytics import YOLO
    model = YOLO('yolo11n.yaml', task='detect')
    report.stage('yolo11n_train', train, model, data, minutes, imgsz=320, batch=128, project=work,
                 run_name='yolo11n')
    best = work / 'yolo11n' / 'weights' / 'last.pt'
    model = YOLO(str(best))
    report.data['yolo11n'] = {'parameters': sum(p.numel() for p in model.model.parameters()),
                              'train_minutes': minutes, 'imgsz': 320}
    report.data['yolo11n']['val_heldout'] = report.stage('yolo11n_val', ultralytics_val, model, data, 320)
    plain = model.export(format='onnx', imgsz=320, simplify=False, opset=17, dynamic=False, device='cpu')
    shutil.copy(plain, out / 'yolo11n_synth.onnx')
    nms = YOLO(str(best)).export(format='onnx', imgsz=320, simplify=False, opset=17, dynamic=False, nms=True,
                                 device='cpu')
    shutil.copy(nms, out / 'yolo11n_synth_nms.onnx')

    def heldout() -> None:
        onnx = YOLO(str(out / 'yolo11n_synth.onnx'), task='detect')
        images = sorted((data.parent / 'test' / 'images').glob('*.jpg'))
        preds = []
        for path in images:
            r = onnx.predict(str(path), imgsz=320, conf=0.001, iou=0.7, max_det=100, device='cpu',
                             verbose=False)[0]
            for box, score, cls in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist(),
                                       strict=True):
                preds.append({'file': f'images/{path.name}', 'box': [round(v, 3) for v in box],
                              'score': round(score, 5), 'class': int(cls)})
        (out / 'heldout_predictions.json').write_text(json.dumps({
            'model': 'yolo11n_synth.onnx',
            'predict': {'imgsz': 320, 'conf': 0.001, 'iou': 0.7, 'max_det': 100},
            'predictions': preds}))
    report.stage('yolo11n_heldout_predictions', heldout)
    report.data['yolo11n']['scenes_nms_export'] = report.stage(
        'yolo11n_nms_scenes', scene_predictions, YOLO(str(out / 'yolo11n_synth_nms.onnx'), task='detect'),
        320,
        conf=0.25, iou=0.7, max_det=300)


def yolo26_small(report: Report, data: Path, work: Path, out: Path, minutes: float) -> None:
    import yaml
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load
    cfg = yaml_model_load('yolo26n.yaml')
    cfg.pop('yaml_file', None)
    cfg.update(scale='n', scales={'n': [0.50, 0.125, 1024]})
    (work / 'yolo26_small.yaml').write_text(yaml.safe_dump(cfg))
    model = YOLO(str(work / 'yolo26_small.yaml'), task='detect')
    report.stage('yolo26_train', train, model, data, minutes, imgsz=320, batch=128, project=work,
                 run_name='yolo26')
    model = YOLO(str(work / 'yolo26' / 'weights' / 'last.pt'))
    report.data['yolo26_small'] = {'parameters': sum(p.numel() for p in model.model.parameters()),
                                   'train_minutes': minutes, 'imgsz': 320}
    report.data['yolo26_small']['val_heldout'] = report.stage('yolo26_val', ultralytics_val, model, data, 320)
    exported = model.export(format='onnx', imgsz=320, simplify=False, opset=17, dynamic=False, nms=False,
                            device='cpu')
    shutil.copy(exported, out / 'yolo26_small_end2end.onnx')
    report.data['yolo26_small']['scenes'] = report.stage(
        'yolo26_scenes', scene_predictions, YOLO(str(out / 'yolo26_small_end2end.onnx'), task='detect'), 320,
        conf=0.25, max_det=300)


def rtdetr_small(report: Report, data: Path, work: Path, out: Path, minutes: float) -> None:
    from ultralytics import RTDETR
    (work / 'rtdetr_tiny.yaml').write_text(RTDETR_TINY)
    model = RTDETR(str(work / 'rtdetr_tiny.yaml'))
    report.stage('rtdetr_train', train, model, data, minutes, imgsz=320, batch=64, project=work,
                 run_name='rtdetr')
    model = RTDETR(str(work / 'rtdetr' / 'weights' / 'last.pt'))
    report.data['rtdetr_small'] = {'parameters': sum(p.numel() for p in model.model.parameters()),
                                   'train_minutes': minutes, 'imgsz': 320}
    report.data['rtdetr_small']['val_heldout'] = report.stage('rtdetr_val', ultralytics_val, model, data, 320)
    exported = model.export(format='onnx', imgsz=320, simplify=False, opset=17, dynamic=False, device='cpu')
    shutil.copy(exported, out / 'rtdetr_small.onnx')
    report.data['rtdetr_small']['scenes'] = report.stage(
        'rtdetr_scenes', scene_predictions, RTDETR(str(out / 'rtdetr_small.onnx')), 320, conf=0.25,
        max_det=300)


def _train_fasterrcnn(model: torch.nn.Module, synth: Path, classes: tuple[str, ...], minutes: float) -> int:
    coco = json.loads((synth / 'coco_instances.json').read_text())
    names = {c['id']: c['name'] for c in coco['categories']}
    boxes: dict[int, list] = {im['id']: [] for im in coco['images']}
    for a in coco['annotations']:
        x, y, w, h = a['bbox']
        boxes[a['image_id']].append((x, y, x + w, y + h, classes.index(names[a['category_id']]) + 1))
    images = [(synth / im['file_name'], boxes[im['id']]) for im in coco['images'] if boxes[im['id']]]
    device = torch.device('cuda')
    model.to(device).train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    deadline = time.monotonic() + minutes * 60
    step = 0
    while time.monotonic() < deadline:
        batch = [images[i] for i in rng.choice(len(images), 16, replace=False)]
        inputs, targets = [], []
        for path, rows in batch:
            rgb = cv2.imread(str(path))[:, :, ::-1].copy()
            inputs.append(torch.from_numpy(rgb).permute(2, 0, 1).float().div(255).to(device))
            t = torch.tensor(rows, dtype=torch.float32)
            targets.append({'boxes': t[:, :4].to(device), 'labels': t[:, 4].long().to(device)})
        warm = min(1.0, (step + 1) / 100)
        for group in optimiser.param_groups:
            group['lr'] = 0.02 * warm
        loss = sum(model(inputs, targets).values())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        if step % 50 == 0:
            print(f'fasterrcnn step {step} loss {loss.item():.3f}', flush=True)
    model.to('cpu')
    return step


def fasterrcnn(report: Report, out: Path, classes: tuple[str, ...], synth: Path, minutes: float) -> None:
    import torchvision
    from torch import nn
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.rpn import AnchorGenerator
    torch.manual_seed(0)
    features = nn.Sequential(torchvision.models.mobilenet_v3_small(weights=None).features,
                             nn.Conv2d(576, 32, 1))
    features.out_channels = 32
    model = FasterRCNN(
        features, min_size=240, max_size=320,
        rpn_anchor_generator=AnchorGenerator(sizes=((32, 64, 128, 256),), aspect_ratios=((0.5, 1.0, 2.0),)),
        box_roi_pool=torchvision.ops.MultiScaleRoIAlign(featmap_names=['0'], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(32 * 7 * 7, 128), box_predictor=FastRCNNPredictor(128, len(classes) + 1))
    # Random weights give every box the same score (a tie NMS and top-K break arbitrarily): train
    # it briefly on the synthetic frames, torchvision's detection-reference way (sum of its losses).
    steps = report.stage('fasterrcnn_train', _train_fasterrcnn, model, synth, classes, minutes)
    model.eval()
    # A few minutes of training leave its scores low: keep them from 0.001 (in the graph too), so the
    # fixture has boxes of distinct scores to compare.
    model.roi_heads.score_thresh = 0.001

    class Batched(nn.Module):  # a batch axis in and out, as an export for a runtime has it
        def __init__(self, detector: nn.Module) -> None:
            super().__init__()
            self.detector = detector

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            found = self.detector([images[0]])[0]
            return found['boxes'][None], found['scores'][None], found['labels'][None]

    wrapped = Batched(model).eval()
    path = out / 'fasterrcnn_small.onnx'
    example = torch.rand(1, 3, 240, 320)
    with torch.no_grad():
        try:
            torch.onnx.export(wrapped, (example,), str(path), opset_version=17, input_names=['images'],
                              output_names=['boxes', 'scores', 'labels'], dynamo=False)
            exporter = 'torchscript'
        except Exception:
            traceback.print_exc()
            torch.onnx.export(wrapped, (example,), str(path), opset_version=17, input_names=['images'],
                              output_names=['boxes', 'scores', 'labels'], dynamo=True)
            exporter = 'dynamo'
    frames = []
    with torch.no_grad():
        png = SCENES / 'scene_640x480.png'
        rgb = cv2.imread(str(png))[:, :, ::-1].copy()
        # torchvision's own path: the full frame in, its transform resizes (0.5) and maps boxes back
        found = model([torch.from_numpy(rgb).permute(2, 0, 1).float() / 255])[0]
        frames.append({'image': png.name, 'width': 640, 'height': 480,
                       'input': 'full frame, torchvision resize',
                       'boxes': found['boxes'].tolist(), 'scores': found['scores'].tolist(),
                       'labels': found['labels'].tolist()})
        # the same network on the frame OpenCV halved (what the node feeds the ONNX), boxes x2
        half = cv2.resize(rgb, (320, 240), interpolation=cv2.INTER_LINEAR)
        found = model([torch.from_numpy(half).permute(2, 0, 1).float() / 255])[0]
        frames.append({'image': png.name, 'width': 640, 'height': 480,
                       'input': 'cv2 INTER_LINEAR 320x240, boxes x2',
                       'boxes': (found['boxes'] * 2).tolist(), 'scores': found['scores'].tolist(),
                       'labels': found['labels'].tolist()})
    report.data['fasterrcnn_small'] = {
        'parameters': sum(p.numel() for p in model.parameters()), 'exporter': exporter,
        'train_steps': steps, 'train_minutes': minutes, 'train_batch': 16,
        'torchvision': torchvision.__version__, 'input': [1, 3, 240, 320], 'classes': list(classes),
        'label_offset': 1, 'box_score_thresh': model.roi_heads.score_thresh,
        'detections_per_img': model.roi_heads.detections_per_img, 'frames': frames}


def _results_csv(self) -> dict:
    import csv
    if not self.csv.exists():
        return {}
    with self.csv.open() as f:
        rows = [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]
    return {k: [r[k] for r in rows] for k in (rows[0] if rows else {})}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--out', type=Path, required=True)
    parser.add_argument('--work', type=Path, default=Path('/tmp/foreign'))
    parser.add_argument('--yolo-minutes', type=float, default=3.0)
    parser.add_argument('--small-minutes', type=float, default=1.0)
    parser.add_argument('--only', choices=('fasterrcnn',), help='run this stage alone (on 2,000 frames)')
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    import ultralytics
    from ultralytics.engine import trainer

    from perception_core.synth import DEFAULT_CLASSES
    # Ultralytics' AMP self-test downloads yolo26n.pt; the device has no network. bf16/fp16 autocast
    # on an H200 is known good, so the check is answered, not skipped with retries.
    trainer.check_amp = lambda *a, **k: True
    # The trainer reads its results.csv back with polars only to store it in the checkpoint; polars is
    # not on the device, so the standard library reads it.
    trainer.BaseTrainer.read_results_csv = _results_csv
    report = Report(args.out)
    report.data['versions'] = {'ultralytics': ultralytics.__version__, 'torch': torch.__version__,
                               'gpu': torch.cuda.get_device_name(0), 'numpy': np.__version__,
                               'opencv': cv2.__version__}
    if args.only == 'fasterrcnn':
        from perception_trainer.generate import generate_dataset
        synth = generate_dataset(args.work / 'data' / 'synth_train', 2000, 1, workers=16, progress=False)
        report.stage('fasterrcnn', fasterrcnn, report, args.out, DEFAULT_CLASSES, synth, args.small_minutes)
        return
    data = report.stage('data', write_data, args.work / 'data', DEFAULT_CLASSES)
    if data is None:
        return
    report.stage('yolo11n', yolo11n, report, data, args.work, args.out, args.yolo_minutes)
    report.stage('fasterrcnn', fasterrcnn, report, args.out, DEFAULT_CLASSES,
                 args.work / 'data' / 'synth_train', args.small_minutes)
    report.stage('yolo26_small', yolo26_small, report, data, args.work, args.out, args.small_minutes)
    report.stage('rtdetr_small', rtdetr_small, report, data, args.work, args.out, args.small_minutes)
    print(json.dumps(report.data['stages'], indent=1))


if __name__ == '__main__':
    main()
