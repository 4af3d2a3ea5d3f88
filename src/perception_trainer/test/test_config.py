"""The recipe: defaults < YAML < command line, errors that name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception_trainer.architectures import ARCHITECTURES
from perception_trainer.config import ConfigError, TrainConfig, load_config, loader_workers, parse_config

WORKSPACE = Path(__file__).resolve().parents[3]


def test_default_recipe_file_is_valid_and_the_command_line_wins() -> None:
    recipe = WORKSPACE / 'config' / 'train_default.yaml'
    cfg = parse_config(['--config', str(recipe), '--epochs', '3', '--classes', 'cup', 'ball',
                        '--amp', 'false', '--resume'])
    assert cfg.arch == 'centernet' and cfg.batch_size == 64  # from the file
    assert cfg.epochs == 3 and cfg.classes == ['cup', 'ball'] and cfg.amp is False and cfg.resume is True


def test_every_field_is_a_command_line_option() -> None:
    cfg = parse_config(['--train-data', 'x', '--input-height', '128', '--input-width', '160',
                        '--time-limit-minutes', '1.5', '--device', 'cpu'])
    assert (cfg.input_height, cfg.input_width, cfg.time_limit_minutes, cfg.device) == (128, 160, 1.5, 'cpu')
    assert set(TrainConfig.model_fields) >= {'lr', 'workers', 'sync_bn', 'channels_last', 'seed'}


def test_bad_recipes_name_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / 'recipe.yaml'
    path.write_text('train_data: d\nepochs: -1\nbatchsize: 4\n')
    with pytest.raises(ConfigError) as error:
        load_config(path=path)
    message = str(error.value)
    assert str(path) in message and 'epochs' in message and 'batchsize' in message
    with pytest.raises(ConfigError, match='input_height and input_width'):
        load_config(overrides={'train_data': 'd', 'input_height': 64})
    with pytest.raises(SystemExit):
        parse_config(['--train-data', 'x', '--device', 'tpu'])


def test_the_old_names_lesson_are_accepted_and_stored_as_the_current_ones(tmp_path: Path) -> None:
    path = tmp_path / 'old.yaml'
    path.write_text('train_data: d\narch: lesson\ndata_format: lesson\n')
    old = load_config(path=path)
    assert (old.arch, old.data_format) == ('single_object', 'metadata')
    assert old.model_dump()['arch'] == 'single_object'  # what config.yaml and checkpoints record
    cli = parse_config(['--train-data', 'x', '--arch', 'lesson', '--data-format', 'lesson'])
    new = parse_config(['--train-data', 'x', '--arch', 'single_object', '--data-format', 'metadata'])
    assert cli == new
    with pytest.raises(SystemExit):
        parse_config(['--train-data', 'x', '--arch', 'lessons'])
    # Checkpoints and bundles that recorded the old name still find their architecture.
    assert ARCHITECTURES['lesson'] is ARCHITECTURES['single_object']
    assert list(ARCHITECTURES) == ['centernet', 'single_object'] and 'lesson' in ARCHITECTURES


def test_workers_auto_or_a_count() -> None:
    """auto: 2 on the CPU; on CUDA each process's share of the cores less one, 2 to 12."""
    assert parse_config(['--train-data', 'x']).workers == 'auto'
    assert parse_config(['--train-data', 'x', '--workers', '3']).workers == 3
    with pytest.raises(ConfigError, match='workers'):
        load_config(overrides={'train_data': 'd', 'workers': 'many'})
    with pytest.raises(ConfigError, match='workers'):
        load_config(overrides={'train_data': 'd', 'workers': -1})
    assert loader_workers('auto', 'cpu', cores=16) == 2
    assert loader_workers('auto', 'cuda', cores=16) == 12
    assert loader_workers('auto', 'cuda', cores=16, processes=2) == 7
    assert loader_workers('auto', 'cuda', cores=2) == 2
    assert loader_workers(5, 'cuda', cores=64) == 5
