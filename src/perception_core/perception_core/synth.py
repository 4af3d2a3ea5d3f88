"""Synthetic scenes: the embedded stand-in for Isaac Sim Replicator.

Each scene is a randomised background with 2-8 objects of a fixed, named class list pasted at
random scale, rotation and position, partly occluding each other, under randomised lighting,
colour cast, blur and noise (domain randomisation). Boxes are exact and tight: each object is
drawn with its own mask, later objects and foreground clutter overwrite an owner map, and a box
is the extent of the pixels its object still owns (like Replicator's ``bounding_box_2d_tight``).
Box corners are pixel edges: ``x2 = last visible column + 1``.

``render_scene(seed, index, ...)`` is a pure function of its arguments, so data sets, rosbags
and tests regenerate identical frames anywhere; no rclpy, no GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# Things a humanoid meets in a home or warehouse; each has its own silhouette and dominant colour.
DEFAULT_CLASSES: tuple[str, ...] = (
    'cup', 'bottle', 'box', 'ball', 'banana', 'book', 'can', 'cone', 'hammer', 'phone')

MIN_OBJECTS, MAX_OBJECTS = 2, 8
# An object keeps at least this fraction of its in-image pixels visible; placements that would
# hide more of an earlier object are retried elsewhere, so every labelled object is recognisable.
MIN_VISIBLE_FRACTION = 0.6
MIN_BOX_SIDE = 10  # pixels at 640x480 scale; smaller objects are not placed
CANVAS = 128  # canonical drawing size of the longest object side


@dataclass(frozen=True)
class Box:
    """An exact tight box in image pixels (corners are pixel edges)."""

    class_name: str
    x1: float
    y1: float
    x2: float
    y2: float
    visibility: float = 1.0  # visible / in-image pixels of the object
    truncated: float = 0.0  # fraction of the object outside the image


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # HxWx3 uint8 RGB
    boxes: tuple[Box, ...]


@dataclass
class _Shape:
    rgb: np.ndarray  # float32 HxWx3 in [0, 255]
    mask: np.ndarray  # uint8 HxW, 255 inside


def _jitter_colour(rng: np.random.Generator, rgb: tuple[int, int, int]) -> np.ndarray:
    """The class colour with small hue/saturation/value changes (instances differ, class reads)."""
    hsv = cv2.cvtColor(np.uint8([[rgb]]), cv2.COLOR_RGB2HSV).astype(np.float32)[0, 0]
    hsv[0] = (hsv[0] + rng.uniform(-5, 5)) % 180  # OpenCV hue is 0..180
    hsv[1] = np.clip(hsv[1] * rng.uniform(0.75, 1.15), 0, 255)
    hsv[2] = np.clip(hsv[2] * rng.uniform(0.75, 1.15), 0, 255)
    out = cv2.cvtColor(hsv.astype(np.uint8)[None, None], cv2.COLOR_HSV2RGB)[0, 0]
    return out.astype(np.float32)


def _canvas(width: int, height: int) -> _Shape:
    return _Shape(np.zeros((height, width, 3), np.float32), np.zeros((height, width), np.uint8))


def _fill(shape: _Shape, points: Sequence[tuple[float, float]], colour: np.ndarray) -> None:
    pts = np.round(np.asarray(points, np.float32)).astype(np.int32)
    cv2.fillPoly(shape.rgb, [pts], colour.tolist())
    cv2.fillPoly(shape.mask, [pts], 255)


def _ellipse(shape: _Shape, centre: tuple[float, float], axes: tuple[float, float], colour: np.ndarray,
             *, thickness: int = -1) -> None:
    c = (round(centre[0]), round(centre[1]))
    a = (round(axes[0]), round(axes[1]))
    cv2.ellipse(shape.rgb, c, a, 0, 0, 360, colour.tolist(), thickness)
    cv2.ellipse(shape.mask, c, a, 0, 0, 360, 255, thickness)


def _rect(shape: _Shape, corners: tuple[float, float, float, float], colour: np.ndarray) -> None:
    x1, y1, x2, y2 = corners
    _fill(shape, [(x1, y1), (x2, y1), (x2, y2), (x1, y2)], colour)


def _paint(shape: _Shape, points: Sequence[tuple[float, float]], colour: np.ndarray) -> None:
    """Colour detail inside an already drawn part (the mask is unchanged)."""
    pts = np.round(np.asarray(points, np.float32)).astype(np.int32)
    cv2.fillPoly(shape.rgb, [pts], colour.tolist())


def _cup(rng: np.random.Generator) -> _Shape:
    s = _canvas(112, 100)
    body = _jitter_colour(rng, (200, 35, 35))
    _ellipse(s, (78, 50), (24, 24), body, thickness=9)  # handle
    _fill(s, [(6, 8), (80, 8), (70, 96), (16, 96)], body)
    _ellipse(s, (43, 9), (37, 6), body * 0.6)  # the dark opening
    return s


def _bottle(rng: np.random.Generator) -> _Shape:
    s = _canvas(52, 128)
    glass = _jitter_colour(rng, (40, 160, 70))
    _fill(s, [(18, 16), (34, 16), (34, 34), (48, 52), (48, 124), (4, 124), (4, 52), (18, 34)], glass)
    _rect(s, (16, 2, 36, 17), _jitter_colour(rng, (235, 235, 235)))  # cap
    _paint(s, [(4, 70), (48, 70), (48, 100), (4, 100)], _jitter_colour(rng, (230, 220, 170)))  # label
    return s


def _box(rng: np.random.Generator) -> _Shape:
    s = _canvas(124, 120)
    card = _jitter_colour(rng, (170, 118, 65))
    _fill(s, [(4, 34), (66, 52), (66, 118), (4, 96)], card)  # front
    _fill(s, [(66, 52), (120, 30), (120, 92), (66, 118)], card * 0.75)  # side
    _fill(s, [(4, 34), (58, 12), (120, 30), (66, 52)], np.minimum(card * 1.2, 255))  # top
    _paint(s, [(28, 24), (36, 21), (96, 40), (89, 44)], _jitter_colour(rng, (200, 185, 150)))  # tape
    return s


def _ball(rng: np.random.Generator) -> _Shape:
    s = _canvas(120, 120)
    _ellipse(s, (60, 60), (58, 58), _jitter_colour(rng, (195, 40, 185)))
    seam = _jitter_colour(rng, (245, 245, 245))
    cv2.ellipse(s.rgb, (8, 60), (40, 52), 0, -70, 70, seam.tolist(), 5)
    cv2.ellipse(s.rgb, (112, 60), (40, 52), 0, 110, 250, seam.tolist(), 5)
    return s


def _banana(rng: np.random.Generator) -> _Shape:
    s = _canvas(128, 64)
    t = np.linspace(np.pi * 0.15, np.pi * 0.85, 24)
    outer = [(64 - 60 * np.cos(a), 62 - 56 * np.sin(a)) for a in t]
    inner = [(64 - 52 * np.cos(a), 62 - 30 * np.sin(a)) for a in t[::-1]]
    _fill(s, outer + inner, _jitter_colour(rng, (235, 205, 45)))
    tip = _jitter_colour(rng, (90, 60, 25))
    for x, y in (outer[0], outer[-1]):
        cv2.circle(s.rgb, (round(x), round(y)), 5, tip.tolist(), -1)
    return s


def _book(rng: np.random.Generator) -> _Shape:
    s = _canvas(92, 124)
    cover = _jitter_colour(rng, (40, 70, 190))
    _rect(s, (2, 2, 88, 120), cover)
    _paint(s, [(2, 2), (14, 2), (14, 120), (2, 120)], cover * 0.6)  # spine
    _rect(s, (84, 6, 91, 116), _jitter_colour(rng, (240, 235, 220)))  # page edges
    _paint(s, [(26, 20), (76, 20), (76, 34), (26, 34)], _jitter_colour(rng, (230, 210, 60)))  # title
    return s


def _can(rng: np.random.Generator) -> _Shape:
    s = _canvas(68, 124)
    metal = _jitter_colour(rng, (185, 185, 195))
    _rect(s, (4, 12, 64, 112), metal)
    _ellipse(s, (34, 112), (30, 9), metal * 0.8)
    _ellipse(s, (34, 12), (30, 9), np.minimum(metal * 1.15, 255))
    _paint(s, [(4, 40), (64, 40), (64, 84), (4, 84)], metal * 0.55)  # label band
    _paint(s, [(14, 22), (22, 22), (22, 104), (14, 104)], np.minimum(metal * 1.3, 255))  # highlight
    return s


def _cone(rng: np.random.Generator) -> _Shape:
    s = _canvas(104, 124)
    orange = _jitter_colour(rng, (245, 110, 20))
    _rect(s, (2, 106, 102, 122), orange * 0.8)  # base
    _fill(s, [(44, 2), (60, 2), (88, 106), (16, 106)], orange)
    white = _jitter_colour(rng, (240, 240, 240))
    _paint(s, [(36, 34), (68, 34), (73, 52), (31, 52)], white)
    _paint(s, [(26, 70), (78, 70), (83, 86), (21, 86)], white)
    return s


def _hammer(rng: np.random.Generator) -> _Shape:
    s = _canvas(84, 128)
    _rect(s, (34, 24, 50, 126), _jitter_colour(rng, (150, 95, 50)))  # handle
    head = _jitter_colour(rng, (95, 95, 100))
    _fill(s, [(2, 4), (70, 4), (82, 10), (82, 18), (70, 26), (2, 26)], head)
    _rect(s, (30, 100, 54, 126), _jitter_colour(rng, (30, 30, 30)))  # grip
    return s


def _phone(rng: np.random.Generator) -> _Shape:
    s = _canvas(64, 124)
    body = _jitter_colour(rng, (28, 28, 32))
    _rect(s, (8, 2, 56, 122), body)  # a rounded rectangle: two rectangles and four corner discs
    _rect(s, (2, 8, 62, 116), body)
    for cx, cy in ((8, 8), (56, 8), (8, 116), (56, 116)):
        _ellipse(s, (cx, cy), (6, 6), body)
    _paint(s, [(8, 14), (56, 14), (56, 106), (8, 106)], _jitter_colour(rng, (50, 80, 130)))  # screen
    cv2.circle(s.rgb, (32, 112), 3, (90, 90, 90), -1)
    return s


_DRAW: dict[str, Callable[[np.random.Generator], _Shape]] = {
    'cup': _cup, 'bottle': _bottle, 'box': _box, 'ball': _ball, 'banana': _banana, 'book': _book,
    'can': _can, 'cone': _cone, 'hammer': _hammer, 'phone': _phone}
# Objects that stand upright tilt a little; objects that lie around take any orientation.
_FREE_ROTATION = frozenset({'ball', 'banana', 'book', 'hammer', 'phone'})


def check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """The classes as a tuple, or ValueError naming the one the generator cannot draw."""
    classes = tuple(classes)
    if not classes:
        raise ValueError('classes: need at least one class')
    for name in classes:
        if name not in _DRAW:
            raise ValueError(f'classes: unknown class {name!r}; the generator draws {list(_DRAW)}')
    if len(set(classes)) != len(classes):
        raise ValueError(f'classes: duplicate names in {list(classes)}')
    return classes


def _smooth_field(rng: np.random.Generator, height: int, width: int, cells: int, channels: int) -> np.ndarray:
    """Low-frequency random field in [0, 1]: a few random cells upsampled bicubically."""
    small = rng.random((cells, cells, channels)).astype(np.float32)
    field = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(field.reshape(height, width, channels), 0, 1)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    kind = rng.integers(4)
    if kind == 0:  # blotchy texture between two colours
        t = _smooth_field(rng, height, width, int(rng.integers(3, 12)), 1)
    elif kind == 1:  # tiles
        step = int(rng.integers(24, 120))
        yy, xx = np.mgrid[0:height, 0:width]
        t = (((yy // step) + (xx // step)) % 2).astype(np.float32)[..., None]
    elif kind == 2:  # wood-like stripes
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        angle = rng.uniform(0, np.pi)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) / rng.uniform(6, 40)
        t = (0.5 + 0.5 * np.sin(phase + 3 * _smooth_field(rng, height, width, 4, 1)[..., 0]))[..., None]
    else:  # gradient
        t = np.linspace(0, 1, width, dtype=np.float32)[None, :, None].repeat(height, 0)
    image = a * (1 - t) + b * t
    image += rng.normal(0, rng.uniform(2, 12), (height, width, 1)).astype(np.float32)  # grain
    for _ in range(int(rng.integers(2, 9))):  # clutter behind the objects
        hit, colour = _clutter(rng, height, width)
        image[hit] = colour
    return image.astype(np.float32)


def _clutter(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, list[float]]:
    """A random line or irregular blob that belongs to no class: its mask and colour."""
    layer = np.zeros((height, width), np.uint8)
    if rng.random() < 0.5:
        p = rng.uniform([0, 0, 0, 0], [width, height, width, height]).astype(int)
        cv2.line(layer, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), 255, int(rng.integers(2, 10)))
    else:
        centre = rng.uniform([0, 0], [width, height])
        n = int(rng.integers(5, 10))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(8, 0.12 * min(height, width), n)
        pts = centre + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], 1)
        cv2.fillPoly(layer, [pts.astype(np.int32)], 255)
    return layer > 0, rng.uniform(0, 255, 3).tolist()


def _rotation_scale(angle_deg: float, scale: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)


def _texture(rng: np.random.Generator, shape: _Shape) -> np.ndarray:
    """Surface texture and shading: mottling times a linear light gradient across the object."""
    h, w = shape.mask.shape
    mottle = 1 + rng.uniform(0.03, 0.2) * (2 * _smooth_field(rng, h, w, 6, 1) - 1)
    gx, gy = rng.uniform(-0.3, 0.3, 2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    shade = 1 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)
    return np.clip(shape.rgb * mottle * shade[..., None], 0, 255)


class _Placer:
    """Pastes objects in z-order, keeping an owner map (0 = background/clutter, i = object i)."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        h, w = image.shape[:2]
        self.owner = np.zeros((h, w), np.int32)
        self.in_image: list[int] = [0]  # index 0 stands for the background
        self.full: list[float] = [0.0]
        self.names: list[str] = ['']

    def place(self, rng: np.random.Generator, name: str, shape: _Shape, long_side: float,
              angle: float) -> bool:
        h, w = self.owner.shape
        sh, sw = shape.mask.shape
        scale = long_side / CANVAS
        rot = _rotation_scale(angle, scale)
        corners = (np.array([[0, 0], [sw, 0], [sw, sh], [0, sh]], np.float32) - [sw / 2, sh / 2]) @ rot.T
        half = np.abs(corners).max(0)
        # The centre stays inside the image; objects may be cut by the border (truncation).
        cx, cy = rng.uniform([half[0] * 0.4, half[1] * 0.4], [w - half[0] * 0.4, h - half[1] * 0.4])
        x0, y0 = max(int(np.floor(cx - half[0])), 0), max(int(np.floor(cy - half[1])), 0)
        x1, y1 = min(int(np.ceil(cx + half[0])) + 1, w), min(int(np.ceil(cy + half[1])) + 1, h)
        if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
            return False
        centre_src = np.array([sw / 2, sh / 2], np.float32)
        matrix = np.hstack([rot, (np.array([cx - x0, cy - y0], np.float32) - rot @ centre_src)[:, None]])
        size = (x1 - x0, y1 - y0)
        mask = cv2.warpAffine(shape.mask, matrix, size, flags=cv2.INTER_LINEAR)
        solid = mask >= 128
        area = int(solid.sum())
        if area < MIN_BOX_SIDE * MIN_BOX_SIDE:
            return False
        owner_roi = self.owner[y0:y1, x0:x1]
        if not self._keeps_visible(owner_roi[solid]):
            return False
        # Premultiplied colour (zero outside the shape), so the warp's interpolation at the edges
        # is the coverage itself and edges blend once, without a dark halo.
        coverage = (shape.mask.astype(np.float32) / 255)[..., None]
        rgb = cv2.warpAffine(_texture(rng, shape) * coverage, matrix, size, flags=cv2.INTER_LINEAR)
        alpha = (mask.astype(np.float32) / 255)[..., None]
        roi = self.image[y0:y1, x0:x1]
        roi *= 1 - alpha
        roi += rgb
        owner_roi[solid] = len(self.in_image)
        self.in_image.append(area)
        self.full.append(float((shape.mask >= 128).sum()) * scale * scale)
        self.names.append(name)
        return True

    def _keeps_visible(self, covered_owners: np.ndarray) -> bool:
        """Whether covering these pixels leaves every object its minimum visible fraction."""
        n = len(self.in_image)
        visible = np.bincount(self.owner.ravel(), minlength=n)
        lost = np.bincount(covered_owners, minlength=n)
        return all(visible[j] - lost[j] >= MIN_VISIBLE_FRACTION * self.in_image[j] for j in range(1, n))

    def occlude(self, hit: np.ndarray, colour: list[float]) -> None:
        """Paint non-class clutter in front of the objects, unless it hides too much of one."""
        if self._keeps_visible(self.owner[hit]):
            self.image[hit] = colour
            self.owner[hit] = 0

    def boxes(self) -> tuple[Box, ...]:
        out = []
        counts = np.bincount(self.owner.ravel(), minlength=len(self.in_image))
        for j in range(1, len(self.in_image)):
            ys, xs = np.nonzero(self.owner == j)
            x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            out.append(Box(self.names[j], float(x1), float(y1), float(x2), float(y2),
                           visibility=round(float(counts[j]) / self.in_image[j], 4),
                           truncated=round(float(np.clip(1 - self.in_image[j] / max(self.full[j], 1), 0, 1)),
                                           4)))
        return tuple(out)


def _lighting(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Uneven illumination, colour cast, contrast, blur and sensor noise."""
    h, w = image.shape[:2]
    gain = rng.uniform(0.55, 1.25) + rng.uniform(0, 0.5) * (_smooth_field(rng, h, w, 3, 1) - 0.5)
    tint = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    mean = image.mean()
    contrast = rng.uniform(0.75, 1.2)
    image = ((image - mean) * contrast + mean) * gain * tint
    r = rng.random()
    if r < 0.25:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.6))
    elif r < 0.4:  # motion blur
        k = int(rng.integers(3, 8))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1.0 / k
        rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), rng.uniform(0, 180), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
        image = cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6))
    image += rng.normal(0, rng.uniform(0, 8), image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def render_scene(seed: int, index: int, width: int = 640, height: int = 480,
                 classes: Sequence[str] = DEFAULT_CLASSES) -> Scene:
    """Scene ``index`` of the data set ``seed``; the same arguments always give the same scene."""
    classes = check_classes(classes)
    if seed < 0 or index < 0:
        raise ValueError(f'seed and index must be non-negative, got seed={seed}, index={index}')
    if width < 64 or height < 64:
        raise ValueError(f'scene size {width}x{height} is too small (at least 64x64)')
    rng = np.random.default_rng([seed, index])
    image = _background(rng, height, width)
    placer = _Placer(image)
    wanted = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
    short = min(width, height)
    for _ in range(wanted):
        name = classes[int(rng.integers(len(classes)))]
        shape = _DRAW[name](rng)
        for _attempt in range(6):
            long_side = float(np.exp(rng.uniform(np.log(0.09 * short), np.log(0.4 * short))))
            angle = rng.uniform(-180, 180) if name in _FREE_ROTATION else rng.uniform(-25, 25)
            if placer.place(rng, name, shape, long_side, angle):
                break
    for _ in range(int(rng.integers(0, 3))):  # clutter in front: occludes objects too
        placer.occlude(*_clutter(rng, height, width))
    return Scene(image=_lighting(rng, image), boxes=placer.boxes())
