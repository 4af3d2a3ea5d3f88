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


def box_loss(boxes: torch.Tensor, truth: torch.Tensor, weight: torch.Tensor, *, every_location: bool
             ) -> torch.Tensor:
    """GIoU loss of predicted ``boxes`` against ``truth`` (both [B, 4, H, W], x1 y1 x2 y2), weighted
    by ``box_weight`` [B, H, W]; 0 where it is 0. ``every_location``: compute it everywhere and
    weigh, instead of picking the weighted locations (the same value and gradients)."""
    pred = boxes.permute(0, 2, 3, 1).reshape(-1, 4)
    true = truth.permute(0, 2, 3, 1).reshape(-1, 4)
    rows = weight.reshape(-1)
    if not every_location:
        sel = rows > 0
        pred, true, rows = pred[sel], true[sel], rows[sel]
    return ((1 - giou(pred, true)) * rows).sum() / weight.sum().clamp(min=1e-6)


def centernet_loss(outputs: tuple[torch.Tensor, torch.Tensor], targets: dict[str, torch.Tensor]
                   ) -> dict[str, torch.Tensor]:
    logits, distances = outputs
    heat = heatmap_focal_loss(logits, targets['heat'])
    # On the CPU only the weighted locations (a few percent) are worth computing. On CUDA picking
    # them reads their count back to the host, which stalls the launch queue: every location there
    # (bench/README "Where a training step's time goes").
    box = box_loss(distances_to_boxes(distances.float()), targets['box'], targets['box_weight'],
                   every_location=logits.is_cuda)
    return {'loss': heat + BOX_LOSS_WEIGHT * box, 'heat': heat, 'box': box}
