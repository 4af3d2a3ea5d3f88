"""Preprocessing as torch ops, for the torch_cuda backend (runs on the GPU there, on the CPU in
tests). Same geometry and arithmetic as ``preprocess.Preprocessor``: bilinear resize with
half-pixel centres, rounded to uint8 values like OpenCV's, pad, (p / 255 - mean) / std."""

from __future__ import annotations

from typing import Any

from ..bundle import InputSpec
from ..preprocess import Transform


class TorchPreprocess:
    """HxWxC uint8 image tensor -> [1, ...] network input, for one image size."""

    def __init__(self, spec: InputSpec, transform: Transform, rgb_channels: tuple[int, int, int],
                 dtype: Any, device: Any) -> None:
        import torch
        self.spec = spec
        self.transform = transform
        order = rgb_channels if spec.color == 'RGB' else rgb_channels[::-1]
        self._order = torch.tensor(order, device=device)
        std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._gain = 1.0 / (255.0 * std)
        self._offset = -mean / std
        self._canvas = torch.full((1, 3, spec.height, spec.width), float(spec.pad_value),
                                  dtype=torch.float32, device=device)
        self._dtype = dtype

    def __call__(self, image: Any) -> Any:
        import torch.nn.functional as F
        t = self.transform
        x = image.index_select(2, self._order).permute(2, 0, 1).unsqueeze(0).float()
        x = F.interpolate(x, size=(t.resized_height, t.resized_width), mode='bilinear',
                          align_corners=False, antialias=False)
        self._canvas[:, :, t.pad_y:t.pad_y + t.resized_height, t.pad_x:t.pad_x + t.resized_width] = (
            x.round().clamp(0, 255))
        x = self._canvas * self._gain + self._offset
        if self.spec.layout == 'NHWC':
            x = x.permute(0, 2, 3, 1).contiguous()
        return x.to(self._dtype)
