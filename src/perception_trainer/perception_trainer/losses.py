"""Detection losses: CenterNet's penalty-reduced focal loss and the generalised IoU loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .centernet import distances_to_boxes

BOX_LOSS_WEIGHT = 5.0  # TTFNet's balance between heatmap and GIoU terms


def heatmap_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Focal loss against Gaussian targets; normalised by the number of objects."""
    logits = logits.float()
    p = torch.sigmoid(logits)
    pos = target.eq(1).float()
    pos_loss = -F.logsigmoid(logits) * (1 - p) ** 2 * pos
    neg_loss = -F.logsigmoid(-logits) * p ** 2 * (1 - target) ** 4 * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


def giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU of matching rows of x1, y1, x2, y2 boxes ([N, 4] each)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    wh = (torch.min(a[:, 2:], b[:, 2:]) - torch.max(a[:, :2], b[:, :2])).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = area_a + area_b - inter
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).clamp(min=0)
    hull_area = hull[:, 0] * hull[:, 1]
    iou = inter / union.clamp(min=1e-6)
    return iou - (hull_area - union) / hull_area.clamp(min=1e-6)


def centernet_loss(outputs: tuple[torch.Tensor, torch.Tensor], targets: dict[str, torch.Tensor]
                   ) -> dict[str, torch.Tensor]:
    logits, distances = outputs
    heat = heatmap_focal_loss(logits, targets['heat'])
    weight = targets['box_weight']
    sel = weight > 0
    pred = distances_to_boxes(distances.float()).permute(0, 2, 3, 1)[sel]
    truth = targets['box'].permute(0, 2, 3, 1)[sel]
    box = ((1 - giou(pred, truth)) * weight[sel]).sum() / weight.sum().clamp(min=1e-6)
    return {'loss': heat + BOX_LOSS_WEIGHT * box, 'heat': heat, 'box': box}
