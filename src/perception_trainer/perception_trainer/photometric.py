"""The ``default`` policy's colour jitter, blur and noise, per batch on the training device
(``photometric_on: device``).

Why: in a loader process ColorJitter, GaussianBlur and GaussNoise take about a third of a training
sample's time (bench/README.md, "Where a training sample's time goes"), and on a GPU host the
loader is what limits training. On the GPU the whole batch is one replay of a CUDA graph, which
runs beside the launches of the training step (bench/README.md). The loader keeps the geometry
(Affine, flip), which moves the boxes, and draws each sample's photometric parameters with its own
seed, so the augmentation still depends only on (seed, epoch, index), whatever the worker count.
The noise field is drawn on the device from a generator seeded by the batch's first sample, which
the sampler fixes.

The operations follow albumentations 2.0.8's (``augment._default`` names the same ranges):
ColorJitter's brightness, contrast and saturation blends and its HSV hue shift, in a random order
per sample; then one of a Gaussian blur (3-5 taps, sigma 0.5-3, reflected borders) or Gaussian
noise (per pixel and channel). They work on float pixels 0-255 and clip after each step;
albumentations rounds to uint8 after each.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from . import seeds

# The default policy's photometric ranges and chances; augment._default builds its albumentations
# transforms from these.
JITTER_CHANCE = 0.7
BRIGHTNESS = CONTRAST = SATURATION = 0.25
HUE = 0.02
BLUR_OR_NOISE_CHANCE = 0.3  # then one of the two, evenly
BLUR_SIZES = (3, 5)
BLUR_SIGMA = (0.5, 3.0)
NOISE_STD = (0.02, 0.06)  # of 255
TAPS = max(BLUR_SIZES)
# One sample's parameters: the four jitter factors, the order they apply in, blur sigma and size
# (size 0: no blur), noise standard deviation in pixel levels (0: none).
BRIGHT, CONTR, SAT, HUE_SHIFT, ORDER, SIGMA, SIZE, NOISE = 0, 1, 2, 3, 4, 8, 9, 10
PARAMETERS = 11
POLICY = 'default'  # the one augmentation policy with a device version


def has_device_version(policy: str) -> bool:
    """Whether ``policy`` (a policy name) can run its colour, blur and noise here, per batch."""
    return policy == POLICY


def place(setting: str, policy: str, device_type: str) -> str:
    """'loader' or 'device': where ``photometric_on`` (auto, loader, device; TrainConfig checks it)
    runs the colour, blur and noise of ``policy``: only ``default`` has a device version. ``auto`` =
    the device on CUDA, the loader on the CPU (there the loader processes run beside the training
    step, which would pay for the work itself)."""
    if not has_device_version(policy):
        return 'loader'
    if setting == 'auto':
        return 'device' if device_type == 'cuda' else 'loader'
    return setting


def draw(seed: int) -> np.ndarray:
    """One sample's parameters (float32 [PARAMETERS]) from its seed."""
    rng = np.random.default_rng(seed)
    p = np.zeros(PARAMETERS, np.float32)
    p[[BRIGHT, CONTR, SAT]] = 1.0
    if rng.random() < JITTER_CHANCE:
        p[BRIGHT] = rng.uniform(1 - BRIGHTNESS, 1 + BRIGHTNESS)
        p[CONTR] = rng.uniform(1 - CONTRAST, 1 + CONTRAST)
        p[SAT] = rng.uniform(1 - SATURATION, 1 + SATURATION)
        p[HUE_SHIFT] = rng.uniform(-HUE, HUE)
    p[ORDER:ORDER + 4] = rng.permutation(4)
    if rng.random() < BLUR_OR_NOISE_CHANCE:
        if rng.random() < 0.5:
            size = int(rng.integers(BLUR_SIZES[0], BLUR_SIZES[1] + 1))
            p[SIZE] = size + 1 if size % 2 == 0 else size  # albumentations makes even sizes odd
            p[SIGMA] = rng.uniform(*BLUR_SIGMA)
        else:
            p[NOISE] = rng.uniform(*NOISE_STD) * 255
    return p


def _grey(images: torch.Tensor) -> torch.Tensor:
    # ITU-R BT.601 luma, as OpenCV's RGB2GRAY: [B, 1, H, W]
    # Python scalars, not a weights tensor: a host-to-device copy cannot sit in a CUDA graph
    r, g, b = images.split(1, dim=1)
    return 0.299 * r + 0.587 * g + 0.114 * b


def _hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``shift`` turns ([B]) through HSV, as OpenCV's float conversion does: to HSV,
    add, and back with the closed form channel = V - V S clamp(min(k, 4 - k), 0, 1),
    k = (n + 6 H) mod 6 for n = 5, 3, 1 (red, green, blue)."""
    r, g, b = images.unbind(1)
    value, _ = images.max(1)
    chroma = value - images.min(1)[0]
    flat = chroma == 0
    saturation = chroma / value.clamp(min=1e-12)
    divisor = torch.where(flat, torch.ones_like(chroma), chroma)
    rc, gc, bc = (value - r) / divisor, (value - g) / divisor, (value - b) / divisor
    red_max, green_max = value == r, (value == g) & (value != r)
    sixths = torch.where(red_max, bc - gc, torch.where(green_max, 2.0 + rc - bc, 4.0 + gc - rc))
    sixths = torch.where(flat, torch.zeros_like(sixths), sixths)
    sixths = torch.remainder(sixths + 6.0 * shift.view(-1, 1, 1), 6.0)
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + sixths, 6.0)
        channels.append(value - value * saturation * torch.minimum(k, 4.0 - k).clamp(0, 1))
    return torch.stack(channels, 1)


def _blur(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    b, c, h, w = images.shape
    taps = torch.arange(TAPS, device=images.device, dtype=images.dtype) - TAPS // 2
    size, sigma = params[:, SIZE:SIZE + 1], params[:, SIGMA:SIGMA + 1].clamp(min=1e-3)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2) * (taps.abs() <= size // 2)
    kernel = (kernel / kernel.sum(1, keepdim=True))[:, None].expand(b, c, TAPS).reshape(b * c, TAPS)
    x = images.reshape(1, b * c, h, w)
    pad = TAPS // 2
    x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode='reflect'), kernel.view(b * c, 1, 1, TAPS), groups=b * c)
    x = F.conv2d(F.pad(x, (0, 0, pad, pad), mode='reflect'), kernel.view(b * c, 1, TAPS, 1), groups=b * c)
    return x.view(b, c, h, w)


def _apply(images: torch.Tensor, params: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    # Tensor code only, no reads back to the host, so that a CUDA graph can hold all of it: every
    # operation runs on the whole batch and a sample that did not draw it is passed through as it is.
    x = images.to(torch.float32)
    jittered = (params[:, BRIGHT:SAT + 1] != 1).any(1) | (params[:, HUE_SHIFT] != 0)
    for slot in range(4):
        # Brightness, contrast and saturation are each x f + (1 - f) target (target 0, the image's
        # mean grey, the pixel's grey): one blend for the three, weighted per sample.
        op = params[:, ORDER + slot]
        factor = params.gather(1, op.clamp(max=SAT).long().view(-1, 1)).flatten()
        blended = jittered & (op != HUE_SHIFT)
        keep = torch.where(blended, factor, torch.ones_like(factor)).view(-1, 1, 1, 1)
        to_mean = torch.where(blended & (op == CONTR), 1 - factor, torch.zeros_like(factor)).view(-1, 1, 1, 1)
        to_grey = torch.where(blended & (op == SAT), 1 - factor, torch.zeros_like(factor)).view(-1, 1, 1, 1)
        luma = _grey(x)
        x = (x * keep + luma.mean((2, 3), keepdim=True) * to_mean + luma * to_grey).clamp(0, 255)
        hued = (jittered & (op == HUE_SHIFT)).view(-1, 1, 1, 1)
        x = torch.where(hued, _hue(x, params[:, HUE_SHIFT]).clamp(0, 255), x)
    x = torch.where((params[:, SIZE] > 0).view(-1, 1, 1, 1), _blur(x, params), x)
    return (x + noise * params[:, NOISE].view(-1, 1, 1, 1)).clamp(0, 255)


def apply(images: torch.Tensor, params: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """uint8 or float [B, 3, H, W] (0-255) and each sample's :func:`draw` -> float32 0-255, the
    noise field drawn from ``generator`` (on the images' device)."""
    params = params.to(images.device, torch.float32)
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=torch.float32)
    return _apply(images, params, noise)


class OnDevice:
    """:func:`apply` in the training loop. On CUDA its hundreds of small kernels cost more to
    launch than to run (bench/README "Where a training sample's time goes"), so each batch shape is
    captured once as a CUDA graph and replayed; elsewhere it is :func:`apply`."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor,
                                        torch.Tensor, torch.Tensor] | None] = {}

    def __call__(self, images: torch.Tensor, params: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        if self.device.type != 'cuda':
            return apply(images, params, generator)
        key = (tuple(images.shape), images.dtype, tuple(params.shape))
        if key not in self._graphs:
            try:
                self._graphs[key] = self._capture(images, params)
            except RuntimeError as error:  # slower, not wrong: training goes on without the graph
                warnings.warn(f'photometric_on device: no CUDA graph for batches of {tuple(images.shape)} '
                              f'({error}); running it without one', stacklevel=2)
                self._graphs[key] = None
        captured = self._graphs[key]
        if captured is None:
            return apply(images, params, generator)
        graph, static_images, static_params, noise, out = captured
        static_images.copy_(images, non_blocking=True)
        static_params.copy_(params, non_blocking=True)
        noise.normal_(generator=generator)  # outside the graph: the batch's own generator
        graph.replay()
        return out.clone()  # the next replay overwrites out

    def _capture(self, images: torch.Tensor, params: torch.Tensor) -> tuple:
        static_images = torch.empty_like(images, device=self.device)
        static_params = torch.empty(params.shape, device=self.device, dtype=torch.float32)
        noise = torch.zeros(images.shape, device=self.device, dtype=torch.float32)
        static_images.copy_(images)
        static_params.copy_(params)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
            for _ in range(2):
                _apply(static_images, static_params, noise)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the DataLoader's pin-memory thread keeps calling CUDA during the capture,
        # which the default (global) mode counts as an error in the capture.
        with torch.cuda.graph(graph, capture_error_mode='thread_local'):
            out = _apply(static_images, static_params, noise)
        return graph, static_images, static_params, noise, out


def generator_for(device: torch.device, seed: int, epoch: int, first_index: int) -> torch.Generator:
    """The noise generator for one batch: its seed depends on the batch's first sample only."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seeds.derived(seed, epoch, first_index, 7))
    return generator
