"""perception-node-bench: the node's speed, measured in one run at one frame size.

1. transport floor: frame_source -> a subscriber here, no node (image stamp to receipt);
2. inference: the backend's own latency on the same frames, in this process;
3. end to end: frame_source -> the node (its own process, parameters from the deployment YAML)
   -> detections received here (image stamp to receipt).

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
from typing import Any

import numpy as np

from perception_core.atomic import write_json
from perception_core.backends import BackendOptions
from perception_core.cdr import read_header
from perception_core.convert import frame_from_fields
from perception_core.detector import open_detector
from perception_core.metrics import Latency

from .frame_source import image_fields, save_frames

OVERHEAD_TARGET_MS = 1.0


def node_executable() -> Path:
    """The colcon-installed node, as ``ros2 run isaac_trt_perception isaac_trt_perception_node`` finds it."""
    from ament_index_python.packages import get_package_prefix
    prefix = Path(get_package_prefix('isaac_trt_perception'))
    return prefix / 'lib/isaac_trt_perception/isaac_trt_perception_node'


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
    Python messages is the consumer's cost, not the node's, and differs between the two topics:
    rclpy takes 0.56 ms to deserialize a Detection2DArray of 9 detections (nested poses, 36-value
    covariances) and ~0.1 ms for a 640x480 Image, so a deserializing receiver charged ~0.45 ms of
    its own work to the node. The executor is the node's (fast_executor), so both hops are
    received alike.
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
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
        return self.node.create_subscription(msg_type, topic, self._on_message, qos, raw=True)

    def wait_for_publisher(self, subscription: Any, process: subprocess.Popen, timeout_s: float) -> None:
        """Spin until ``subscription`` is matched with a publisher (the node's), so the camera does
        not start while best-effort detections still go nowhere: without this wait the first ~1.7
        s of every 4 s phase went unanswered here (40 % of the frames), whatever the node did."""
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


def summary(samples: list[float]) -> dict[str, Any]:
    latency = Latency(window=max(1, len(samples)))
    for s in samples:
        latency.add(s)
    return latency.summary_ms()


def node_params(config: Path, model: Path, backend: str, rate: float, folder: Path, *, camera: str) -> Path:
    """A params file from the deployment YAML (perception-params), pointed at the bench's model and
    warmed up for the bench's camera (``camera``: "WIDTHxHEIGHT ENCODING"), as a deployment is."""
    import yaml

    from perception.params import write_params_file
    from perception_core.deployment import load_config
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
        loaded = load_config(copy, model_override=str(model))
    finally:
        copy.unlink(missing_ok=True)
    return write_params_file(loaded, folder / 'params.yaml')


def node_internal(folder: Path) -> dict[str, Any]:
    """The node's own view from its monitoring and profile files: frames in, out and dropped,
    receipt -> publish (``latency``) and image stamp -> publish (``stamp_age``, same clock as the
    end to end), and its per-stage profile (None where a file is missing)."""
    files = {name: folder / f'node_{name}.json' for name in ('monitoring', 'profile')}
    found = {name: json.loads(path.read_text()) if path.is_file() else None for name, path in files.items()}
    monitoring, profile = found['monitoring'] or {}, found['profile'] or {}
    return {**{key: monitoring.get(key) for key in ('frames_received', 'frames_processed', 'dropped',
                                                    'errors', 'latency', 'stamp_age')},
            'stages': profile.get('stages')}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='perception-node-bench', description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default='config/jetson_deployment.yaml', help='deployment YAML')
    parser.add_argument('--model', default='models/detector/model.onnx', help='model file in a bundle')
    parser.add_argument('--backend', default='auto')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--rate', type=float, default=30.0, help='camera rate, Hz')
    parser.add_argument('--seconds', type=float, default=10.0, help='length of each streamed phase')
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
    profile = Path(args.config).resolve().parent / 'fastdds_large_frames.xml'
    if 'FASTDDS_DEFAULT_PROFILES_FILE' not in os.environ and profile.is_file():
        os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(profile)  # else camera frames do not arrive
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
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
        params = node_params(Path(args.config).resolve(), model, args.backend, args.rate, folder,
                             camera=f'{args.width}x{args.height} rgb8')
        node = subprocess.Popen([str(node_executable()), '--ros-args', '--params-file', str(params)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            receiver.wait_for_publisher(detections, node, timeout_s=120.0)
            sent = run_source(npz, '/camera/image_rect', rate=args.rate, repeat=repeat, env=env,
                              log=folder / 'e2e.json', receiver=receiver)
        finally:
            node.send_signal(2)
            node_log = node.communicate(timeout=30)[0]
        receiver.close()
        node_view = node_internal(folder)
    answered = [lat for stamp, lat in receiver.samples if stamp in {s['stamp_ns'] for s in sent}]
    e2e = summary(answered)
    third = max(1, len(answered) // 3)
    floor_s, infer_s = summary(floor), inference['infer']
    # The node's own inference time, not the in-process one above: that one runs back to back on
    # an otherwise idle process, the node's once per camera frame beside the camera and DDS, and
    # on 2 cores the two differed by 2-3 ms, which made the overhead swing from -3.6 to +4.9 ms.
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
                       'first_third_p50_ms': summary(answered[:third]).get('p50_ms'),
                       'last_third_p50_ms': summary(answered[-third:]).get('p50_ms')},
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
