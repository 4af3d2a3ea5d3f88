"""Writes the Ultralytics reference fixture for the yolo_v8 decoder (run on the GPU device, where
Ultralytics imports; torchvision does not import with this project's CPU torch):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/ultralytics*.whl
    PYTHONPATH=/tmp/site:src/perception_core python3 tools/ultralytics_fixture.py --out DIR

A YOLO11 detector at a small width (random weights, class biases spread so that scores cover the
threshold), exported by Ultralytics to ONNX at 320x320; two synthetic scenes (640x480, 1280x720)
saved as PNG; and Ultralytics' own predictions on them (its letterbox, ONNX Runtime through its
AutoBackend, its non_max_suppression and scale_boxes) at its predict() defaults. The test
src/perception_core/test/test_ultralytics_reference.py imports the ONNX with perception-bundle and
compares the node's detections on the same PNGs with these.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import torch

from perception_core.synth import render_scene

CLASSES = {0: 'cup', 1: 'bottle', 2: 'box'}
SCENES = ((11, 0, 640, 480), (12, 1, 960, 540))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--out', type=Path, required=True)
    args = parser.parse_args()
    import ultralytics
    import yaml
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load

    torch.manual_seed(0)
    cfg = yaml_model_load('yolo11n.yaml')
    cfg.pop('yaml_file', None)
    cfg.update(nc=len(CLASSES), scale='n', scales={'n': [0.50, 0.125, 1024]})  # a small fixture
    work = args.out / 'work'
    work.mkdir(parents=True, exist_ok=True)
    (work / 'yolo11_tiny.yaml').write_text(yaml.safe_dump(cfg))
    wrapper = YOLO(str(work / 'yolo11_tiny.yaml'), task='detect')
    wrapper.model.names = CLASSES
    with torch.no_grad():
        for branch in wrapper.model.model[-1].cv3:  # the class logits' last conv
            branch[-1].bias.normal_(-1.5, 1.0)
    exported = wrapper.export(format='onnx', imgsz=320, simplify=False, opset=17, dynamic=False, device='cpu')
    onnx_path = args.out / 'yolo11_tiny.onnx'
    shutil.copy(exported, onnx_path)

    predictor = YOLO(str(onnx_path), task='detect')
    frames = []
    for seed, index, width, height in SCENES:
        rgb = render_scene(seed=seed, index=index, width=width, height=height).image
        name = f'scene_{width}x{height}.png'
        cv2.imwrite(str(args.out / name), rgb[:, :, ::-1])
        result = predictor.predict(rgb[:, :, ::-1].copy(), imgsz=320, conf=0.25, iou=0.7, max_det=300,
                                   device='cpu', verbose=False)[0]
        frames.append({'image': name, 'width': width, 'height': height,
                       'boxes': result.boxes.xyxy.tolist(), 'scores': result.boxes.conf.tolist(),
                       'classes': [int(c) for c in result.boxes.cls.tolist()]})
    (args.out / 'ultralytics_predictions.json').write_text(json.dumps({
        'ultralytics': ultralytics.__version__, 'torch': torch.__version__,
        'predict': {'imgsz': 320, 'conf': 0.25, 'iou': 0.7, 'max_det': 300}, 'frames': frames}, indent=1))
    shutil.rmtree(work)
    print({f['image']: len(f['boxes']) for f in frames})


if __name__ == '__main__':
    main()
