"""train_one_epoch, the learning-rate schedule and the training state a checkpoint carries, on a real
model and real rendered frames, in this process; and the non-finite-loss guard, also through the CLI."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from perception_trainer import checkpoint, distributed
from perception_trainer.architectures import ARCHITECTURES
from perception_trainer.checkpoint import TrainingState
from perception_trainer.compilation import compiled_network
from perception_trainer.config import TrainConfig
from perception_trainer.epoch import NOT_TARGETS, NonFiniteLoss, Run, train_one_epoch, train_step
from perception_trainer.readers import load_dataset
from perception_trainer.schedule import Horizon, epoch_pace, warmup_cosine
from perception_trainer.train import _checkpoint_to_resume, _training_state
from perception_trainer.training_data import DetectionDataset
from perception_trainer.weight_average import WeightAverage

ARCH = ARCHITECTURES['single_object']
CPU = torch.device('cpu')


def old_learning_rate(cfg: TrainConfig, epoch: int, step: int, steps: int) -> float:
    """What train.py assigned to every param group before each step, before the scheduler."""
    progress = epoch + step / steps
    if progress < cfg.warmup_epochs:
        factor = max(progress / cfg.warmup_epochs, 1e-3)
    else:
        span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
        t = min((progress - cfg.warmup_epochs) / span, 1.0)
        factor = 0.02 + (1 - 0.02) * 0.5 * (1 + math.cos(math.pi * t))
    return cfg.lr * factor


@pytest.mark.parametrize('warmup, epochs, steps', [(1.0, 40, 250), (0.5, 3, 7), (0.0, 2, 5), (2.5, 4, 3)])
def test_the_schedule_sets_the_old_learning_rate_at_every_step(warmup: float, epochs: int,
                                                               steps: int) -> None:
    cfg = TrainConfig(train_data='-', lr=3e-3, warmup_epochs=warmup, epochs=epochs)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = warmup_cosine(optimizer, cfg, steps)
    for epoch in range(epochs):
        for step in range(steps):
            expected = old_learning_rate(cfg, epoch, step, steps)
            assert optimizer.param_groups[0]['lr'] == expected, (epoch, step)
            optimizer.step()
            scheduler.step()
    # A resumed run's schedule starts where the epoch boundary puts it, with the same rates.
    for epoch in range(1, epochs):
        resumed = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
        warmup_cosine(resumed, cfg, steps, start_step=epoch * steps)
        assert resumed.param_groups[0]['lr'] == old_learning_rate(cfg, epoch, 0, steps)


@pytest.fixture(scope='module')
def batches(small_set: Path) -> tuple[tuple[str, ...], list[dict[str, torch.Tensor]]]:
    """Three batches of four real frames at a small input, unaugmented, in a fixed order."""
    labelled = load_dataset(small_set)
    data = DetectionDataset(labelled.samples, ARCH.input_spec(64, 64), ARCH.encode, len(labelled.classes),
                            train=False, cache=False, progress=False)
    return labelled.classes, list(DataLoader(data, batch_size=4))


def _run(classes: tuple[str, ...], device: torch.device = CPU, **recipe: object) -> Run:
    cfg = TrainConfig(train_data='-', arch='single_object', device=device.type, epochs=2, warmup_epochs=0.5,
                      **recipe)
    return Run(cfg, ARCH, ARCH.input_spec(64, 64), classes, distributed.Process(), device)


def _state(run: Run, steps: int, start_epoch: int = 0, seed: int = 0) -> TrainingState:
    torch.manual_seed(seed)
    model = ARCH.build(len(run.classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=run.cfg.lr, weight_decay=run.cfg.weight_decay)
    # Enabled on the CPU (fp32 losses) so that the scale and its growth tracker move and have state;
    # growth every 2 steps, so the scale changes within the run.
    scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** 10, growth_interval=2)
    return TrainingState(model, WeightAverage(model), optimizer,
                         warmup_cosine(optimizer, run.cfg, steps, start_epoch * steps), scaler)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_resumed_run_continues_the_schedule_and_loss_scale_of_an_uninterrupted_one(
        batches: tuple[tuple[str, ...], list[dict[str, torch.Tensor]]], tmp_path: Path) -> None:
    classes, loader = batches
    run, steps = _run(classes), len(loader)
    whole = _state(run, steps)
    for epoch in range(2):
        losses = train_one_epoch(whole.model, whole, loader, run, epoch)
    assert set(losses.means) == {'loss', 'class', 'box'}
    assert all(math.isfinite(v) for v in losses.means.values())

    first = _state(run, steps)
    train_one_epoch(first.model, first, loader, run, 0)
    path = checkpoint.save(tmp_path / checkpoint.LAST, {**first.state_dict(), 'epoch': 1, 'meta': {}})
    saved = checkpoint.load(path)
    assert saved['scheduler']['last_epoch'] == steps
    resumed = _state(run, steps, start_epoch=1, seed=1)  # other initial weights: all must come from the file
    assert resumed.load_state_dict(saved)
    train_one_epoch(resumed.model, resumed, loader, run, 1)

    assert resumed.scheduler.get_last_lr() == whole.scheduler.get_last_lr()
    assert resumed.scheduler.last_epoch == whole.scheduler.last_epoch == 2 * steps
    assert resumed.optimizer.param_groups[0]['lr'] == whole.optimizer.param_groups[0]['lr']
    scale = whole.scaler.state_dict()
    assert scale['scale'] == 2.0 ** 13 and scale['_growth_tracker'] == 0  # grew after steps 2, 4 and 6
    assert resumed.scaler.state_dict() == scale
    assert saved['scaler']['scale'] == 2.0 ** 11 and saved['scaler']['_growth_tracker'] == 1
    assert _same_weights(resumed.model, whole.model)
    assert _same_weights(resumed.average.model, whole.average.model)
    assert resumed.average.updates == whole.average.updates == 2 * steps


def test_a_checkpoint_without_schedule_and_scale_resumes_on_the_recipes_schedule(
        batches: tuple[tuple[str, ...], list[dict[str, torch.Tensor]]]) -> None:
    """Checkpoints written before the schedule and the scale were saved, and a resume on another
    number of steps per epoch (another number of processes): the schedule is placed at the epoch."""
    classes, loader = batches
    run, steps = _run(classes), len(loader)
    first = _state(run, steps)
    train_one_epoch(first.model, first, loader, run, 0)
    saved = first.state_dict()
    old = {k: v for k, v in saved.items() if k not in ('scheduler', 'scaler')}
    resumed = _state(run, steps, start_epoch=1)
    assert not resumed.load_state_dict(old)
    assert resumed.optimizer.param_groups[0]['lr'] == first.optimizer.param_groups[0]['lr']
    assert resumed.scaler.get_scale() == 2.0 ** 10  # a fresh scale: the old checkpoint had none
    other = _state(run, 2 * steps, start_epoch=1)
    assert not other.load_state_dict(saved)
    assert other.optimizer.param_groups[0]['lr'] == old_learning_rate(run.cfg, 1, 0, 2 * steps)
    assert other.scheduler.last_epoch == 2 * steps


def test_a_non_finite_loss_stops_before_the_optimiser_step_naming_epoch_step_and_part(
        batches: tuple[tuple[str, ...], list[dict[str, torch.Tensor]]]) -> None:
    classes, loader = batches
    run = _run(classes)
    poisoned = [loader[0], {**loader[1], 'box': torch.full_like(loader[1]['box'], math.nan)}, loader[2]]
    state = _state(run, len(poisoned))
    with pytest.raises(NonFiniteLoss, match=r'^epoch 2, step 2/3: non-finite training loss from box '
                                            r'\(loss nan, class [0-9.]+, box nan\)'):
        train_one_epoch(state.model, state, poisoned, run, 1)  # type: ignore[arg-type]
    # Exactly the first optimiser step was taken: the parameters are those of a run of that step
    # alone (batch-norm statistics, not the optimiser's, did see the second batch's forward pass).
    one_step = _state(run, len(poisoned))
    train_one_epoch(one_step.model, one_step, loader[:1], run, 1)  # type: ignore[arg-type]
    assert all(torch.equal(a, b) for a, b in zip(state.model.parameters(), one_step.model.parameters(),
                                                 strict=True))
    assert state.scheduler.last_epoch == 1 and state.average.updates == 1
    assert all(torch.isfinite(p).all() for p in state.model.parameters())


def test_a_learning_rate_that_blows_up_stops_training_with_the_step(small_set: Path, cli: Callable,
                                                                    tmp_path: Path) -> None:
    done = cli('train', '--arch', 'single_object', '--train-data', small_set, '--val-data', small_set,
               '--epochs', 1, '--batch-size', 4, '--workers', 0, '--device', 'cpu', '--lr', 1e30,
               '--input-height', 64, '--input-width', 64, '--out', tmp_path / 'run', check=False)
    assert done.returncode == 1
    assert 'perception-train: epoch 1, step ' in done.stderr and 'non-finite training loss' in done.stderr
    assert 'Traceback' not in done.stderr and not (tmp_path / 'run' / checkpoint.LAST).exists()


def test_a_checkpoint_that_recorded_the_old_arch_name_resumes(tmp_path: Path) -> None:
    cfg = TrainConfig(train_data='-', arch='lesson', out=str(tmp_path), resume=True)
    checkpoint.save(tmp_path / checkpoint.LAST, {'model': {}, 'epoch': 1, 'meta': {'arch': 'lesson',
                                                                                    'classes': ['cup']}})
    assert _checkpoint_to_resume(cfg, ARCH, ['cup'], distributed.Process())['epoch'] == 1
    with pytest.raises(ValueError, match='trained for lesson on'):
        _checkpoint_to_resume(cfg, ARCHITECTURES['centernet'], ['cup'], distributed.Process())


def test_the_pace_of_epochs_ahead_leaves_out_the_first_once_another_has_run() -> None:
    """The first epoch also compiles and warms up: counted, a 34 s first epoch beside 3 s ones
    plans for a third of the epochs that fit."""
    assert epoch_pace([11.0]) == 11.0
    assert epoch_pace([34.0, 3.0, 3.4]) == pytest.approx(3.2)
    cfg = TrainConfig(train_data='-', epochs=80)
    assert Horizon(80).fit(cfg, 3, epoch_pace([34.0, 3.0, 3.4]), 60 - 40.4) == 3 + 6


def test_a_fitted_horizon_ends_the_cosine_when_the_time_does() -> None:
    from perception_trainer.schedule import FINAL_LR, lr_factor
    cfg = TrainConfig(train_data='-', lr=3e-3, warmup_epochs=1.0, epochs=40)
    horizon = Horizon(cfg.epochs)
    # 2 epochs done at 20 s each, 100 s left: 5 more fit
    assert horizon.fit(cfg, 2, 20.0, 100.0) == 7
    assert horizon.fit(cfg, 2, 1.0, 1e6) == 40  # never beyond the recipe's epochs
    assert horizon.fit(cfg, 5, 20.0, -3.0) == 5  # out of time: this epoch was the last
    horizon.fit(cfg, 2, 20.0, 100.0)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    steps = 10
    scheduler = warmup_cosine(optimizer, cfg, steps, start_step=0, horizon=horizon)
    for _ in range(horizon.epochs * steps - 1):
        optimizer.step()
        scheduler.step()
    last = optimizer.param_groups[0]['lr']
    assert last == pytest.approx(cfg.lr * lr_factor(7 - 1 / steps, cfg, 7)) and last < 0.03 * cfg.lr
    assert lr_factor(7, cfg, 7) == pytest.approx(FINAL_LR)


def test_on_the_cpu_channels_last_changes_the_layout_not_the_losses(
        batches: tuple[tuple[str, ...], list[dict[str, torch.Tensor]]]) -> None:
    """channels-last is on for the CPU too (twice the speed of the tiny model's step there): the
    trainer's own state takes the layout, and three real steps give the same losses as without."""
    classes, data = batches
    losses = {}
    for channels_last in (True, False):
        run = _run(classes, channels_last=channels_last)
        assert run.channels_last is channels_last
        torch.manual_seed(0)
        state = _training_state(run, steps=len(data), start_epoch=0, resuming=False)
        state.model.train()
        conv = next(m for m in state.model.modules()
                    if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1 and m.in_channels > 1)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) is channels_last
        values = []
        for batch in data:
            targets = {k: v for k, v in batch.items() if k not in NOT_TARGETS}
            values.append(train_step(state.model, state, batch['image'], targets, run, where='test')[1])
        losses[channels_last] = torch.stack(values)
    assert torch.allclose(losses[True], losses[False], rtol=1e-3, atol=1e-5), losses


ON_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA graphs need a CUDA device')


@pytest.mark.parametrize(('mode', 'device'), [
    ('default', CPU), ('cudagraphs', CPU), pytest.param('cudagraphs', torch.device('cuda'), marks=ON_CUDA)])
def test_a_compiled_network_takes_the_steps_of_the_eager_one(
        batches: tuple[tuple[str, ...], list[dict[str, torch.Tensor]]], mode: str, device: torch.device
) -> None:
    """``compile``: three real steps through torch.compile's graph (default: inductor's C++ on the
    CPU; cudagraphs: AOTAutograd's graph, replayed as CUDA graphs on a GPU) give the eager network's
    losses, up to the order of float sums, and train the eager module's weights (those the
    checkpoint saves)."""
    classes, data = batches
    losses, weights = {}, {}
    for each in ('none', mode):
        run = _run(classes, device, compile=each)
        torch.manual_seed(0)
        state = _training_state(run, steps=len(data), start_epoch=0, resuming=False)
        state.model.train()
        initial = {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items()}
        net = compiled_network(state.model, run.cfg, device)
        assert (net is state.model) is (each == 'none')
        values = []
        for batch in data:
            targets = {k: v.to(device) for k, v in batch.items() if k not in NOT_TARGETS}
            values.append(train_step(net, state, batch['image'].to(device), targets, run, where='test')[1])
        losses[each] = torch.stack(values).cpu()
        weights[each] = {k: v.cpu() for k, v in state.model.state_dict().items()}
    assert torch.allclose(losses[mode], losses['none'], rtol=1e-3, atol=1e-5), losses
    assert weights[mode].keys() == weights['none'].keys()
    # Adam turns a rounding-sized gradient difference into a step-sized one, so compare how far the
    # two runs' weights are apart with how far training moved them.
    floats = [k for k, v in initial.items() if v.is_floating_point()]
    apart = torch.cat([(weights[mode][k] - weights['none'][k]).flatten() for k in floats]).norm()
    moved = torch.cat([(weights['none'][k] - initial[k]).flatten() for k in floats]).norm()
    assert apart < 0.1 * moved, (float(apart), float(moved))
