"""Decoding's first step on the device, for the torch_cuda backend.

A ``dense_boxes_scores`` output is [1, N, 4 + C] (5120 x 14 floats, 287 KB, for the shipped
CenterNet), but only rows with a class score above zero can become detections (a few hundred at
most: the graph already zeroes every non-peak). :class:`DenseRows` packs those rows, in their
original order, into a fixed-size buffer on the device, so the copy to the host is small and fixed
shapes keep it inside the CUDA graph; ``decode.decode`` then does threshold, NMS and the letterbox
on the host, unchanged. Same candidates, same order, so the same detections as decoding the whole
output, for every score threshold above 0. When more rows qualify than fit, ``overflowed`` says
so and the caller decodes the whole output instead.
"""

from __future__ import annotations

from typing import Any

BOX_COLUMNS = 4
# The output formats whose decoding this backend's captured programs serve: dense_boxes_scores
# packed here, class_box copied whole. Foreign detectors' formats (bundle.py) are refused at load,
# so the fallback chain moves on to a backend that returns their outputs as the model gives them.
DEVICE_FORMATS = ('dense_boxes_scores', 'class_box')
ROWS = 512  # room for the qualifying rows of a busy frame (~300 seen on synthetic scenes)


class DenseRows:
    """[1, N, 4 + C] float32 on the device -> [ROWS + 1, 4 + C]: the qualifying rows first (the
    rest zero), and in the last row, column 0, how many rows qualified."""

    def __init__(self, columns: int, device: Any, rows: int = ROWS) -> None:
        import torch
        self.rows = rows
        self.packed = torch.zeros((rows + 1, columns), dtype=torch.float32, device=device)

    def __call__(self, dense: Any) -> Any:
        import torch
        rows = dense[0]
        live = rows[:, BOX_COLUMNS:].amax(dim=1) > 0
        position = torch.cumsum(live, dim=0) - 1
        # Rows that do not qualify, or do not fit, all land on the last row, which is overwritten
        # with the count below: fixed shapes, no host round trip, so the CUDA graph can hold it.
        target = torch.where(live & (position < self.rows), position, self.rows)
        self.packed.zero_()
        self.packed.index_copy_(0, target, rows)
        self.packed[self.rows, 0] = (position[-1] + 1).to(torch.float32)
        return self.packed

    def count(self, packed_host: Any) -> int:
        """How many rows qualified, from the packed buffer copied to the host."""
        return int(packed_host[self.rows, 0])

    def overflowed(self, packed_host: Any) -> bool:
        return self.count(packed_host) > self.rows

    def as_output(self, packed_host: Any) -> Any:
        """The packed rows as a [1, ROWS, 4 + C] ``dense_boxes_scores`` output for ``decode``."""
        return packed_host[None, :self.rows]
