"""The CenterNet family: torchvision key layouts, ImageNet weights from a local file, a short CPU
training run per backbone that learns, --input-size, and the cost table the README quotes.

The layouts in fixtures/torchvision_layouts.json are torchvision's resnet18 and mobilenet_v3_large
checkpoint keys and shapes as torchvision/models/resnet.py and mobilenetv3.py build them; their
parameter totals equal torchvision's own published ``num_params`` (11,689,512 and 5,483,032), a
number these tests did not compute.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from perception_trainer import backbones, checkpoint, distributed
from perception_trainer.architectures import ARCHITECTURES, model_options
from perception_trainer.backbones import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, PretrainedError
from perception_trainer.config import TrainConfig, parse_config
from perception_trainer.epoch import Run, train_one_epoch
from perception_trainer.export import family_costs
from perception_trainer.generate import generate_dataset
from perception_trainer.readers import load_dataset
from perception_trainer.train import _training_state
from perception_trainer.training_data import DetectionDataset, normalise

LAYOUTS = json.loads((Path(__file__).parent / 'fixtures' / 'torchvision_layouts.json').read_text())
CENTERNET = ARCHITECTURES['centernet']
CPU = torch.device('cpu')
BUFFERS = ('running_mean', 'running_var', 'num_batches_tracked')
WORKSPACE = Path(__file__).resolve().parents[3]
TORCHVISION_NAME = {'resnet18': 'resnet18', 'mobilenet_v3': 'mobilenet_v3_large'}


def torchvision_like_checkpoint(name: str, path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in torchvision's layout for ``name``, saved to ``path`` as torch.save would;
    scaled as trained weights are (variances positive, activations bounded), so the network they
    make computes finite numbers that export can verify."""
    generator = torch.Generator().manual_seed(seed)

    def tensor(key: str, shape: list[int]) -> torch.Tensor:
        if key.endswith('num_batches_tracked'):
            return torch.randint(0, 1000, shape, generator=generator)
        if key.endswith('running_var'):
            return torch.rand(shape, generator=generator) + 0.5
        noise = torch.randn(shape, generator=generator)
        if len(shape) > 1:  # convolution / linear weights: unit gain
            return noise / math.sqrt(math.prod(shape[1:]))
        return 1 + 0.1 * noise if key.endswith('weight') else 0.1 * noise

    state = {k: tensor(k, shape) for k, shape in LAYOUTS[name].items()}
    torch.save(state, path)
    return state


@pytest.mark.parametrize('backbone', sorted(BACKBONES))
def test_backbone_keys_and_shapes_are_torchvision_s(backbone: str) -> None:
    name = TORCHVISION_NAME[backbone]
    layout = LAYOUTS[name]
    parameters = sum(math.prod(s) for k, s in layout.items() if not k.endswith(BUFFERS))
    assert parameters == LAYOUTS['num_params'][name]
    built = {k: list(v.shape) for k, v in BACKBONES[backbone]().state_dict().items()}
    head = set(backbones.HEAD_KEYS[name])
    assert built == {k: s for k, s in layout.items() if k not in head}  # same keys, shapes and order
    assert list(built) == [k for k in layout if k not in head]


@pytest.mark.parametrize('backbone', sorted(BACKBONES))
def test_pretrained_file_weights_land_and_the_input_is_imagenet_normalised(backbone: str,
                                                                           tmp_path: Path) -> None:
    name = TORCHVISION_NAME[backbone]
    path = tmp_path / f'{name}.pth'
    saved = torchvision_like_checkpoint(name, path)
    cfg = TrainConfig(train_data='-', backbone=backbone, pretrained=str(path), device='cpu')
    spec = CENTERNET.input_spec(128, 160, imagenet=cfg.pretrained is not None)
    assert (spec.mean, spec.std) == (IMAGENET_MEAN, IMAGENET_STD)
    run = Run(cfg, CENTERNET, spec, ('a', 'b'), distributed.Process(), CPU)
    state = _training_state(run, steps=1, start_epoch=0, resuming=False)
    loaded = state.model.backbone.state_dict()
    assert set(loaded) == set(saved) - set(backbones.HEAD_KEYS[name])
    assert all(torch.equal(loaded[k], saved[k]) for k in loaded)
    averaged = state.average.model.backbone.state_dict()  # the validated and exported weights start there too
    assert all(torch.equal(averaged[k], saved[k]) for k in averaged)


def test_a_wrong_pretrained_file_is_an_error_naming_the_file_and_the_keys(tmp_path: Path) -> None:
    path = tmp_path / 'mobilenet.pth'
    torchvision_like_checkpoint('mobilenet_v3_large', path)
    with pytest.raises(PretrainedError) as error:
        backbones.load_torchvision_weights(BACKBONES['resnet18'](), *backbones.read_checkpoint(str(path)))
    message = str(error.value)
    assert str(path) in message and 'not torchvision resnet18 weights' in message
    assert '122 missing keys (conv1.weight, bn1.weight, bn1.bias' in message
    assert 'unexpected keys (classifier.0.bias' in message
    wrong = torchvision_like_checkpoint('resnet18', tmp_path / 'resnet18.pth')
    wrong['layer1.0.conv1.weight'] = torch.zeros(64, 64, 1, 1)
    del wrong['fc.bias']
    torch.save(wrong, tmp_path / 'resnet18.pth')
    expected = '1 missing keys (fc.bias); 1 keys of another shape (layer1.0.conv1.weight: (64, 64, 1, 1) not '
    with pytest.raises(PretrainedError, match=re.escape(expected + '(64, 64, 3, 3))')):
        backbones.load_torchvision_weights(BACKBONES['resnet18'](), *backbones.read_checkpoint(
            str(tmp_path / 'resnet18.pth')))
    (tmp_path / 'text.pth').write_text('not a checkpoint')
    with pytest.raises(PretrainedError, match=r'text\.pth: unreadable checkpoint'):
        backbones.read_checkpoint(str(tmp_path / 'text.pth'))
    with pytest.raises(PretrainedError, match='no such file'):
        backbones.read_checkpoint(str(tmp_path / 'absent.pth'))


def test_the_default_model_is_tiny_n_and_the_shipped_one_is_what_its_recipe_names() -> None:
    torch.manual_seed(0)
    default = CENTERNET.build(3)
    torch.manual_seed(0)
    chosen = CENTERNET.model(3, 'tiny', 'n')
    assert not hasattr(default, 'backbone')
    assert default.state_dict().keys() == chosen.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), chosen.state_dict().values(),
                                                 strict=True))
    shipped = json.loads((WORKSPACE / 'models' / 'detector' / 'model.json').read_text())
    built = CENTERNET.model(len(shipped['classes']), **model_options(shipped['training']))
    assert shipped['model']['parameters'] == sum(p.numel() for p in built.parameters())


def test_input_size_is_width_x_height_and_agrees_with_the_pair() -> None:
    cfg = parse_config(['--train-data', 'x', '--input-size', '640x480'])
    assert (cfg.input_width, cfg.input_height) == (640, 480)
    both = parse_config(['--train-data', 'x', '--input-size', '320x256', '--input-width', '320'])
    assert (both.input_width, both.input_height) == (320, 256)
    for bad in (['--input-size', '640'], ['--input-size', '640x480', '--input-height', '256'],
                ['--pretrained', 'torchvision:resnet18', '--backbone', 'mobilenet_v3'],
                ['--pretrained', 'torchvision:vgg16'], ['--arch', 'single_object', '--backbone', 'resnet18'],
                ['--backbone', 'resnet_slim', '--pretrained', 'w.pth'], ['--pretrained', 'w.pth']):
        with pytest.raises(SystemExit):
            parse_config(['--train-data', 'x', *bad])
    assert parse_config(['--train-data', 'x', '--pretrained', 'torchvision:mobilenet_v3_large']).backbone == \
        'mobilenet_v3'


@pytest.fixture(scope='module')
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp('family') / 'set', 8, seed=31, size=(160, 128),
                            classes=('ball', 'cone'), workers=1, progress=False)


@pytest.mark.parametrize('backbone, size', [('tiny', 'n'), ('tiny', 's'), ('resnet_slim', 'm'),
                                            ('resnet18', 'n'), ('mobilenet_v3', 'n')])
def test_each_backbone_learns_on_the_cpu(backbone: str, size: str, frames: Path) -> None:
    """A few dozen steps on 8 frames: the loss falls clearly and the heatmap finds the objects."""
    torch.manual_seed(0)
    labelled = load_dataset(frames)
    spec = CENTERNET.input_spec(128, 160)
    data = DetectionDataset(labelled.samples, spec, CENTERNET.encode, len(labelled.classes), train=False,
                            cache=True, progress=False)
    loader = DataLoader(data, batch_size=4)
    cfg = TrainConfig(train_data='-', backbone=backbone, size=size, device='cpu', epochs=40, lr=6e-3,
                      warmup_epochs=0.5, augment='none')
    run = Run(cfg, CENTERNET, spec, tuple(labelled.classes), distributed.Process(), CPU)
    state = _training_state(run, len(loader), 0, resuming=False)
    losses = [train_one_epoch(state.model, state, loader, run, epoch).means['loss']
              for epoch in range(cfg.epochs)]
    assert losses[-1] < 0.4 * losses[0], losses
    batch = next(iter(loader))
    state.model.eval()
    with torch.no_grad():
        logits, _ = state.model(normalise(batch['image'], spec))
    peak = torch.sigmoid(logits).amax().item()
    assert peak > 0.3  # from the 0.01 prior: a detection on a training frame


def test_the_cost_table_covers_every_size_and_backbone() -> None:
    rows = family_costs(classes=3, height=256, width=320)
    assert {(r['size'], r['backbone']) for r in rows} == {
        (s, b) for s in 'nsm' for b in ('tiny', 'resnet_slim', *BACKBONES)}
    by = {(r['size'], r['backbone']): r for r in rows}
    assert by['n', 'tiny']['parameters'] == sum(p.numel() for p in CENTERNET.build(3).parameters())
    assert 0 < by['n', 'tiny']['gflops'] < by['s', 'tiny']['gflops'] < by['m', 'tiny']['gflops']
    assert by['n', 'resnet18']['parameters'] > 11_000_000 > by['n', 'mobilenet_v3']['parameters'] > 3_000_000
    # resnet_slim: every size fits the shipped bundle's 10 MB (float16: about 4.2 bytes per parameter)
    slim = [by[s, 'resnet_slim']['parameters'] for s in 'nsm']
    assert slim == sorted(slim) and slim[-1] < 2_300_000, slim
    print('\n'.join(f"{r['size']} {r['backbone']}: {r['parameters']} parameters, {r['gflops']} GFLOPs"
                    for r in rows))


def test_a_pretrained_mobilenet_trains_exports_and_writes_imagenet_normalisation(
        frames: Path, tmp_path: Path, cli: Callable) -> None:
    weights = tmp_path / 'mobilenet_v3_large.pth'
    torchvision_like_checkpoint('mobilenet_v3_large', weights)
    run, bundle = tmp_path / 'run', tmp_path / 'bundle'
    cli('train', '--train-data', frames, '--val-data', frames, '--epochs', 1, '--batch-size', 4,
        '--workers', 0, '--device', 'cpu', '--backbone', 'mobilenet_v3', '--pretrained', weights,
        '--input-size', '128x96', '--out', run)
    assert checkpoint.load(run / checkpoint.BEST)['meta']['config']['backbone'] == 'mobilenet_v3'
    cli('export', '--checkpoint', run / checkpoint.BEST, '--out', bundle)
    document = json.loads((bundle / 'model.json').read_text())
    assert (document['input']['width'], document['input']['height']) == (128, 96)
    normalisation = (tuple(document['input']['mean']), tuple(document['input']['std']))
    assert normalisation == (IMAGENET_MEAN, IMAGENET_STD)
    assert document['output']['format'] == 'dense_boxes_scores'
    assert document['model']['parameters'] > 3_000_000
