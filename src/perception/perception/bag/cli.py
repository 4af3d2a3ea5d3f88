"""``perception-bag``: record-synthetic, replay, evaluate and compare (no ROS install needed for bags).

    perception-bag record-synthetic out/bags/synthetic --frames 300 [--compressed [--compressed-format png]]
    perception-bag replay out/bags/synthetic out/bags/answers [--rate 0.5 | --lockstep]
        [--topic /front_camera/image_raw/compressed:=/camera/image_rect/compressed]
    perception-bag evaluate out/bags/synthetic out/bags/answers --out out/report
    perception-bag compare out/bags/answers_a out/bags/answers_b --out out/compare [--images BAG]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from perception.bag import compare
from perception.bag.reader import BagError
from perception.bag.record import DEFAULT_SEED
from perception_core.interrupt import interrupted

STORAGES = ('mcap', 'sqlite3')


def _config_values(path: str | None) -> dict:
    """The deployment values that shape a replay (topics, QoS); the table's defaults without --config."""
    if path:
        from perception_core.deployment import load_config
        return load_config(path).values
    from perception_core.params import check_values
    return check_values({})


def _record(args: argparse.Namespace) -> int:
    from perception.bag.record import record_synthetic
    from perception_core.synth import DEFAULT_CLASSES
    if args.compressed_format and not args.compressed:
        raise ValueError('--compressed-format applies to --compressed frames: add --compressed')
    classes = DEFAULT_CLASSES
    if args.bundle:
        from perception_core.bundle import load_bundle
        classes = load_bundle(args.bundle).classes
    bag = record_synthetic(args.out, frames=args.frames, fps=args.fps, width=args.width, height=args.height,
                           seed=args.seed, classes=classes, storage=args.storage, image_topic=args.topic,
                           truth_topic=args.truth_topic, frame_id=args.frame_id,
                           compressed=(args.compressed_format or 'jpeg') if args.compressed else None)
    print(f'{bag.path}: {bag.frames} frames {bag.width}x{bag.height} at {bag.fps:g} Hz on {bag.image_topic}, '
          f'{bag.boxes} ground-truth boxes on {args.truth_topic}')
    return 0


def _replay(args: argparse.Namespace) -> int:
    from perception.bag.replay import deployment_topics, parse_remap, replay, subscribed_topic
    from perception.middleware import middleware_environment
    from perception_core.qos import QosSpec
    values = _config_values(args.config)
    remaps = dict(parse_remap(text) for text in args.topic)
    topics = {**deployment_topics(values), 'image_topic': subscribed_topic(values)}
    # Camera-sized frames need the large-frame middleware profile, as the node has it from the launch file.
    for key, value in middleware_environment().items():
        os.environ.setdefault(key, value)
    summary = replay(args.bag, args.out, qos=QosSpec.of(values), rate=args.rate, lockstep=args.lockstep,
                     max_rate_hz=float(values['runtime.inference_frequency']),
                     answer_timeout=args.answer_timeout, ready_timeout=args.ready_timeout,
                     tail_timeout=args.tail_timeout, storage=args.storage, remaps=remaps, **topics)
    print(f'{summary.output}: {summary.published} frames published, {summary.answered} answered '
          f'in {summary.seconds:.1f} s')
    if summary.damage:
        print(f'input bag damaged, replay ended early: {summary.damage}')
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from perception.bag.evaluate import evaluate
    from perception.bag.replay import deployment_topics, parse_remap, source_topic, subscribed_topic
    from perception.bag.report import summary_table, write_report
    values = _config_values(args.config)
    # the node's input as replay fed it; the frames drawn in the report are the truth bag's topic
    # that --topic remapped onto it (the same remaps as the replay), else that topic itself
    topics = {**deployment_topics(values), 'image_topic': subscribed_topic(values)}
    frames_topic = source_topic(topics['image_topic'], dict(parse_remap(text) for text in args.topic))
    evaluation = evaluate(args.truth, args.answers, truth_topic=args.truth_topic, **topics)
    context = {'backend': args.backend} if args.backend else {}
    paths = write_report(evaluation, args.out, image_topic=frames_topic, fps=args.fps,
                         context=context, video=not args.no_video)
    print(summary_table(evaluation.metrics, args.backend))
    print(json.dumps(paths, indent=2))
    if args.min_map50 is not None and evaluation.metrics['map50'] < args.min_map50:
        print(f'mAP@.5 {evaluation.metrics["map50"]:.3f} is below --min-map50 {args.min_map50}',
              file=sys.stderr)
        return 1
    return 0


def _topic_remaps(command: argparse.ArgumentParser, meaning: str) -> None:
    command.add_argument('--topic', action='append', default=[], metavar='SRC:=DST',
                         help=meaning + '; repeatable')


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog='perception-bag', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = root.add_subparsers(dest='command', required=True)

    rec = sub.add_parser('record-synthetic', help='write a bag of synthetic camera frames with ground truth')
    rec.add_argument('out', help='bag folder to create')
    rec.add_argument('--frames', type=int, default=300)
    rec.add_argument('--fps', type=float, default=30.0)
    rec.add_argument('--width', type=int, default=640)
    rec.add_argument('--height', type=int, default=480)
    rec.add_argument('--seed', type=int, default=DEFAULT_SEED,
                     help='scene seed (default: one the trainer never uses)')
    rec.add_argument('--bundle', help='model bundle whose classes to draw (default: the generator\'s)')
    rec.add_argument('--storage', choices=STORAGES, default='mcap')
    rec.add_argument('--topic', default='/camera/image_rect')
    rec.add_argument('--truth-topic', default='/ground_truth')
    rec.add_argument('--frame-id', default='camera_optical_frame')
    rec.add_argument('--compressed', action='store_true',
                     help='frames as sensor_msgs/CompressedImage on TOPIC/compressed (image_transport\'s '
                     'compressed transport) instead of raw Images')
    rec.add_argument('--compressed-format', choices=('jpeg', 'png'),
                     help='codec of --compressed frames (default: jpeg)')
    rec.set_defaults(run=_record)

    rep = sub.add_parser('replay', help='publish a bag\'s frames to the detector and record its answers')
    rep.add_argument('bag', help='input bag (folder, .mcap or .db3)')
    rep.add_argument('out', help='output bag folder to create')
    rep.add_argument('--config', help='deployment YAML for topics and QoS (default: the built-in defaults)')
    pace = rep.add_mutually_exclusive_group()
    pace.add_argument('--rate', type=float, default=1.0, help='speed factor on the recorded rate')
    pace.add_argument('--lockstep', action='store_true',
                      help='send each frame when the previous one is answered (as fast as the '
                      'detector keeps up, never above its runtime.inference_frequency)')
    rep.add_argument('--answer-timeout', type=float, default=1.0, help='lockstep: seconds to wait per frame')
    rep.add_argument('--ready-timeout', type=float, default=60.0,
                     help='seconds to wait for the detector to answer a warm-up frame')
    rep.add_argument('--tail-timeout', type=float, default=2.0, help='seconds to wait for late answers')
    rep.add_argument('--storage', choices=STORAGES, default='mcap')
    _topic_remaps(rep, 'replay the bag\'s topic SRC onto DST, the detector\'s input topic (its '
                  '/compressed one with image_transport compressed)')
    rep.set_defaults(run=_replay)

    ev = sub.add_parser('evaluate', help='mAP, latency and dropped frames; JSON, Markdown, plots, video')
    ev.add_argument('truth', help='bag with frames and ground truth (record-synthetic)')
    ev.add_argument('answers', help='bag with the detections (replay, or ros2 bag record)')
    ev.add_argument('--out', required=True, help='report folder')
    ev.add_argument('--config', help='deployment YAML for the topic names')
    ev.add_argument('--truth-topic', default='/ground_truth')
    ev.add_argument('--backend', default='', help='backend name to show in the report')
    ev.add_argument('--fps', type=float, default=30.0, help='frame rate of the annotated video')
    ev.add_argument('--no-video', action='store_true', help='skip the annotated MP4')
    ev.add_argument('--min-map50', type=float, help='exit 1 when mAP@.5 is below this')
    _topic_remaps(ev, 'the replay\'s --topic remaps: the report draws the frames of SRC in the truth bag')
    ev.set_defaults(run=_evaluate)
    compare.add_parser(sub)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        return args.run(args)
    except (BagError, FileExistsError, ValueError, RuntimeError) as exc:
        print(f'perception-bag {args.command}: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted(f'perception-bag {args.command}')


if __name__ == '__main__':
    sys.exit(main())
