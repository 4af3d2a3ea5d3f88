"""The images a verification runs both backends on, and one frame through a backend.

Each frame is preprocessed once by the node's preprocessing and the same tensor is fed to both
backends; a backend that preprocesses on its GPU (``takes_images``) gets the image instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from perception_core.backends import Backend
from perception_core.bundle import Bundle
from perception_core.preprocess import Preprocessor, Transform
from perception_core.synth import render_scene

RGB = (0, 1, 2)
BGR = (2, 1, 0)
# Synthetic verification scenes use a seed of their own, never one a training recipe uses.
EVAL_SEED = 20241205
EVAL_FRAMES = 100
SCENE_SIZE = (640, 480)   # width, height: a camera frame, so the resize is exercised


@dataclass(frozen=True)
class ImageFrame:
    """One image, HxWx3 uint8 with R, G, B at ``rgb_channels``."""
    pixels: np.ndarray
    rgb_channels: tuple[int, int, int]


@dataclass(frozen=True)
class LabelledScene:
    """A synthetic scene and where its objects are: boxes [N, 4] x1, y1, x2, y2 in pixels, labels
    [N] indices into the bundle's classes."""
    frame: ImageFrame
    boxes: np.ndarray
    labels: np.ndarray


def labelled_scenes(bundle: Bundle, count: int = EVAL_FRAMES, seed: int = EVAL_SEED,
                    size: tuple[int, int] = SCENE_SIZE) -> Iterator[LabelledScene]:
    """Camera-sized scenes of the bundle's classes from the project's synthetic generator."""
    index = {name: i for i, name in enumerate(bundle.classes)}
    for i in range(count):
        scene = render_scene(seed, i, size[0], size[1], bundle.classes)
        boxes = np.array([[b.x1, b.y1, b.x2, b.y2] for b in scene.boxes], np.float32).reshape(-1, 4)
        labels = np.array([index[b.class_name] for b in scene.boxes], np.int64)
        yield LabelledScene(ImageFrame(scene.image, RGB), boxes, labels)


def scene_frames(bundle: Bundle, count: int = EVAL_FRAMES, seed: int = EVAL_SEED,
                 size: tuple[int, int] = SCENE_SIZE) -> list[ImageFrame]:
    return [scene.frame for scene in labelled_scenes(bundle, count, seed, size)]


def infer_frame(backend: Backend, preprocessor: Preprocessor, frame: ImageFrame,
                tensor: np.ndarray | None = None) -> tuple[list[np.ndarray], Transform]:
    """The network outputs for one frame; ``tensor`` reuses an already preprocessed input."""
    if backend.takes_images:
        return backend.infer_image(frame.pixels, frame.rgb_channels)
    transform = preprocessor.transform_for(*frame.pixels.shape[:2])
    if tensor is None:
        tensor, transform = preprocessor(frame.pixels, frame.rgb_channels)
    return backend.infer(tensor), transform
