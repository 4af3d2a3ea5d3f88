"""The training recipe: defaults < YAML config file < command line, validated by pydantic.

Every field is a command-line option with the same name (``--batch-size 16``, ``--classes cup
ball``, ``--amp false``; a bare ``--resume`` means true). Unknown keys and bad values are
errors naming the key and where it came from.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import photometric
from .architectures import ARCHITECTURES
from .augment import policy_name
from .backbones import BACKBONES, TORCHVISION_BACKBONE
from .readers import FORMAT_ALIASES


class ConfigError(ValueError):
    """A recipe that cannot be used; the message names the key and the file."""


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra='forbid')

    # 'lesson' (both fields) is the old name, accepted and stored as the current one.
    arch: Literal['centernet', 'single_object', 'lesson'] = Field(
        'centernet', description='detector architecture (lesson: old name of single_object)')
    train_data: str = Field(description='training set: synth directory, COCO/metadata.json or KITTI dir')
    val_data: str | None = Field(None, description='validation set (default: val_fraction of train_data)')
    data_format: Literal['auto', 'coco', 'kitti', 'metadata', 'replicator', 'lesson'] = Field(
        'auto', description='annotation format (lesson: old name of metadata)')
    max_occlusion: float | None = Field(
        None, ge=0, le=1, description='Replicator BasicWriter: drop boxes whose occlusionRatio is above '
        'this (default: keep all)')
    classes: list[str] | None = Field(None, description='class list (default: the training set\'s)')
    class_map: Path | None = Field(None, description='YAML {data_name: our_name or null}: renames, '
                                   'merges (several names to one) and drops (null) classes')
    val_fraction: float = Field(0.1, gt=0, lt=1, description='held out of train_data when no val_data')
    backbone: Literal['tiny', 'resnet_slim', 'resnet18', 'mobilenet_v3'] = Field(
        'tiny', description='centernet backbone: tiny (separable), resnet_slim (ResNet-18\'s blocks at '
        'a fraction of its widths, under 1.1 M parameters), resnet18, mobilenet_v3 (Large)')
    size: Literal['n', 's', 'm'] = Field('n', description='centernet size: neck width 64 / 96 / 128 and the '
                                         'tiny backbone\'s widths; resnet_slim: its widths and depth, '
                                         'neck 64')
    pretrained: str | None = Field(
        None, description='backbone ImageNet weights: torchvision:resnet18, torchvision:mobilenet_v3_large '
        '(downloaded once into the torch hub cache) or a local file in torchvision\'s key layout; the '
        'input is then normalised with ImageNet\'s mean/std')
    input_size: str | None = Field(None, description='network input WIDTHxHEIGHT, e.g. 320x256 or 640x480 '
                                   '(the same as --input-width and --input-height)')
    input_height: int | None = Field(None, gt=0, description='network input height (default: arch\'s)')
    input_width: int | None = Field(None, gt=0, description='network input width (default: arch\'s)')
    epochs: int = Field(30, gt=0)
    batch_size: int = Field(32, gt=0, description='per process')
    lr: float = Field(3e-3, gt=0, description='peak learning rate (AdamW)')
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    workers: Annotated[int, Field(ge=0)] | Literal['auto'] = Field(
        'auto', description='data loader processes per training process; auto = 2 on the CPU (the '
        'network is the limit there), on CUDA the cores per process less one, at most 12 (the loader '
        'is the limit there)')
    cache_images: bool = Field(True, description='decode and letterbox every image once, keep in RAM')
    augment: str = Field('default', description='augmentation policy: none | default | strong '
                         '(sim-to-real); true / false (old recipes) mean default / none')
    photometric_on: Literal['auto', 'loader', 'device'] = Field(
        'auto', description='where the default policy\'s colour jitter, blur and noise run: loader '
        '(per sample, albumentations), device (per batch on the training device; the loader keeps the '
        'geometry), auto = device on CUDA, loader on the CPU')
    targets_on: Literal['auto', 'loader', 'device'] = Field(
        'auto', description='where the training targets (heatmaps, boxes) are made from the augmented '
        'boxes: loader (per sample), device (per batch on the training device, less to copy out of '
        'the loader; centernet only), auto = device on CUDA, loader on the CPU')
    seed: int = Field(0, ge=0)
    device: Literal['auto', 'cpu', 'cuda'] = 'auto'
    amp: bool = Field(True, description='automatic mixed precision (CUDA only)')
    channels_last: bool = Field(True, description='channels-last memory format (CUDA and CPU)')
    compile: Literal['none', 'cudagraphs', 'default', 'reduce-overhead', 'max-autotune'] = Field(
        'none', description='torch.compile the training network (none: eager): cudagraphs replays forward '
        'and backward as CUDA graphs, for a step bound by launching kernels; default, reduce-overhead '
        '(inductor + CUDA graphs), max-autotune are inductor\'s modes (on CUDA they need triton). The '
        'first steps compile; validation and export stay eager')
    sync_bn: bool = Field(False, description='synchronise batch-norm statistics across GPUs (DDP on CUDA); '
                          'costs a GPU wait per batch-norm layer: for small per-GPU batches only')
    threads: int = Field(0, ge=0, description='CPU threads for torch (0 = torch default)')
    deterministic: bool = Field(True, description='deterministic kernels (slower on CUDA)')
    out: str = Field('runs/detector', description='run directory: checkpoints, logs, history')
    resume: bool = Field(False, description='continue from out/last.pt')
    eval_interval: int = Field(1, gt=0, description='validate every N epochs (and after the last)')
    eval_score_threshold: float = Field(0.05, ge=0, le=1, description='lowest score kept for mAP')
    time_limit_minutes: float = Field(0.0, ge=0, description='stop after the epoch that passes it (0 = none)')
    fit_schedule: bool = Field(True, description='with time_limit_minutes: after every epoch, the '
                               'schedule\'s length becomes the epochs that fit the limit (at most epochs), '
                               'so the learning rate has decayed when time is up (as Ultralytics\' time=)')

    @field_validator('arch')
    @classmethod
    def _current_arch_name(cls, value: str) -> str:
        return ARCHITECTURES.canonical(value)

    @field_validator('augment', mode='before')
    @classmethod
    def _augmentation_policy(cls, value: object) -> str:
        return policy_name(value)

    @field_validator('data_format')
    @classmethod
    def _current_format_name(cls, value: str) -> str:
        return FORMAT_ALIASES.get(value, value)

    @field_validator('input_size')
    @classmethod
    def _width_x_height(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.lower().split('x')
        if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            raise ValueError(f'{value!r} is not WIDTHxHEIGHT (e.g. 320x256)')
        return f'{int(parts[0])}x{int(parts[1])}'

    @model_validator(mode='after')
    def _photometric_policy(self) -> TrainConfig:
        if self.photometric_on == 'device' and not photometric.has_device_version(self.augment):
            raise ValueError(f'photometric_on device is built for the default augmentation policy only, '
                             f'not {self.augment!r}: use photometric_on loader or auto')
        return self

    @model_validator(mode='after')
    def _targets_architecture(self) -> TrainConfig:
        if self.targets_on == 'device' and ARCHITECTURES[self.arch].encode_batch is None:
            raise ValueError(f'targets_on device: --arch {self.arch} encodes its targets in the loader only; '
                             'use targets_on loader or auto')
        return self

    @model_validator(mode='after')
    def _model_choice(self) -> TrainConfig:
        if self.input_size is not None:
            width, height = (int(v) for v in self.input_size.split('x'))
            if self.input_width not in (None, width) or self.input_height not in (None, height):
                raise ValueError(f'input_size {self.input_size} and input_width/input_height '
                                 f'{self.input_width}x{self.input_height} disagree')
            self.input_width, self.input_height = width, height
        if self.pretrained and self.pretrained.startswith('torchvision:'):
            named = TORCHVISION_BACKBONE.get(self.pretrained.split(':', 1)[1])
            if named is None:
                raise ValueError(f'pretrained {self.pretrained}: torchvision weights known here are '
                                 + ', '.join('torchvision:' + n for n in TORCHVISION_BACKBONE))
            if 'backbone' not in self.model_fields_set:
                self.backbone = named  # the weights say which backbone they are for
            elif named != self.backbone:
                raise ValueError(f'pretrained {self.pretrained} is for backbone {named}, not {self.backbone}')
        if self.pretrained and self.backbone not in BACKBONES:  # only torchvision's have weights
            raise ValueError(f'pretrained: the {self.backbone} backbone has no ImageNet weights (--backbone '
                             f'{" or ".join(BACKBONES)})')
        if self.backbone not in ARCHITECTURES[self.arch].backbones or (
                self.size != 'n' and len(ARCHITECTURES[self.arch].backbones) == 1):
            raise ValueError(f'arch {self.arch} has no backbone or size choice')
        return self

    @model_validator(mode='after')
    def _input_size_pairs(self) -> TrainConfig:
        if (self.input_height is None) != (self.input_width is None):
            raise ValueError('input_height and input_width are given together')
        return self


def _is_list(annotation: Any) -> bool:
    return get_origin(annotation) is list or any(get_origin(a) is list for a in get_args(annotation))


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


MOST_AUTO_WORKERS = 12  # a 21 ms step of batch 32 on the H200 takes ~1,600 images/s: ~8 processes' worth


def loader_workers(setting: int | str, device_type: str, cores: int, processes: int = 1) -> int:
    """``workers`` as a count: ``auto`` = 2 on the CPU; on CUDA each training process's share of
    the ``cores`` less one (its own), between 2 and MOST_AUTO_WORKERS."""
    if setting != 'auto':
        return int(setting)
    if device_type != 'cuda':
        return 2
    return max(2, min(MOST_AUTO_WORKERS, cores // max(1, processes) - 1))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field; values stay strings for pydantic to convert and check."""
    parser.add_argument('--config', type=Path, help='YAML recipe (e.g. config/train_default.yaml)')
    for name, field in TrainConfig.model_fields.items():
        kwargs: dict[str, Any] = {'dest': name, 'default': argparse.SUPPRESS, 'help': field.description}
        if _is_list(field.annotation):
            kwargs['nargs'] = '+'
        elif _is_bool(field.annotation):
            kwargs.update(nargs='?', const='true', metavar='BOOL')
        parser.add_argument('--' + name.replace('_', '-'), **kwargs)


def load_config(args: argparse.Namespace | None = None, path: str | Path | None = None,
                overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the YAML file, then parsed command-line options, then ``overrides``."""
    values: dict[str, Any] = {}
    sources: list[str] = []
    path = path or (getattr(args, 'config', None) if args is not None else None)
    if path is not None:
        sources.append(str(path))
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding='utf-8')) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f'{path}: unreadable recipe: {exc}') from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f'{path}: a recipe is a mapping of keys to values')
        values.update(loaded)
    if args is not None:
        cli = {k: v for k, v in vars(args).items() if k in TrainConfig.model_fields}
        if cli:
            sources.append('command line')
        values.update(cli)
    values.update(overrides or {})
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as exc:
        # A check across keys has no key path; pydantic's 'Value error, ' says nothing to a user.
        problems = '; '.join(': '.join(filter(None, ('.'.join(str(p) for p in e['loc']),
                                                     e['msg'].removeprefix('Value error, '))))
                             for e in exc.errors())
        raise ConfigError(f'{" + ".join(sources) or "recipe"}: {problems}') from None


def parse_config(argv: Sequence[str] | None = None, prog: str = 'perception-train') -> TrainConfig:
    return parse_command(argv, prog)[0]


def parse_command(argv: Sequence[str] | None = None, prog: str = 'perception-train'
                  ) -> tuple[TrainConfig, int]:
    """perception-train's command line: -> the recipe and how many processes train it."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument('--nproc-per-node', type=int, default=1, metavar='N',
                        help='training processes on this machine, one per GPU (as torchrun starts '
                        'them; --batch-size is per process); not a recipe key')
    args = parser.parse_args(argv)
    if args.nproc_per_node < 1:
        parser.error(f'--nproc-per-node: {args.nproc_per_node} is not a number of processes')
    try:
        return load_config(args), args.nproc_per_node
    except ConfigError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits
