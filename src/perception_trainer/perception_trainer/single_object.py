"""``--arch single_object``: one class and one box per image, the model of the source document
this workspace started from (the lesson; ``--arch lesson``, the old name, still works), kept to
reproduce and compare its pipeline: a feature extractor, a classification head and a single-box
regression head on a 224x224 stretched image.

It predicts one object per image, so it learns the largest object of each training image.
Outputs follow the bundle's ``class_box`` format: class logits [B, C] and a box [B, 4]
(x1, y1, x2, y2 normalised to [0, 1] of the network input).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .centernet import Separable, conv_bn, stage
from .losses import giou


class SingleObjectNet(nn.Module):
    def __init__(self, num_classes: int, widths: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        self.num_classes = num_classes
        w0, w1, w2, w3 = widths
        self.features = nn.Sequential(
            conv_bn(3, w0, 3, 2), Separable(w0, w0), stage(w0, w1, 2), stage(w1, w2, 2), stage(w2, w3, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(w3, 128), nn.ReLU(inplace=True),
                                        nn.Linear(128, num_classes))
        self.regressor = nn.Sequential(nn.Linear(w3, 128), nn.ReLU(inplace=True), nn.Linear(128, 4),
                                       nn.Sigmoid())

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(images)
        return self.classifier(f), self.regressor(f)


def encode(boxes: np.ndarray, labels: np.ndarray, num_classes: int, height: int, width: int
           ) -> dict[str, np.ndarray]:
    """The largest object's class and normalised box; class -1 (ignored) for an empty image."""
    if len(boxes) == 0:
        return {'class': np.array(-1, np.int64), 'box': np.zeros(4, np.float32)}
    i = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
    scale = np.array([width, height, width, height], np.float32)
    return {'class': np.array(labels[i], np.int64), 'box': (boxes[i] / scale).astype(np.float32)}


def single_object_loss(outputs: tuple[torch.Tensor, torch.Tensor], targets: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
    logits, box = (o.float() for o in outputs)
    cls = F.cross_entropy(logits, targets['class'], ignore_index=-1)
    valid = targets['class'] >= 0
    pred, truth = box[valid], targets['box'][valid]
    reg = F.l1_loss(pred, truth) + (1 - giou(pred, truth)).mean() if valid.any() else box.sum() * 0
    return {'loss': cls + 5.0 * reg, 'class': cls, 'box': reg}
