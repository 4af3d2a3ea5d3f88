"""Frame -> detections: preprocess, infer, decode, with each stage timed.

The node, the benchmark and the engine verifier run models through this one pipeline, so
whatever the backend, the pixels it sees and the boxes it returns are treated alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .backends import Backend, BackendOptions
from .backends.select import Selection, open_backend
from .bundle import Bundle, load_bundle
from .convert import Frame
from .decode import Detections, Thresholds, decoder_for
from .preprocess import Preprocessor

# handoff: the executor thread's receipt of a frame -> the worker starting on it (node.py)
STAGES = ('handoff', 'convert', 'preprocess', 'infer', 'postprocess', 'publish')


class Detector:
    def __init__(self, bundle: Bundle, backend: Backend, thresholds: Thresholds) -> None:
        self.bundle = bundle
        self.backend = backend
        self.thresholds = thresholds
        self._preprocess = Preprocessor(bundle.input)
        # picked once, with model.json's output options (class_offset, box form, normalised)
        self._decode = decoder_for(bundle.output, len(bundle.classes))

    def detect(self, frame: Frame) -> tuple[Detections, dict[str, float]]:
        """Detections in the frame's pixels, and seconds spent in preprocess, infer, postprocess."""
        start = time.perf_counter()
        if self.backend.takes_images:  # preprocesses on its device, inside the timed inference
            prepared = start
            outputs, transform = self.backend.infer_image(frame.pixels, frame.rgb_channels)
        else:
            tensor, transform = self._preprocess(frame.pixels, frame.rgb_channels)
            prepared = time.perf_counter()
            outputs = self.backend.infer(tensor)
        inferred = time.perf_counter()
        detections = self._decode(outputs, transform, self.thresholds)
        done = time.perf_counter()
        return detections, {'preprocess': prepared - start, 'infer': inferred - prepared,
                            'postprocess': done - inferred}


    def detect_batch(self, frames: Sequence[Frame]) -> tuple[list[Detections], dict[str, float]]:
        """Each frame's detections (as ``detect`` gives them) from as few backend calls as its
        ``batch_limit`` allows, and the seconds spent in preprocess, infer, postprocess for all.

        Frames may differ in size: each is preprocessed (resized, letterboxed) on its own into its
        row of one [N, ...] tensor and decoded with its own transform; a backend that preprocesses
        on its device (torch_cuda) gets the images themselves and does the same there. A backend
        taking one frame per call (a fixed batch of 1) gets one call per frame.
        """
        limit = self.backend.batch_limit
        if limit <= 1 or len(frames) <= 1:
            results = [self.detect(f) for f in frames]
            totals = {k: sum(t[k] for _, t in results) for k in ('preprocess', 'infer', 'postprocess')}
            return [d for d, _ in results], totals
        detections: list[Detections] = []
        totals = dict.fromkeys(('preprocess', 'infer', 'postprocess'), 0.0)
        for first in range(0, len(frames), limit):
            chunk = frames[first:first + limit]
            start = time.perf_counter()
            if self.backend.takes_images:  # preprocessed on its device, inside the timed inference
                answers = self.backend.infer_images([(f.pixels, f.rgb_channels) for f in chunk])
                inferred = time.perf_counter()
                detections += [self._decode(outputs, t, self.thresholds) for outputs, t in answers]
                totals['infer'] += inferred - start
                totals['postprocess'] += time.perf_counter() - inferred
                continue
            batch = np.empty(self.bundle.input.shape(len(chunk)), np.float32)
            transforms = []
            for row, frame in enumerate(chunk):
                # the preprocessor's buffer is reused per call: copied into the batch at once
                tensor, transform = self._preprocess(frame.pixels, frame.rgb_channels)
                batch[row] = tensor[0]
                transforms.append(transform)
            prepared = time.perf_counter()
            outputs = self.backend.infer(batch)
            inferred = time.perf_counter()
            # frame i's outputs are row i of each, with the batch axis kept (decode reads row 0)
            detections += [self._decode([o[i:i + 1] for o in outputs], t, self.thresholds)
                           for i, t in enumerate(transforms)]
            done = time.perf_counter()
            totals['preprocess'] += prepared - start
            totals['infer'] += inferred - prepared
            totals['postprocess'] += done - inferred
        return detections, totals


def open_detector(model_path: str | Path, backend: str = 'auto', options: BackendOptions | None = None, *,
                  score: float = -1.0, nms_iou: float = -1.0, max_detections: int = 0
                  ) -> tuple[Detector, Selection]:
    """Load the bundle holding ``model_path`` and its backend (BundleError / NoBackend if not)."""
    path = Path(model_path)
    bundle = load_bundle(path)
    selection = open_backend(path, bundle, backend, options or BackendOptions())
    thresholds = Thresholds.resolve(bundle.postprocess, score, nms_iou, max_detections)
    return Detector(bundle, selection.backend, thresholds), selection
