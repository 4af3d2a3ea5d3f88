"""`perception-bag compare`: two answer bags of one input, frame by frame and box by box.

Unit level: answer bags written here with the project's bag writer, in the form `perception-bag
replay` records (detections restamped, `/replay/time_reference` mapping back to the input stamps),
with known differences: class flips, missing frames, score shifts, moved boxes, exactly counted.

End to end: real answer bags of the real node over real DDS. The shipped bundle's ONNX and
TorchScript on one synthetic bag agree (float rounding only: mean IoU > 0.99, exit 0); the same
ONNX with a higher score threshold (a deployment change) is found changed and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from perception.bag import compare
from perception.bag.messages import (
    DETECTIONS,
    TIME_REFERENCE,
    Detection,
    detections_message,
    open_writer,
    time_reference_message,
    typestore,
)
from perception.bag.replay import TIME_REFERENCE_TOPIC

WORKSPACE = Path(__file__).resolve().parents[3]
SHIPPED = WORKSPACE / 'models/detector'
NODE = WORKSPACE / 'install/isaac_trt_perception/lib/isaac_trt_perception/isaac_trt_perception_node'
TOPIC = '/object_detections'
INPUT_START = 1_700_000_000_000_000_000  # input bag stamps, 10 Hz
PERIOD = 100_000_000


def parse(*argv: str) -> argparse.Namespace:
    root = argparse.ArgumentParser(prog='perception-bag')
    compare.add_parser(root.add_subparsers(dest='command', required=True))
    return root.parse_args(['compare', *map(str, argv)])


def write_answers(path: Path, answers: dict[int, list[Detection]], published: int, *,
                  replay_start: int, latency_ns: int = 5_000_000, storage: str = 'mcap') -> Path:
    """A bag as replay records it: frame i published at replay_start + i * PERIOD (its time reference
    maps back to INPUT_START + i * PERIOD), answered ``latency_ns`` later where ``answers`` has it."""
    store = typestore()
    writer = open_writer(path, storage)
    detections = writer.add_connection(TOPIC, DETECTIONS, typestore=store)
    references = writer.add_connection(TIME_REFERENCE_TOPIC, TIME_REFERENCE, typestore=store)
    for i in range(published):
        sent, original = replay_start + i * PERIOD, INPUT_START + i * PERIOD
        ref = time_reference_message(sent, 'camera', original, 'input')
        writer.write(references, sent, bytes(store.serialize_cdr(ref, TIME_REFERENCE)))
        if i in answers:
            msg = detections_message(answers[i], sent, 'camera')
            writer.write(detections, sent + latency_ns, bytes(store.serialize_cdr(msg, DETECTIONS)))
    writer.close()
    return path


def box(class_id: str, score: float, x: float, y: float = 50.0, size: float = 40.0) -> Detection:
    return Detection(class_id, score, x, y, x + size, y + size)


SCENE = {i: [box('cup', 0.9, 10 + i), box('bottle', 0.8, 200), box('ball', 0.7, 400)] for i in range(10)}


def test_identical_answers_are_unchanged(tmp_path: Path) -> None:
    a = write_answers(tmp_path / 'a', SCENE, 10, replay_start=10**18, latency_ns=4_000_000)
    b = write_answers(tmp_path / 'b', SCENE, 10, replay_start=19 * 10**17, latency_ns=9_000_000,
                      storage='sqlite3')
    code = compare.run(parse(a, b, '--out', tmp_path / 'out', '--max-changed-frames', '0',
                             '--min-iou', '0.999'))
    document = json.loads((tmp_path / 'out' / 'compare.json').read_text())
    m = document['metrics']
    assert code == 0 and document['passed']
    # different replay stamps, same input stamps: every frame matched
    assert m['frames'] == {'published_a': 10, 'published_b': 10, 'answered_a': 10, 'answered_b': 10,
                           'compared': 10, 'changed': 0, 'changed_fraction': 0.0, 'only_a': 0, 'only_b': 0}
    assert m['mean_iou'] == 1.0 and m['score_shift'] == {'mean_abs': 0.0, 'max_abs': 0.0}
    assert m['boxes']['matched'] == 30 and m['class_flips'] == {}
    assert m['latency']['a']['p50_ms'] == pytest.approx(4.0)
    assert m['latency']['b']['p50_ms'] == pytest.approx(9.0)
    assert document['worst_frames'] == []
    assert 'No frame changed.' in (tmp_path / 'out' / 'compare.md').read_text()


def test_flips_missing_frames_score_shifts_and_moved_boxes(tmp_path: Path) -> None:
    other = {i: list(boxes) for i, boxes in SCENE.items()}
    other[2] = [box('can', 0.9, 12), box('bottle', 0.8, 200), box('ball', 0.7, 400)]   # cup -> can
    other[3] = [box('cup', 0.9, 13), box('bottle', 0.5, 200), box('ball', 0.7, 400)]   # score -0.3
    other[4] = [box('cup', 0.9, 14), box('bottle', 0.8, 200)]                           # ball lost
    other[5] = other[5] + [box('phone', 0.4, 300)]                                      # phone gained
    other[6] = [box('cup', 0.9, 16 + 10), box('bottle', 0.8, 200), box('ball', 0.7, 400)]  # moved 10 px
    other[7] = [box('cup', 0.9 + 0.001, 17), box('bottle', 0.8, 200), box('ball', 0.7, 400)]  # tiny shift
    del other[8]                                                                        # B missed frame 8
    a = write_answers(tmp_path / 'a', {i: s for i, s in SCENE.items() if i != 9}, 10, replay_start=10**18)
    b = write_answers(tmp_path / 'b', other, 10, replay_start=18 * 10**17)
    out = tmp_path / 'out'
    assert compare.run(parse(a, b, '--out', out)) == 0  # no thresholds: a report, never a failure
    document = json.loads((out / 'compare.json').read_text())
    m = document['metrics']
    stamp = [INPUT_START + i * PERIOD for i in range(10)]
    assert m['frames']['compared'] == 8 and m['changed_stamps'] == [stamp[i] for i in (2, 3, 4, 5, 6)]
    assert (m['only_a_stamps'], m['only_b_stamps']) == ([stamp[8]], [stamp[9]])
    assert m['class_flips'] == {'cup -> can': 1} and m['boxes']['class_flips'] == 1
    assert (m['boxes']['only_a'], m['boxes']['only_b']) == (1, 1)
    assert m['counts_per_class']['ball'] == {'a': 8, 'b': 7, 'change': -1}
    assert m['counts_per_class']['phone'] == {'a': 0, 'b': 1, 'change': 1}
    assert m['counts_per_class']['cup'] == {'a': 8, 'b': 7, 'change': -1}
    assert m['score_shift']['max_abs'] == pytest.approx(0.3, abs=1e-6)
    # 8 frames x 3 boxes, less the lost ball and the flipped cup (a flip is matched, not same-class)
    assert m['boxes']['matched'] == 22
    # the moved cup: 40 px boxes 10 px apart overlap 30/50
    assert m['min_iou'] == pytest.approx(30 / 50, abs=1e-6)
    worst = document['worst_frames']
    # boxes gained or lost and flips first, then the least overlap and biggest score shift, then one-sided
    assert [w['stamp'] for w in worst] == [stamp[i] for i in (2, 4, 5, 6, 3, 8)]
    assert worst[-1]['answered_only_in'] == 'A' and worst[-1]['b'] is None
    assert document['drawing'].startswith('Not drawn') and not list(out.glob('*.png'))
    # thresholds: 5 of 8 changed
    assert compare.run(parse(a, b, '--out', tmp_path / 'o2', '--max-changed-frames', '5')) == 0
    assert compare.run(parse(a, b, '--out', tmp_path / 'o3', '--max-changed-frames', '4')) == 1
    assert compare.run(parse(a, b, '--out', tmp_path / 'o4', '--max-changed-frames', '0.5')) == 1
    assert compare.run(parse(a, b, '--out', tmp_path / 'o5', '--max-changed-frames', '70%')) == 0
    assert compare.run(parse(a, b, '--out', tmp_path / 'o6', '--max-missing-frames', '1')) == 1
    assert compare.run(parse(a, b, '--out', tmp_path / 'o7', '--min-iou', str(m['mean_iou'] + 1e-3))) == 1
    failed = json.loads((tmp_path / 'o7' / 'compare.json').read_text())
    assert not failed['passed'] and 'below --min-iou' in failed['failures'][0]
    assert '**FAIL**' in (tmp_path / 'o7' / 'compare.md').read_text()


def test_hungarian_matching_beats_greedy() -> None:
    """Greedy (best overlap first) pairs A's second box with B's first (IoU 0.78) and leaves A's
    first (which overlaps only B's first) and B's second unmatched; the assignment matches both."""
    a = [box('cup', 0.9, 0), box('cup', 0.9, 15)]
    b = [box('cup', 0.9, 10), box('cup', 0.9, 40)]
    frame = compare.compare_frame(0, a, b, match_iou=0.2)
    assert sorted(round(p.iou, 3) for p in frame.pairs) == [0.231, 0.6]
    assert not frame.only_a and not frame.only_b


def test_bad_input_exits_2_naming_file_and_topic(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = write_answers(tmp_path / 'a', SCENE, 10, replay_start=10**18)
    assert compare.run(parse(tmp_path / 'missing', a, '--out', tmp_path / 'out')) == 2
    assert capsys.readouterr().err.strip() == f'perception-bag compare: {tmp_path / "missing"}: no such bag'
    assert compare.run(parse(a, a, '--out', tmp_path / 'out', '--topic', '/detections')) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(a) in error and "no topic '/detections'" in error
    elsewhere = {i: SCENE[0] for i in range(3)}
    store = typestore()  # answers of another input: no stamp in common
    writer = open_writer(tmp_path / 'other', 'mcap')
    connection = writer.add_connection(TOPIC, DETECTIONS, typestore=store)
    for i, boxes in elsewhere.items():
        msg = detections_message(boxes, 5 + i, 'c')
        writer.write(connection, i, bytes(store.serialize_cdr(msg, DETECTIONS)))
    writer.close()
    assert compare.run(parse(a, tmp_path / 'other', '--out', tmp_path / 'out')) == 2
    assert 'share no input frame' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(a, a, '--out', tmp_path / 'out', '--max-changed-frames', '1.5')


# --- end to end: the real node over real DDS ---------------------------------------------------
FRAMES = 24


@pytest.fixture(scope='module')
def ros_env() -> dict[str, str]:
    from perception.middleware import middleware_environment
    env = dict(os.environ)
    env.update(middleware_environment(WORKSPACE / 'config', localhost_only=True))
    # A domain of this process's own, as test/conftest.py picks them (0..101: clear of ephemeral ports).
    env['ROS_DOMAIN_ID'] = str(1 + (os.getpid() * 7 + 50) % 100)
    env['PYTHONUNBUFFERED'] = '1'
    return env


def perception_bag(*args: object, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'perception.bag.cli', *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope='module')
def replayed(tmp_path_factory: pytest.TempPathFactory, ros_env: dict) -> dict[str, Path]:
    """One synthetic bag replayed (lockstep, lossless QoS) through three real node runs."""
    if not NODE.is_file():
        pytest.fail(f'{NODE} is missing: make build builds it', pytrace=False)
    from perception.launch_plan import make_plan
    from perception.node_process import running_node
    root = tmp_path_factory.mktemp('compare')
    bag = root / 'synthetic'
    done = perception_bag('record-synthetic', bag, '--frames', FRAMES, '--fps', 10, '--bundle', SHIPPED,
                          env=ros_env)
    assert done.returncode == 0, done.stderr[-3000:]
    document = yaml.safe_load((WORKSPACE / 'config/jetson_deployment.yaml').read_text())['deployment_config']
    # Reliable QoS and no rate cap: the comparison is of models, so no frame may be lost to scheduling.
    document['runtime'].update(inference_frequency=0, profile_output_path=str(root / 'profile.json'),
                               monitoring_output_path=str(root / 'monitoring.json'))
    document['ros_integration']['qos_profile'].update(reliability='reliable', depth=10)
    document['logging']['log_path'] = str(root / 'node_file.log')
    config = root / 'deployment.yaml'
    config.write_text(yaml.safe_dump({'deployment_config': document}))
    runs = {'onnx': (SHIPPED / 'model.onnx', {}), 'torchscript': (SHIPPED / 'model.ts', {}),
            'onnx_strict': (SHIPPED / 'model.onnx', {'detection.score_threshold': 0.6})}
    answers = {'bag': bag}
    for name, (model, overrides) in runs.items():
        plan = make_plan(config, model=str(model), params_dir=root / f'launch_{name}', overrides=overrides,
                         middleware_config_dir=WORKSPACE / 'config')
        with running_node(plan, root / f'node_{name}.log', ros_env):
            done = perception_bag('replay', bag, root / name, '--config', config, '--lockstep',
                                  '--answer-timeout', 3, env=ros_env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f'{FRAMES} frames published, {FRAMES} answered' in done.stdout, done.stdout
        answers[name] = root / name
    return answers


def test_onnx_and_torchscript_of_one_bundle_agree(replayed: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / 'report'
    code = compare.run(parse(replayed['onnx'], replayed['torchscript'], '--out', out, '--images',
                             replayed['bag'], '--max-changed-frames', '0.1', '--min-iou', '0.99'))
    document = json.loads((out / 'compare.json').read_text())
    m = document['metrics']
    print(json.dumps({k: m[k] for k in ('frames', 'boxes', 'mean_iou', 'min_iou', 'score_shift')}))
    assert code == 0, document['failures']
    assert m['frames']['compared'] == FRAMES and m['boxes']['a'] > FRAMES  # several objects a frame
    assert m['mean_iou'] > 0.99 and m['class_flips'] == {}
    assert m['score_shift']['max_abs'] < 0.01
    # a box right at the score threshold may fall either side from rounding; more is a real change
    assert m['boxes']['only_a'] + m['boxes']['only_b'] <= 2
    assert m['latency']['a']['count'] == m['latency']['b']['count'] == FRAMES


def test_a_higher_score_threshold_is_found_and_fails(replayed: dict[str, Path], tmp_path: Path) -> None:
    import cv2
    out = tmp_path / 'report'
    code = compare.run(parse(replayed['onnx'], replayed['onnx_strict'], '--out', out, '--images',
                             replayed['bag'], '--max-changed-frames', '0', '--min-iou', '0.99'))
    document = json.loads((out / 'compare.json').read_text())
    m = document['metrics']
    print(json.dumps({k: m[k] for k in ('frames', 'boxes', 'mean_iou', 'counts_per_class')}))
    assert code == 1 and 'frames changed' in document['failures'][0]
    # raising the threshold only removes boxes: B's are a subset of A's, identical where kept
    assert m['frames']['changed'] > 0 and m['boxes']['only_a'] > 0 and m['boxes']['only_b'] == 0
    assert m['boxes']['b'] == m['boxes']['matched'] and m['mean_iou'] == pytest.approx(1.0, abs=1e-6)
    assert all(v['change'] <= 0 for v in m['counts_per_class'].values())
    drawn = [w['image'] for w in document['worst_frames']]
    assert drawn and all(drawn)
    picture = cv2.imread(str(out / drawn[0]))  # OpenCV reads back what was written: A | gap | B
    assert picture.shape == (480 + 24, 640 * 2 + 4, 3)
    assert f'![{document["worst_frames"][0]["stamp"]}]({drawn[0]})' in (out / 'compare.md').read_text()
