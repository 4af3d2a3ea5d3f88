"""Frame -> detections: preprocess, infer, decode, with each stage timed.

The node, the benchmark and the engine verifier run models through this one pipeline, so
whatever the backend, the pixels it sees and the boxes it returns are treated alike.
"""

from __future__ import annotations

import time
from pathlib import Path

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


def open_detector(model_path: str | Path, backend: str = 'auto', options: BackendOptions | None = None, *,
                  score: float = -1.0, nms_iou: float = -1.0, max_detections: int = 0
                  ) -> tuple[Detector, Selection]:
    """Load the bundle holding ``model_path`` and its backend (BundleError / NoBackend if not)."""
    path = Path(model_path)
    bundle = load_bundle(path)
    selection = open_backend(path, bundle, backend, options or BackendOptions())
    thresholds = Thresholds.resolve(bundle.postprocess, score, nms_iou, max_detections)
    return Detector(bundle, selection.backend, thresholds), selection
