"""evaluate + report on answers bags written the way replay and `ros2 bag record` write them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import pytest

from perception.bag.evaluate import evaluate
from perception.bag.messages import (
    DETECTIONS,
    IMAGE,
    TIME_REFERENCE,
    detections_message,
    detections_of,
    open_writer,
    time_reference_message,
    typestore,
)
from perception.bag.reader import Bag, BagError, stamp_ns
from perception.bag.replay import TIME_REFERENCE_TOPIC
from perception.bag.report import write_report

SHIFT = 5_000_000_000  # replay stamps: 5 s after the bag's
LATENCY = 7_000_000    # 7 ms from publish to answer


def truth(bag: Path) -> list[tuple[int, list]]:
    return [(stamp_ns(m), detections_of(m)) for _, m in Bag(bag).stamped('/ground_truth', DETECTIONS)]


def write(writer, connection, log_time: int, msg: object, msgtype: str) -> None:
    writer.write(connection, log_time, bytes(typestore().serialize_cdr(msg, msgtype)))


def replay_style_answers(path: Path, frames: list[tuple[int, list]], answer=lambda i, boxes: boxes) -> Path:
    """What `perception-bag replay` records: time references plus answers; ``answer`` returns
    the boxes for frame i (None = no answer)."""
    store, writer = typestore(), open_writer(path, 'mcap')
    refs = writer.add_connection(TIME_REFERENCE_TOPIC, TIME_REFERENCE, typestore=store)
    answers = writer.add_connection('/object_detections', DETECTIONS, typestore=store)
    for i, (stamp, boxes) in enumerate(frames):
        sent = stamp + SHIFT
        write(writer, refs, sent, time_reference_message(sent, 'cam', stamp, 'bag'), TIME_REFERENCE)
        reply = answer(i, boxes)
        if reply is not None:
            write(writer, answers, sent + LATENCY, detections_message(reply, sent, 'cam'), DETECTIONS)
    writer.close()
    return path


def test_perfect_answers_score_one_with_their_latency(tmp_path: Path, synthetic_bag: Path) -> None:
    frames = truth(synthetic_bag)
    answers = replay_style_answers(tmp_path / 'answers', frames,
                                   lambda i, boxes: [replace(b, score=0.9) for b in boxes])
    metrics = evaluate(synthetic_bag, answers).metrics
    assert metrics['map50'] == pytest.approx(1.0)
    assert metrics['map50_95'] == pytest.approx(1.0)
    assert (metrics['frames'], metrics['answered'], metrics['dropped']) == (len(frames), len(frames), 0)
    assert metrics['latency']['p50_ms'] == pytest.approx(7.0)
    assert metrics['detections'] == metrics['ground_truth_boxes'] == sum(len(b) for _, b in frames)


def test_dropped_and_wrong_answers_are_counted(tmp_path: Path, synthetic_bag: Path) -> None:
    frames = truth(synthetic_bag)
    moved = [replace(b, x1=b.x1 + 300, x2=b.x2 + 300) for b in frames[1][1]]
    answers = replay_style_answers(tmp_path / 'answers', frames,
                                   lambda i, boxes: None if i % 3 == 0 else (moved if i == 1 else boxes))
    metrics = evaluate(synthetic_bag, answers).metrics
    assert metrics['dropped'] == len(range(0, len(frames), 3))
    assert metrics['answered'] == len(frames) - metrics['dropped']
    assert 0.5 < metrics['map50'] < 1.0
    assert metrics['latency']['count'] == metrics['answered']


def test_ros2_bag_record_of_both_topics_gives_latency(tmp_path: Path, synthetic_bag: Path) -> None:
    """`ros2 bag play` keeps stamps; `ros2 bag record` of image and answers gives both receipt times."""
    store, writer = typestore(), open_writer(tmp_path / 'recorded', 'sqlite3')
    images = writer.add_connection('/camera/image_rect', IMAGE, typestore=store)
    answers = writer.add_connection('/object_detections', DETECTIONS, typestore=store)
    frames = dict(truth(synthetic_bag))
    for log_time, image in list(Bag(synthetic_bag).stamped('/camera/image_rect', IMAGE))[:5]:
        received = log_time + SHIFT
        write(writer, images, received, image, IMAGE)
        write(writer, answers, received + 2 * LATENCY,
              detections_message(frames[stamp_ns(image)], stamp_ns(image), 'cam'), DETECTIONS)
    writer.close()
    metrics = evaluate(synthetic_bag, tmp_path / 'recorded').metrics
    assert (metrics['frames'], metrics['dropped']) == (5, 0)
    assert metrics['latency']['p99_ms'] == pytest.approx(14.0)
    assert 'frame log time' in metrics['latency']['source']


def test_answers_alone_match_by_stamp_without_latency(tmp_path: Path, synthetic_bag: Path) -> None:
    store, writer = typestore(), open_writer(tmp_path / 'answers_only', 'mcap')
    answers = writer.add_connection('/object_detections', DETECTIONS, typestore=store)
    frames = truth(synthetic_bag)
    for stamp, boxes in frames[:-1]:
        write(writer, answers, stamp, detections_message(boxes, stamp, 'cam'), DETECTIONS)
    write(writer, answers, 1, detections_message([], 1, 'cam'), DETECTIONS)  # matches no frame
    writer.close()
    metrics = evaluate(synthetic_bag, tmp_path / 'answers_only').metrics
    assert (metrics['frames'], metrics['dropped'], metrics['unmatched_answers']) == (len(frames), 1, 1)
    assert metrics['latency']['count'] == 0 and metrics['latency']['source'].startswith('not measured')


def test_answers_for_another_bag_are_refused(tmp_path: Path, synthetic_bag: Path) -> None:
    frames = [(stamp + 123, boxes) for stamp, boxes in truth(synthetic_bag)]
    answers = replay_style_answers(tmp_path / 'answers', frames)
    with pytest.raises(BagError, match=r'have no ground truth on .*/ground_truth.*wrong bag'):
        evaluate(synthetic_bag, answers)


def test_frames_beyond_damage_in_the_truth_bag_are_left_out(tmp_path: Path, synthetic_bag: Path) -> None:
    answers = replay_style_answers(tmp_path / 'answers', truth(synthetic_bag))
    damaged = tmp_path / 'damaged'
    damaged.mkdir()
    data = (synthetic_bag / 'synthetic.mcap').read_bytes()
    (damaged / 'damaged.mcap').write_bytes(data[:len(data) // 2])
    evaluation = evaluate(damaged, answers)
    assert 0 < evaluation.metrics['frames'] < len(truth(synthetic_bag))
    assert evaluation.metrics['dropped'] == 0
    assert evaluation.damage and 'damaged.mcap is truncated' in evaluation.damage[0]


def test_report_files(tmp_path: Path, synthetic_bag: Path) -> None:
    frames = truth(synthetic_bag)
    answers = replay_style_answers(tmp_path / 'answers', frames, lambda i, boxes: None if i == 2 else boxes)
    evaluation = evaluate(synthetic_bag, answers)
    paths = write_report(evaluation, tmp_path / 'report', context={'backend': 'onnxruntime'}, progress=False)
    document = json.loads(Path(paths['json']).read_text())
    assert document['metrics']['dropped'] == 1
    assert [f['answered'] for f in document['frames']].count(False) == 1
    markdown = Path(paths['markdown']).read_text()
    assert '| mAP@.5 | 1.000 |' in markdown and '| backend | onnxruntime |' in markdown
    for kind in ('latency_plot', 'strip'):
        image = cv2.imread(paths[kind])
        assert image is not None and image.shape[0] > 100
    video = cv2.VideoCapture(paths['video'])
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == len(frames)
    ok, frame = video.read()
    assert ok and frame.shape == (480, 640, 3)
    video.release()
