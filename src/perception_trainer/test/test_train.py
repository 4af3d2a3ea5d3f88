"""perception-train, -export and -eval as real processes on real generated images.

The learning run is shared by the tests after it: they check the files it leaves, export it and
evaluate the export. Plumbing tests (resume, determinism, lesson model, torchrun) use a tiny set.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from perception_core.bundle import load_bundle
from perception_trainer import checkpoint

LEARN = ('--input-height', 128, '--input-width', 160, '--batch-size', 16, '--workers', 0, '--lr', 0.006,
         '--warmup-epochs', 0.5)
LEARN_EPOCHS = 8
MAP50_FLOOR = 0.3  # mAP@.5 the short run must exceed on its validation set (it starts at 0)
TINY = ('--input-height', 96, '--input-width', 128, '--batch-size', 4, '--device', 'cpu')


@pytest.fixture(scope='session')
def learned(learning_sets: tuple[Path, Path], cli: Callable,
            tmp_path_factory: pytest.TempPathFactory) -> Path:
    train, val = learning_sets
    out = tmp_path_factory.mktemp('learned') / 'run'
    cli('train', '--train-data', train, '--val-data', val, '--epochs', LEARN_EPOCHS, '--out', out, *LEARN)
    return out


@pytest.fixture(scope='session')
def learned_bundle(learned: Path, cli: Callable, learning_sets: tuple[Path, Path]) -> Path:
    bundle = learned.parent / 'bundle'
    cli('export', '--checkpoint', learned / checkpoint.BEST, '--out', bundle,
        '--verify-data', learning_sets[1])
    return bundle


def _history(run: Path) -> list[dict]:
    return json.loads((run / 'history.json').read_text())


@pytest.mark.slow
def test_a_short_run_learns(learned: Path) -> None:
    history = _history(learned)
    assert [r['epoch'] for r in history] == list(range(1, LEARN_EPOCHS + 1))
    first, last = history[0], history[-1]
    assert last['val_loss'] < 0.85 * first['val_loss']
    assert last['mAP50'] > MAP50_FLOOR > first['mAP50']
    assert max(r['mAP'] for r in history) == pytest.approx(checkpoint.load(learned / checkpoint.BEST)
                                                           ['meta']['metrics']['mAP'])
    assert list((learned / 'tensorboard').glob('events.out.tfevents.*'))
    state = checkpoint.load(learned / checkpoint.LAST)
    assert state['epoch'] == LEARN_EPOCHS and state['meta']['classes'] == ['ball', 'cone', 'book']


def test_checkpoints_refuse_pickled_code(tmp_path: Path) -> None:
    path = tmp_path / 'evil.pt'
    torch.save({'model': {}, 'meta': {}, 'hook': print}, path)
    with pytest.raises(checkpoint.CheckpointError, match=f'{path}: unreadable checkpoint'):
        checkpoint.load(path)


@pytest.mark.slow
def test_export_writes_a_verified_bundle_with_dynamic_batch(learned_bundle: Path) -> None:
    bundle = load_bundle(learned_bundle, check_onnx_hash=True)
    assert bundle.output.format == 'dense_boxes_scores' and bundle.classes == ('ball', 'cone', 'book')
    assert (bundle.input.height, bundle.input.width, bundle.input.resize) == (128, 160, 'letterbox')
    model = onnx.load(str(bundle.onnx_path))
    assert max(o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')) >= 17
    assert model.graph.input[0].name == 'images' and model.graph.output[0].name == 'detections'
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == 'batch'
    document = json.loads((learned_bundle / 'model.json').read_text())
    differences = document['verification']['max_abs_difference']
    assert max(v for k, v in differences.items() if not k.endswith('differently')) <= 1e-4
    assert document['model']['parameters'] > 0 and document['model']['gflops'] > 0
    # float16 weights by default: the change from the trained model is measured and small
    rounding = document['weights']['rounding']
    assert document['weights']['storage'] == 'float16'
    assert rounding['box_pixels'] < 0.5 and rounding['scores'] < 0.01
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    session = ort.InferenceSession(str(bundle.onnx_path), providers=['CPUExecutionProvider'])
    (out,) = session.run(None, {'images': np.zeros((3, 3, 128, 160), np.float32)})
    assert out.shape == (3, 32 * 40, 7)
    scripted = torch.jit.load(str(bundle.torchscript_path))
    assert tuple(scripted(torch.zeros(2, 3, 128, 160))[0].shape) == (2, 32 * 40, 7)
    # No device baked into the trace: model.ts moves to a GPU (the Torch-TensorRT path) as it is.
    assert 'Constant[value="cpu"]' not in str(scripted.inlined_graph)
    assert {'Range', 'CumSum'}.isdisjoint(n.op_type for n in model.graph.node)  # the grid is a constant


@pytest.mark.slow
def test_eval_scores_the_export_like_training_validation(
        learned: Path, learned_bundle: Path, learning_sets: tuple[Path, Path], cli: Callable) -> None:
    out = learned.parent / 'eval'
    done = cli('evaluate', '--bundle', learned_bundle, '--data', learning_sets[1], '--out', out,
               '--samples', 2)
    report = json.loads((out / 'eval.json').read_text())
    assert report['images'] == 50 and set(report['per_class_AP']) == {'ball', 'cone', 'book'}
    # The same decoder and scoring as validation, through ONNX Runtime instead of PyTorch.
    best = max(_history(learned), key=lambda r: r['mAP'])
    assert report['mAP50'] == pytest.approx(best['mAP50'], abs=0.01)
    assert f"mAP@.5 {report['mAP50']:.4f}" in done.stdout
    for name in ('pr_curve.png', 'sample_00.png', 'sample_01.png'):
        assert cv2.imread(str(out / name)) is not None, name


def test_resume_after_a_kill_loses_at_most_the_epoch_in_progress(small_set: Path, popen: Callable,
                                                                 cli: Callable, tmp_path: Path) -> None:
    out = tmp_path / 'run'
    args = ('--train-data', small_set, '--val-data', small_set, '--epochs', 4, '--workers', 0, '--out', out,
            *TINY)
    process = popen('train', *args)
    deadline = time.monotonic() + 300
    while not ((out / 'history.json').exists() and _history(out)) and time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ''
        time.sleep(0.2)
    process.kill()
    process.wait(timeout=30)
    saved = checkpoint.load(out / checkpoint.LAST)['epoch']
    assert saved >= 1
    done = cli('train', *args, '--resume')
    assert f'resumed from {out / checkpoint.LAST} at epoch {saved + 1}' in done.stderr
    assert [r['epoch'] for r in _history(out)] == [1, 2, 3, 4]


def _ctrl_c_after_an_epoch(process: subprocess.Popen, out: Path) -> str:
    """SIGINT to ``process``'s group, as a terminal sends it, once ``out`` records an epoch;
    -> what the process printed until it ended."""
    deadline = time.monotonic() + 300
    while not ((out / 'history.json').exists() and _history(out)) and time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ''
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)
    return process.communicate(timeout=90)[0]


def test_ctrl_c_ends_training_with_one_line_naming_what_was_saved(small_set: Path, popen: Callable,
                                                                  tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the trainer and its loader processes) mid-run: exit 130, no traceback, and
    the message names the checkpoint and its epoch, which --resume continues."""
    out = tmp_path / 'run'
    process = popen('train', '--train-data', small_set, '--val-data', small_set, '--epochs', 200,
                    '--workers', 2, '--out', out, *TINY)
    output = _ctrl_c_after_an_epoch(process, out)
    assert process.returncode == 130, output[-3000:]
    assert 'Traceback' not in output, output[-3000:]
    saved = checkpoint.load(out / checkpoint.LAST)['epoch']
    assert 1 <= saved < 200
    assert f'perception-train: interrupted; {out / checkpoint.LAST} holds epoch {saved}' in output


def test_same_seed_same_weights_whatever_the_loader_workers(small_set: Path, cli: Callable,
                                                            tmp_path: Path) -> None:
    runs = []
    for workers in (0, 2):
        out = tmp_path / f'w{workers}'
        cli('train', '--train-data', small_set, '--val-data', small_set, '--epochs', 2, '--workers', workers,
            '--seed', 7, '--out', out, *TINY)
        runs.append(checkpoint.load(out / checkpoint.LAST)['model'])
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_bad_input_stops_training_with_a_message_naming_it(small_set: Path, cli: Callable,
                                                           tmp_path: Path) -> None:
    """A missing data set, a resume into another model's run directory, perception-train-default's
    missing recipe: exit 1 and one line naming the path, no traceback."""
    missing = cli('train', '--train-data', tmp_path / 'nowhere', '--out', tmp_path / 'a', *TINY, check=False)
    assert missing.returncode == 1 and 'Traceback' not in missing.stderr
    assert f'perception-train: {tmp_path / "nowhere"}: no such data set' in missing.stderr
    out = tmp_path / 'run'
    args = ('--train-data', small_set, '--val-data', small_set, '--epochs', 1, '--workers', 0, '--out', out)
    cli('train', *args, *TINY)
    other = cli('train', *args, '--backbone', 'resnet_slim', '--resume', *TINY, check=False)
    assert other.returncode == 1 and 'Traceback' not in other.stderr
    assert f'perception-train: {out / checkpoint.LAST}: a ' in other.stderr
    assert 'not this recipe' in other.stderr and 'use a new --out' in other.stderr
    recipe = cli('recipe', '--config', tmp_path / 'none.yaml', check=False)
    assert recipe.returncode == 1 and 'Traceback' not in recipe.stderr
    assert f'perception-train-default: {tmp_path / "none.yaml"}: unreadable recipe' in recipe.stderr


def test_compile_trains_the_compiled_network(small_set: Path, cli: Callable, tmp_path: Path) -> None:
    """``--compile`` reaches the training loop (its numbers, inductor's too: test_epoch's compiled-step
    test). cudagraphs: the CUDA graphs stay on a GPU, but the graph is AOTAutograd's all the same."""
    out = tmp_path / 'compiled'
    done = cli('train', '--train-data', small_set, '--val-data', small_set, '--epochs', 1, '--workers', 0,
               '--compile', 'cudagraphs', '--out', out, *TINY)
    assert 'network compiled with torch.compile backend cudagraphs' in done.stderr, done.stderr[-2000:]
    assert math.isfinite(_history(out)[0]['train_loss']) and 'mAP' in _history(out)[0]


def test_a_time_limit_fits_the_schedule_so_the_learning_rate_has_decayed_when_time_is_up(
        small_set: Path, cli: Callable, tmp_path: Path) -> None:
    out = tmp_path / 'timed'
    cli('train', '--train-data', small_set, '--val-data', small_set, '--epochs', 500, '--time-limit-minutes',
        0.15, '--lr', 0.004, '--warmup-epochs', 0.5, '--out', out, *TINY)
    history = _history(out)
    planned = [r['planned_epochs'] for r in history]
    assert 1 < len(history) < 500, 'stopped by the limit, far from the 500 epochs asked for'
    # the last epoch is the one the fitted schedule planned to end with, and ends the cosine
    assert planned[-1] == len(history)
    assert history[-1]['lr'] < 0.5 * 0.004 < history[0]['lr'] or len(history) <= 2
    # without fitting, the same limit stops the 500-epoch schedule near its peak
    plain = tmp_path / 'plain'
    cli('train', '--train-data', small_set, '--val-data', small_set, '--epochs', 500, '--time-limit-minutes',
        0.15, '--fit-schedule', 'false', '--lr', 0.004, '--warmup-epochs', 0.5, '--out', plain, *TINY)
    assert _history(plain)[-1]['lr'] > 0.9 * 0.004
    assert 'planned_epochs' not in _history(plain)[-1]


def test_lesson_model_trains_exports_and_evaluates(small_set: Path, cli: Callable, tmp_path: Path) -> None:
    run, bundle, report = tmp_path / 'run', tmp_path / 'bundle', tmp_path / 'eval'
    cli('train', '--arch', 'lesson', '--train-data', small_set, '--val-data', small_set, '--epochs', 1,
        '--batch-size', 4, '--workers', 0, '--device', 'cpu', '--out', run)
    cli('export', '--checkpoint', run / checkpoint.BEST, '--out', bundle)
    loaded = load_bundle(bundle, check_onnx_hash=True)
    assert loaded.output.format == 'class_box' and loaded.output.names == ('class_logits', 'box')
    assert (loaded.input.height, loaded.input.width, loaded.input.resize) == (224, 224, 'stretch')
    cli('evaluate', '--bundle', bundle, '--data', small_set, '--out', report, '--samples', 0,
        '--score-threshold', 0.0)
    assert json.loads((report / 'eval.json').read_text())['images'] == 12


def test_torchrun_trains_on_two_cpu_processes_and_resumes_on_one(small_set: Path, cli: Callable,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / 'ddp'
    args = ('--train-data', small_set, '--val-data', small_set, '--workers', 0, '--out', out, *TINY)
    done = cli('torch.distributed.run', '--standalone', '--nproc-per-node', 2,
               '-m', 'perception_trainer.train', *args, '--epochs', 2)
    assert 'device cpu x2' in done.stdout + done.stderr
    history = _history(out)
    assert [r['epoch'] for r in history] == [1, 2] and all('mAP50' in r for r in history)
    assert len(list((out / 'tensorboard').glob('events.out.tfevents.*'))) == 1  # rank 0 alone writes
    done = cli('train', *args, '--epochs', 3, '--resume')
    assert 'at epoch 3' in done.stderr and 'device cpu x1' in done.stderr
    assert [r['epoch'] for r in _history(out)] == [1, 2, 3]


def test_nproc_per_node_ranks_stop_on_ctrl_c_with_one_line(small_set: Path, popen: Callable,
                                                           tmp_path: Path) -> None:
    """perception-train --nproc-per-node 2 (torchrun's agent in the process) and Ctrl-C to its
    process group mid-run: exit 130, one line naming the checkpoint (rank 0's), no traceback (plain
    torchrun's agent prints SignalException's and exits 1: tools/ctrl_c_stress.py --command torchrun)."""
    out = tmp_path / 'run'
    process = popen('train', '--nproc-per-node', 2, '--train-data', small_set, '--val-data', small_set,
                    '--epochs', 200, '--workers', 1, '--out', out, *TINY)
    output = _ctrl_c_after_an_epoch(process, out)
    assert process.returncode == 130, output[-3000:]
    assert 'Traceback' not in output and 'device cpu x2' in output, output[-3000:]
    saved = checkpoint.load(out / checkpoint.LAST)['epoch']
    assert output.count('perception-train: interrupted') == 1, output[-3000:]
    assert f'perception-train: interrupted; {out / checkpoint.LAST} holds epoch {saved}' in output


def test_nproc_per_node_names_the_ranks_that_failed(cli: Callable, tmp_path: Path) -> None:
    """Ranks that stop on bad input: their own line, then one naming them, exit 1, no traceback."""
    done = cli('train', '--nproc-per-node', 2, '--train-data', tmp_path / 'nowhere', '--out', tmp_path / 'a',
               *TINY, check=False)
    assert done.returncode == 1 and 'Traceback' not in done.stderr, done.stderr[-3000:]
    assert f'perception-train: {tmp_path / "nowhere"}: no such data set' in done.stderr
    # Both ranks fail, or the first to fail is named and the agent stops the other.
    assert re.search(r'perception-train: (rank 0 exited 1, rank 1 exited 1 \(what it said is above\)$|'
                     r'rank [01] exited 1 \(what it said is above\); the other ranks were stopped$)',
                     done.stderr, re.MULTILINE), done.stderr[-3000:]
    bad = cli('train', '--nproc-per-node', 0, '--train-data', tmp_path, check=False)
    assert bad.returncode == 2 and '--nproc-per-node: 0 is not a number of processes' in bad.stderr
