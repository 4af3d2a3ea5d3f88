"""Augmentation policies by name: ``none``, ``default`` (the shipped recipe's) and ``strong`` (sim-to-real).

Every policy is an albumentations Compose applied to the letterboxed network canvas, box-aware:
boxes follow the geometric transforms, are clipped to the frame, and a box cut to less than
:data:`MIN_VISIBILITY` of itself is dropped. ``strong`` widens what the default covers and adds
what a real camera does that the renderer does not (gamma and white balance, motion blur, ISO
noise, JPEG artefacts, lost resolution, occluders), each one a statistic ``perception-gap`` measures.
"""

from __future__ import annotations

from collections.abc import Callable

import albumentations as A

from perception_core.bundle import InputSpec

from . import photometric as ph
from . import seeds

MIN_VISIBILITY = 0.4  # a box cut by augmentation to less than this fraction of itself is dropped
POLICIES = ('none', 'default', 'strong')
# Old recipes said ``augment: true`` / ``false`` (and the command line ``--augment false``).
_BOOLEAN_NAMES = {'true': 'default', 'yes': 'default', 'on': 'default', '1': 'default',
                  'false': 'none', 'no': 'none', 'off': 'none', '0': 'none'}


def policy_name(value: object) -> str:
    """A policy name, or an old boolean (true = ``default``, false = ``none``) -> the policy name."""
    if isinstance(value, bool):
        return 'default' if value else 'none'
    if isinstance(value, str):
        name = value.strip().lower()
        name = _BOOLEAN_NAMES.get(name, name)
        if name in POLICIES:
            return name
    raise ValueError(f'unknown augmentation policy {value!r} (one of {", ".join(POLICIES)}; '
                     'true / false mean default / none)')


def _boxes() -> A.BboxParams:
    return A.BboxParams(format='pascal_voc', label_fields=['labels'], clip=True,
                        min_visibility=MIN_VISIBILITY, min_width=2, min_height=2)


def _default_geometry(spec: InputSpec) -> list[A.BasicTransform]:
    return [
        A.Affine(scale=(0.75, 1.3), translate_percent=(-0.1, 0.1), keep_ratio=True, fill=spec.pad_value,
                 p=0.7),
        A.HorizontalFlip(p=0.5),
    ]


def _default(spec: InputSpec) -> list[A.BasicTransform]:
    # The shipped recipe's: models/detector was trained with exactly these. The photometric part's
    # ranges are photometric.py's, which runs the same on the training device (photometric_on).
    return [
        *_default_geometry(spec),
        A.ColorJitter(brightness=ph.BRIGHTNESS, contrast=ph.CONTRAST, saturation=ph.SATURATION, hue=ph.HUE,
                      p=ph.JITTER_CHANCE),
        A.OneOf([A.GaussianBlur(blur_limit=ph.BLUR_SIZES, sigma_limit=ph.BLUR_SIGMA),
                 A.GaussNoise(std_range=ph.NOISE_STD)], p=ph.BLUR_OR_NOISE_CHANCE),
    ]


def _strong(spec: InputSpec) -> list[A.BasicTransform]:
    # Ordered as a camera forms the image: scene geometry, then optics (colour response, blur,
    # resolution), then the sensor (noise), then the image topic (JPEG) last.
    return [
        # Scale jitter: objects from twice as near to half as far as rendered.
        A.Affine(scale=(0.5, 1.6), translate_percent=(-0.15, 0.15), keep_ratio=True, fill=spec.pad_value,
                 p=0.8),
        A.HorizontalFlip(p=0.5),
        # Occluders (a hand, a gripper, clutter); boxes stay: the object is still there.
        A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.05, 0.2), hole_width_range=(0.05, 0.2),
                        fill='random_uniform', p=0.3),
        A.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.05, p=0.8),
        A.RandomGamma(gamma_limit=(60, 160), p=0.4),              # tone mapping / gamma
        A.PlanckianJitter(mode='blackbody', p=0.3),                # white balance (colour temperature)
        A.OneOf([A.GaussianBlur(blur_limit=(3, 7)),                # focus
                 A.MotionBlur(blur_limit=(3, 11))], p=0.4),        # exposure while moving
        A.Downscale(scale_range=(0.35, 0.75), p=0.25),             # a lower-resolution sensor, upscaled
        A.OneOf([A.GaussNoise(std_range=(0.02, 0.1)),              # read noise
                 A.ISONoise(color_shift=(0.01, 0.05), intensity=(0.1, 0.6))], p=0.5),  # gain
        A.ImageCompression(compression_type='jpeg', quality_range=(15, 75), p=0.4),  # compressed topics
    ]


_TRANSFORMS: dict[str, Callable[[InputSpec], list[A.BasicTransform]]] = {'default': _default,
                                                                          'strong': _strong}


class IndependentlySeeded(A.Compose):
    """A Compose whose transforms draw independently under one seed.

    albumentations 2.0.8's ``Compose.set_random_seed(s)`` gives every transform the same seed ``s``,
    so every transform draws the same first number: whether each one applies is one shared coin
    (with ``strong``'s probabilities about 1 sample in 5 came out untouched, the rest with nearly
    everything at once). Here each transform, nested ones too, gets its own seed derived from
    ``s`` and its position. ``default`` keeps the plain Compose: the shipped model trained on it.
    """

    def set_random_seed(self, seed: int | None) -> None:
        super().set_random_seed(seed)
        if seed is not None:
            _seed_children(self, [seed])


def _seed_children(compose: A.BaseCompose, path: list[int]) -> None:
    for position, transform in enumerate(compose.transforms):
        seed = seeds.derived(*path, position)
        transform.set_random_seed(seed)
        if isinstance(transform, A.BaseCompose):
            _seed_children(transform, [*path, position])


def policy(name: str, spec: InputSpec, *, photometric: bool = True) -> A.Compose | None:
    """The box-aware augmentation called ``name`` for ``spec``'s canvas; None for ``none``.
    ``photometric=False``: ``default``'s geometry alone (photometric.py does the rest per batch)."""
    name = policy_name(name)
    if name == 'none':
        return None
    if not photometric:
        if not ph.has_device_version(name):
            raise ValueError(f'the {name!r} policy has no per-batch photometric part: only default has')
        return A.Compose(_default_geometry(spec), bbox_params=_boxes())
    compose = IndependentlySeeded if name == 'strong' else A.Compose
    return compose(_TRANSFORMS[name](spec), bbox_params=_boxes())
