"""perception-node-bench: the node's speed, measured in one run at one frame size.

1. transport floor: frame_source -> a subscriber here, no node (image stamp to receipt);
2. inference: the backend's own latency on the same frames, in this process;
3. end to end: frame_source -> the node (its own process, started as ``ros2 launch`` plans it from
   the deployment YAML) -> detections received here (image stamp to receipt).

node overhead = end-to-end p50 - floor p50 - the node's own inference p50 (its ``infer`` stage, same
run; target <= 1.0 ms): what the node adds around the backend, from convert to the detections'
own trip back, preprocessing on the CPU included (torch_cuda does it inside ``infer``). The node keeps up
with the input when (nearly) every frame is answered and latency does not grow over the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perception_core.atomic import write_json
from perception_core.backends import BackendOptions
from perception_core.cdr import read_header
from perception_core.convert import frame_from_fields
from perception_core.detector import open_detector
from perception_core.interrupt import on_ctrl_c
from perception_core.metrics import Latency, summary_ms
from perception_core.qos import QosSpec

from .frame_source import image_fields, save_frames

if TYPE_CHECKING:
    from perception.launch_plan import LaunchPlan

OVERHEAD_TARGET_MS = 1.0


def bench_frames(count: int, width: int, height: int) -> tuple[list[dict[str, Any]], str]:
    """rgb8 frames: synthetic scenes where perception_trainer is installed, else noise."""
    try:
        from perception_core.synth import render_scene
    except ImportError:
        rng = np.random.default_rng(0)
        return ([image_fields(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), 'rgb8')
                 for _ in range(count)], 'noise (perception_trainer not installed)')
    return ([image_fields(render_scene(seed=4242, index=i, width=width, height=height).image, 'rgb8')
             for i in range(count)], 'perception_core.synth scenes')


def measure_inference(model: Path, backend: str, frames: list[dict[str, Any]], runs: int,
                      options: BackendOptions) -> tuple[dict[str, Any], str]:
    detector, selection = open_detector(model, backend, options)
    stages = {name: Latency() for name in ('preprocess', 'infer', 'postprocess')}
    for i in range(runs + 10):
        fields = frames[i % len(frames)]
        _, timings = detector.detect(frame_from_fields(**fields))
        if i >= 10:  # the first runs warm caches and allocators
            for name, seconds in timings.items():
                stages[name].add(seconds)
    return ({name: latency.summary_ms() for name, latency in stages.items()},
            f'{selection.backend.name}: {selection.backend.description}')


class Receiver:
    """Receipt time minus image stamp for every message on a topic, in this process.

    Receipt is when the serialized message reaches this process's callback: subscriptions are
    raw and the stamp is read from the bytes, as the node reads its frames. Turning them into
    Python messages is the consumer's cost, not the node's, and differs between the two topics
    (a Detection2DArray's nested poses and covariances cost several times a camera Image's
    deserialization; bench/README.md has the figures), so a deserializing receiver charged its own
    work to the node. The executor is the node's (fast_executor), so both hops are received alike.
    """

    def __init__(self, domain_id: int) -> None:
        import rclpy

        from isaac_trt_perception.node import fast_executor
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('node_bench', context=self.context)
        self.executor = fast_executor(context=self.context)
        self.executor.add_node(self.node)
        self.samples: list[tuple[int, float]] = []   # (stamp ns, latency s)

    def listen(self, msg_type: Any, topic: str) -> Any:
        from isaac_trt_perception.qos import profile
        qos = profile(QosSpec(reliability='best_effort', depth=100))
        return self.node.create_subscription(msg_type, topic, self._on_message, qos, raw=True)

    def wait_for_publisher(self, subscription: Any, process: subprocess.Popen, timeout_s: float) -> None:
        """Spin until ``subscription`` is matched with a publisher (the node's), so the camera does
        not start while best-effort detections still go nowhere: without this wait the first
        frames of every phase went unanswered, whatever the node did (bench/README.md)."""
        deadline = time.monotonic() + timeout_s
        while subscription.get_publisher_count() < 1:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f'no publisher matched {subscription.topic_name} within {timeout_s:g} s '
                                   f'(node exit status {process.poll()})')
            self.executor.spin_once(timeout_sec=0.05)

    def _on_message(self, cdr: bytes) -> None:
        received = time.time_ns()
        stamp = read_header(cdr).stamp_ns
        self.samples.append((stamp, (received - stamp) * 1e-9))

    def spin_while(self, process: subprocess.Popen) -> None:
        while process.poll() is None:
            self.executor.spin_once(timeout_sec=0.05)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        import rclpy
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def run_source(npz: Path, topic: str, *, rate: float, repeat: int, env: dict[str, str], log: Path,
               receiver: Receiver) -> list[dict[str, int]]:
    process = subprocess.Popen([sys.executable, '-m', 'perception_bench.frame_source', str(npz),
                                '--topic', topic, '--rate', str(rate), '--repeat', str(repeat),
                                '--log', str(log)], env=env)
    receiver.spin_while(process)
    if process.returncode != 0:
        raise RuntimeError(f'frame_source exited with {process.returncode}')
    return json.loads(log.read_text())


def node_plan(config: Path, model: Path, backend: str, rate: float, folder: Path, *, camera: str
              ) -> LaunchPlan:
    """The node's start as ``ros2 launch`` plans it from the deployment YAML (params file, CPU
    pinning, middleware), pointed at the bench's model (make_plan takes its input shape) and warmed
    up for the bench's camera (``camera``: "WIDTHxHEIGHT ENCODING"), with its profile, monitoring
    and log in ``folder``."""
    import yaml

    from perception.launch_plan import make_plan
    document = yaml.safe_load(config.read_text())
    section = document['deployment_config']
    section.setdefault('model', {})['backend'] = backend
    section.setdefault('runtime', {}).update(inference_frequency=rate, warmup_images=camera,
                                             profile_output_path=str(folder / 'node_profile.json'),
                                             monitoring_output_path=str(folder / 'node_monitoring.json'))
    section.setdefault('logging', {})['log_path'] = str(folder / 'node.log')
    copy = config.parent / f'.bench-{os.getpid()}.yaml'  # beside the original: relative paths still resolve
    try:
        copy.write_text(yaml.safe_dump(document))
        return make_plan(copy, model=str(model), params_dir=folder,
                         middleware_config_dir=middleware_config_dir(config))
    finally:
        copy.unlink(missing_ok=True)


def middleware_config_dir(config: Path) -> Path | None:
    """The deployment's own folder where it holds the Fast DDS profile (the source tree's
    config/), else None: the installed one."""
    from perception.middleware import profile_path
    return config.parent if profile_path(config.parent).is_file() else None


def node_internal(folder: Path) -> dict[str, Any]:
    """The node's own view from its monitoring and profile files: frames in, out and dropped,
    receipt -> publish (``latency``) and image stamp -> publish (``stamp_age``, same clock as the
    end to end), and its per-stage profile (None where a file is missing)."""
    files = {name: folder / f'node_{name}.json' for name in ('monitoring', 'profile')}
    found = {name: json.loads(path.read_text()) if path.is_file() else None for name, path in files.items()}
    monitoring, profile = found['monitoring'] or {}, found['profile'] or {}
    return {**{key: monitoring.get(key) for key in ('frames_received', 'frames_processed', 'dropped',
                                                    'errors', 'latency', 'stamp_age', 'batches')},
            'stages': profile.get('stages')}


def node_arguments(parser: argparse.ArgumentParser, rate_help: str, seconds_help: str) -> None:
    """The node benches' shared options: which deployment, model and backend, and the frames streamed."""
    parser.add_argument('--config', default='config/jetson_deployment.yaml', help='deployment YAML')
    parser.add_argument('--model', default='models/detector/model.onnx', help='model file in a bundle')
    parser.add_argument('--backend', default='auto')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--rate', type=float, default=30.0, help=rate_help)
    parser.add_argument('--seconds', type=float, default=10.0, help=seconds_help)


@on_ctrl_c('perception-node-bench')
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='perception-node-bench', description=__doc__.split('\n\n')[0])
    node_arguments(parser, rate_help='camera rate, Hz', seconds_help='length of each streamed phase')
    parser.add_argument('--domain-id', type=int, default=1 + os.getpid() % 100)
    parser.add_argument('-o', '--output', default='out/bench/node_bench.json')
    args = parser.parse_args(argv)
    model, output = Path(args.model).resolve(), Path(args.output)
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    frames, source = bench_frames(30, args.width, args.height)
    threads = len(os.sched_getaffinity(0))
    # the node's precision from the deployment YAML (torch_cuda runs fp16 or fp32 by it)
    from perception_core.deployment import load_config
    precision = str(load_config(Path(args.config))['model.precision'])
    inference, backend = measure_inference(model, args.backend, frames, runs=200,
                                           options=BackendOptions(precision=precision, threads=threads))
    repeat = max(1, round(args.seconds * args.rate / len(frames)))
    from perception.middleware import middleware_environment
    from perception.node_process import log_tail, running_node
    # Camera-sized frames need the large-frames profile in every process, this one included (its
    # participant reads the environment when it is created); discovery stays on this host.
    os.environ.update(middleware_environment(middleware_config_dir(Path(args.config).resolve()),
                                             localhost_only=True))
    env = {**os.environ, 'ROS_DOMAIN_ID': str(args.domain_id), 'PYTHONUNBUFFERED': '1'}
    receiver = Receiver(args.domain_id)
    with tempfile.TemporaryDirectory(prefix='node-bench-') as tmp:
        folder = Path(tmp)
        npz = save_frames(folder / 'frames.npz', frames)
        receiver.listen(Image, '/bench/floor')
        sent_floor = run_source(npz, '/bench/floor', rate=args.rate, repeat=repeat, env=env,
                                log=folder / 'floor.json', receiver=receiver)
        floor = [lat for _, lat in receiver.samples]
        receiver.samples = []
        detections = receiver.listen(Detection2DArray, '/object_detections')
        plan = node_plan(Path(args.config).resolve(), model, args.backend, args.rate, folder,
                         camera=f'{args.width}x{args.height} rgb8')
        console = folder / 'node_console.log'
        try:
            with running_node(plan, console, env) as node:
                try:
                    receiver.wait_for_publisher(detections, node, timeout_s=120.0)
                except RuntimeError:  # the node did not come up: its own words say why
                    print(log_tail(console, lines=40), file=sys.stderr)
                    raise
                sent = run_source(npz, '/camera/image_rect', rate=args.rate, repeat=repeat, env=env,
                                  log=folder / 'e2e.json', receiver=receiver)
        finally:
            node_log = log_tail(console, lines=200)
        receiver.close()
        node_view = node_internal(folder)
    answered = [lat for stamp, lat in receiver.samples if stamp in {s['stamp_ns'] for s in sent}]
    e2e = summary_ms(answered)
    third = max(1, len(answered) // 3)
    floor_s, infer_s = summary_ms(floor), inference['infer']
    # The node's own inference time, not the in-process one above: that one runs back to back on
    # an otherwise idle process, the node's once per camera frame beside the camera and DDS; on a
    # small shared machine the two differ by more than the overhead itself (bench/README.md).
    stages = node_view['stages'] or {}
    in_node = stages.get('infer', {}).get('p50_ms')
    overhead = (e2e['p50_ms'] - floor_s['p50_ms'] - in_node) if answered and floor and in_node else None
    result = {
        'frame': f'{args.width}x{args.height} rgb8', 'frames': source, 'rate_hz': args.rate,
        'backend': backend, 'cpu_threads': threads, 'model': str(model),
        'transport_floor': {**floor_s, 'sent': len(sent_floor)},
        'inference': inference,
        'inference_in_node_p50_ms': in_node,
        'end_to_end': {**e2e, 'sent': len(sent), 'answered': len(answered),
                       'answered_fraction': round(len(answered) / max(1, len(sent)), 4),
                       'first_third_p50_ms': summary_ms(answered[:third]).get('p50_ms'),
                       'last_third_p50_ms': summary_ms(answered[-third:]).get('p50_ms')},
        'node_internal': node_view,
        'node_overhead_p50_ms': None if overhead is None else round(overhead, 4),
        'overhead_target_ms': OVERHEAD_TARGET_MS,
        'overhead_target_met': overhead is not None and overhead <= OVERHEAD_TARGET_MS,
    }
    write_json(output, result)
    if not answered:
        print(node_log, file=sys.stderr)
    print(f'{"stage":<22}{"p50 ms":>10}{"p99 ms":>10}')
    for name, stats in (('transport floor', floor_s), ('inference in-process', infer_s),
                        *((f'node: {k}', v) for k, v in stages.items()), ('end to end', e2e)):
        p50, p99 = stats.get('p50_ms', float('nan')), stats.get('p99_ms', float('nan'))
        print(f'{name:<22}{p50:>10.3f}{p99:>10.3f}')
    print(f'node overhead p50: {result["node_overhead_p50_ms"]} ms (target <= {OVERHEAD_TARGET_MS} ms); '
          f'answered {len(answered)}/{len(sent)} frames; backend {backend}; wrote {output}')
    return 0 if answered else 1


if __name__ == '__main__':
    sys.exit(main())
