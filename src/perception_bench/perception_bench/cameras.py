"""perception-cameras-bench: N cameras through one batching node (ros_integration.cameras) against
N separate one-camera nodes, in one run.

For each N (default 1, 2, 4) and each configuration, N frame_source processes (one per camera,
WIDTHxHEIGHT at RATE Hz each) feed the node(s), started as ``ros2 launch`` plans them; answers are
received here raw (``node_run.Receiver``: receipt time minus image stamp). Per configuration: the
answered fraction and end-to-end p50/p99 per camera, and the node processes' CPU while streaming
(cores used: user + system seconds over wall seconds, all node processes together, psutil).
First, for each N, the transport floor: the same N streams straight to a subscriber here, no node.
N = 1 runs the one-camera node only (the two configurations are the same node).
``--trigger free`` (the default) lets each camera run on its own clock, as USB cameras do;
``together`` starts every camera's frames on one shared schedule, as a hardware-triggered rig
does, so N frames arrive at once: the case batching is for. ``--trigger free,together`` runs both.

    perception-cameras-bench --rate 30 --seconds 10 [--cameras 1,2,4] [-o out/bench/cameras.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import yaml

from perception_core.atomic import write_json
from perception_core.cdr import read_header
from perception_core.interrupt import on_ctrl_c
from perception_core.metrics import summary_ms

from .frame_source import save_frames
from .node_run import Receiver, bench_frames, node_arguments, node_internal, node_plan


class CameraReceiver(Receiver):
    """``Receiver`` with its samples kept per output topic."""

    def __init__(self, domain_id: int) -> None:
        super().__init__(domain_id)
        self.by_topic: dict[str, list[tuple[int, float]]] = {}

    def listen_topic(self, msg_type: Any, topic: str) -> Any:
        from isaac_trt_perception.qos import profile
        from perception_core.qos import QosSpec
        samples = self.by_topic.setdefault(topic, [])

        def heard(cdr: bytes) -> None:
            received = time.time_ns()
            stamp = read_header(cdr).stamp_ns
            samples.append((stamp, (received - stamp) * 1e-9))
        return self.node.create_subscription(msg_type, topic, heard,
                                             profile(QosSpec(reliability='best_effort', depth=100)), raw=True)


def camera_topics(n: int) -> list[tuple[str, str, str]]:
    return [(f'cam{i}', f'/cam{i}/image_rect', f'/cam{i}/detections') for i in range(n)]


# Batching-node variants beside the deployment's own settings (--variants): name -> (label, the
# performance keys changed), to tell what batching itself costs from what one process costs.
# camera timing (--trigger) -> what it adds to a configuration's name: each camera on its own
# clock; every camera on one schedule
TRIGGER_LABELS = {'free': '', 'together': ', triggered together'}
TRIGGERS = tuple(TRIGGER_LABELS)
VARIANTS = {'window0': ('window 0 ms', {'batch_window_ms': 0.0}),
            'window1': ('window 1 ms', {'batch_window_ms': 1.0}),
            'window5': ('window 5 ms', {'batch_window_ms': 5.0}),
            'nobatch': ('batches of 1', {'max_batch_size': 1}),
            'omp1': ('OMP_NUM_THREADS=1', {}),
            'sample': ('stacks sampled', {})}
SAMPLER = Path(__file__).resolve().parent / 'stack_sampler'  # its sitecustomize.py


def variant_env(name: str | None, folder: Path) -> dict[str, str]:
    """The environment a variant's node processes add: OpenMP's threads, or the stack sampler."""
    if name == 'omp1':
        return {'OMP_NUM_THREADS': '1'}
    if name == 'sample':
        path = os.pathsep.join(p for p in (str(SAMPLER), os.environ.get('PYTHONPATH', '')) if p)
        return {'PYTHONPATH': path, 'PERCEPTION_STACK_SAMPLES': str(folder / 'stacks.json')}
    return {}


def variant(config: Path, tag: str, ros_integration: dict[str, Any], performance: dict[str, Any]) -> Path:
    """The deployment YAML with ros_integration and performance keys changed, beside it (relative
    paths resolve)."""
    document = yaml.safe_load(config.read_text())
    section = document['deployment_config']
    section.setdefault('ros_integration', {}).update(ros_integration)
    section.setdefault('performance', {}).update(performance)
    path = config.parent / f'.cameras-bench-{os.getpid()}-{tag}.yaml'
    path.write_text(yaml.safe_dump(document))
    return path


def node_plans(config: Path, model: Path, args: argparse.Namespace, *, n: int, batched: bool,
               folder: Path, performance: dict[str, Any]) -> list[tuple[str, Any]]:
    """(tag, launch plan) of each node: 'batched', or one per camera by its name; each node's
    files go into ``folder / tag``."""
    camera = f'{args.width}x{args.height} rgb8'
    cameras = camera_topics(n)
    if batched:
        settings = [('batched', {'node_name': 'cameras_node', 'cameras': [
            {'name': name, 'input_topic': i, 'output_topic': o} for name, i, o in cameras]})]
    else:
        settings = [(name, {'node_name': f'{name}_node', 'input_topic': i, 'output_topic': o})
                    for name, i, o in cameras]
    plans = []
    for tag, keys in settings:
        path = variant(config, tag, keys, performance)
        try:
            (folder / tag).mkdir(parents=True, exist_ok=True)
            plans.append((tag, node_plan(path, model, args.backend, args.rate, folder / tag, camera=camera)))
        finally:
            path.unlink(missing_ok=True)
    return plans


def cpu_seconds(processes: list[subprocess.Popen]) -> float:
    total = 0.0
    for process in processes:
        times = psutil.Process(process.pid).cpu_times()
        total += times.user + times.system
    return total


def thread_seconds(processes: list[subprocess.Popen]) -> dict[tuple[str, int], float]:
    """CPU seconds (user + system) of each thread of the processes, by (name, thread id): Linux
    /proc/PID/task/TID/comm names them (the node's worker is 'detector', DDS threads 'dds.*';
    Python's own threads and OpenMP's carry the process's name)."""
    found: dict[tuple[str, int], float] = {}
    for process in processes:
        for thread in psutil.Process(process.pid).threads():
            try:
                name = Path(f'/proc/{process.pid}/task/{thread.id}/comm').read_text().strip()
            except OSError:  # the thread ended, or not Linux
                name = '?'
            found[name, thread.id] = thread.user_time + thread.system_time
    return found


def cores_by_thread(before: dict[tuple[str, int], float], after: dict[tuple[str, int], float],
                    wall: float) -> dict[str, list[float]]:
    """Cores each thread used between two ``thread_seconds``, by name, busiest first (> 0.002)."""
    by_name: dict[str, list[float]] = {}
    for (name, tid), seconds in after.items():
        cores = (seconds - before.get((name, tid), 0.0)) / wall
        if cores > 0.002:
            by_name.setdefault(name, []).append(round(cores, 3))
    return {name: sorted(values, reverse=True) for name, values in sorted(by_name.items())}


def wait_for_subscriptions(receiver: CameraReceiver, topics: list[str], nodes: list[subprocess.Popen],
                           timeout_s: float = 180.0) -> None:
    """Until each topic has a subscriber (the nodes', activated after warm-up), spinning."""
    deadline = time.monotonic() + timeout_s
    while any(receiver.node.count_subscribers(topic) < 1 for topic in topics):
        if time.monotonic() > deadline or any(node.poll() is not None for node in nodes):
            missing = [t for t in topics if receiver.node.count_subscribers(t) < 1]
            raise RuntimeError(f'no node subscribed to {", ".join(missing)} within {timeout_s:g} s '
                               'or a node exited (its console log says why)')
        receiver.executor.spin_once(timeout_sec=0.05)


def stream(receiver: CameraReceiver, cameras: list[tuple[str, str]], *, args: argparse.Namespace,
           folder: Path, npz: Path, env: dict[str, str], nodes: list[subprocess.Popen],
           threads: dict[str, list[float]] | None = None, sampled: bool = False) -> float:
    """One frame_source per (camera name, image topic) at the camera rate, the receiver spinning
    until they end and one second after; -> the ``nodes``' CPU while streaming, in cores (and in
    ``threads``, cores by thread name). ``sampled``: the nodes run the stack sampler, told when
    streaming starts and ends (SIGUSR1, SIGUSR2).

    With nodes, their CPU is counted only once every camera's image subscription is there: the
    detections' publishers exist before the node warms up, and a batching node's warm-up (a CUDA
    graph per batch size) still ran for seconds after they matched, 70 % of the CPU first counted
    as streaming on the H200 (bench/README.md)."""
    if nodes:
        wait_for_subscriptions(receiver, [topic for _, topic in cameras], nodes)
    repeat = max(1, round(args.seconds * args.rate / 30))
    # together: every source's first slot 2 s ahead, past their discovery (a late one joins the
    # schedule at its next slot)
    start_at = ['--start-at', f'{time.time() + 2.0:.6f}'] if args.trigger == 'together' else []
    sources = [subprocess.Popen([sys.executable, '-m', 'perception_bench.frame_source', str(npz),
                                 '--topic', topic, '--rate', str(args.rate), '--repeat', str(repeat),
                                 '--frame-id', name, '--log', str(folder / f'{name}.sent.json'), *start_at],
                                env=env)
               for name, topic in cameras]
    for node in nodes if sampled else []:
        node.send_signal(signal.SIGUSR1)
    start_wall, start_cpu, start_threads = time.monotonic(), cpu_seconds(nodes), thread_seconds(nodes)
    while any(source.poll() is None for source in sources):
        receiver.executor.spin_once(timeout_sec=0.05)
    for node in nodes if sampled else []:
        node.send_signal(signal.SIGUSR2)
    wall = time.monotonic() - start_wall
    cores = (cpu_seconds(nodes) - start_cpu) / wall
    if threads is not None:
        threads.update(cores_by_thread(start_threads, thread_seconds(nodes), wall))
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        receiver.executor.spin_once(timeout_sec=0.05)
    return cores


def answered_per_camera(receiver: CameraReceiver, cameras: list[tuple[str, str]], folder: Path
                        ) -> dict[str, dict[str, Any]]:
    """Per (camera name, topic heard): frames sent, answered, and stamp -> receipt p50/p99."""
    per_camera = {}
    for name, topic in cameras:
        sent = {s['stamp_ns'] for s in json.loads((folder / f'{name}.sent.json').read_text())}
        answered = [lat for stamp, lat in receiver.by_topic[topic] if stamp in sent]
        e2e = summary_ms(answered)
        per_camera[name] = {'sent': len(sent), 'answered': len(answered),
                            'answered_fraction': round(len(answered) / max(1, len(sent)), 4),
                            'p50_ms': e2e.get('p50_ms'), 'p99_ms': e2e.get('p99_ms')}
    return per_camera


def run_floor(args: argparse.Namespace, n: int, folder: Path, npz: Path, env: dict[str, str]
              ) -> dict[str, Any]:
    """The transport floor of N cameras: the same N streams straight to a subscriber here, no node."""
    from sensor_msgs.msg import Image
    receiver = CameraReceiver(args.domain_id)
    cameras = [(name, f'/bench/floor/{name}') for name, _, _ in camera_topics(n)]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for _, topic in cameras:
            receiver.listen_topic(Image, topic)
        stream(receiver, cameras, args=args, folder=folder, npz=npz, env=env, nodes=[])
    finally:
        receiver.close()
    per_camera = answered_per_camera(receiver, cameras, folder)
    p50s = [c['p50_ms'] for c in per_camera.values() if c['p50_ms'] is not None]
    return {'cameras': n, 'per_camera': per_camera, 'p50_ms': max(p50s, default=None)}


def run_configuration(config: Path, model: Path, args: argparse.Namespace, *, n: int, batched: bool,
                      folder: Path, npz: Path, env: dict[str, str], variant_name: str | None = None
                      ) -> dict[str, Any]:
    """One configuration; ``variant_name`` (a VARIANTS key) changes the batching node's settings."""
    from vision_msgs.msg import Detection2DArray

    from perception.node_process import log_tail, running_node
    receiver = CameraReceiver(args.domain_id)
    cameras = camera_topics(n)
    subscriptions = [receiver.listen_topic(Detection2DArray, output) for _, _, output in cameras]
    label, performance = VARIANTS[variant_name] if variant_name else ('', {})
    tagged = node_plans(config, model, args, n=n, batched=batched, folder=folder, performance=performance)
    plans = [plan for _, plan in tagged]
    try:
        with contextlib.ExitStack() as stack:
            node_env = {**env, **variant_env(variant_name, folder)}
            nodes = [stack.enter_context(running_node(plan, folder / f'{plan.node_name}.console', node_env))
                     for plan in plans]
            for subscription in subscriptions:
                try:
                    receiver.wait_for_publisher(subscription, nodes[0], timeout_s=180.0)
                except RuntimeError:
                    for plan in plans:
                        print(log_tail(folder / f'{plan.node_name}.console', lines=40), file=sys.stderr)
                    raise
            threads: dict[str, list[float]] = {}
            cores = stream(receiver, [(name, topic) for name, topic, _ in cameras], args=args, folder=folder,
                           npz=npz, env=env, nodes=nodes, threads=threads, sampled=variant_name == 'sample')
    finally:
        receiver.close()
    per_camera = answered_per_camera(receiver, [(name, output) for name, _, output in cameras], folder)
    configuration = 'one node' if n == 1 else 'one batching node' if batched else f'{n} separate nodes'
    if n > 1:
        configuration += TRIGGER_LABELS[args.trigger]
    # each node's own counts and per-stage profile (its monitoring and profile files)
    internal = {plan.node_name: node_internal(folder / tag) for tag, plan in tagged}
    return {'cameras': n, 'configuration': f'{configuration}, {label}' if label else configuration,
            'node_processes': len(plans), 'cores_used': round(cores, 3), 'cores_by_thread': threads,
            'per_camera': per_camera, 'nodes': internal,
            **({'stacks': json.loads((folder / 'stacks.json').read_text())['charged']}
               if (folder / 'stacks.json').is_file() else {})}


def floor_key(n: int, trigger: str) -> str:
    """The transport floor's key in the document: '4' free-running, '4 together' triggered."""
    return str(n) if trigger == 'free' else f'{n} {trigger}'


def measure(config: Path, model: Path, *, rate: float = 30.0, seconds: float = 10.0, cameras: str = '1,2,4',
            backend: str = 'auto', width: int = 640, height: int = 480, domain_id: int | None = None,
            progress: bool = True, variants: Sequence[str] = (), triggers: Sequence[str] = ('free',),
            output: Path | None = None) -> dict[str, Any]:
    """Every configuration for each camera count in ``cameras`` (and the batching node's
    ``variants`` for counts above 1), for each of ``triggers`` (TRIGGERS; camera counts above 1
    only for ``together``): the JSON document (also the ``cameras`` section of ``make bench``).
    ``output``: the document so far is written there after every row, so a run cut short keeps
    what it measured."""
    unknown = [t for t in triggers if t not in TRIGGERS]
    if unknown:
        raise ValueError(f'triggers {", ".join(unknown)}: one of {", ".join(TRIGGERS)}')
    args = argparse.Namespace(rate=rate, seconds=seconds, backend=backend, width=width, height=height,
                              domain_id=1 + os.getpid() % 100 if domain_id is None else domain_id,
                              trigger='free')
    config, model = Path(config).resolve(), Path(model).resolve()
    from perception.middleware import middleware_environment

    from .node_run import middleware_config_dir
    os.environ.update(middleware_environment(middleware_config_dir(config), localhost_only=True))
    env = {**os.environ, 'ROS_DOMAIN_ID': str(args.domain_id), 'PYTHONUNBUFFERED': '1'}
    frames, source = bench_frames(30, width, height)
    results: list[dict[str, Any]] = []
    floors: dict[str, Any] = {}
    document = {'frame': f'{width}x{height} rgb8', 'frames': source, 'rate_hz': rate, 'seconds': seconds,
                'model': str(model), 'machine_cores': len(os.sched_getaffinity(0)), 'results': results,
                'transport_floor': floors}
    with tempfile.TemporaryDirectory(prefix='cameras-bench-') as tmp:
        npz = save_frames(Path(tmp) / 'frames.npz', frames)
        counts = [int(c) for c in cameras.split(',')]
        for trigger in triggers:
            args.trigger = trigger
            shown = [n for n in counts if trigger == 'free' or n > 1]
            for n in shown:
                folder = Path(tmp) / f'{n}-{trigger}-floor'
                floors[floor_key(n, trigger)] = run_floor(args, n, folder, npz, env)
            for n in shown:
                runs = [(False, None)] if n == 1 else [(True, None), *((True, v) for v in variants),
                                                       (False, None)]
                for batched, name in runs:
                    kind = 'batched' if batched else 'separate'
                    folder = Path(tmp) / f'{n}-{trigger}-{kind}-{name or "default"}'
                    row = run_configuration(config, model, args, n=n, batched=batched, folder=folder, npz=npz,
                                            env=env, variant_name=name)
                    floor = floors[floor_key(n, trigger)]
                    results.append({**row, 'trigger': trigger, 'transport_floor_p50_ms': floor['p50_ms']})
                    if progress:
                        print(summary_line(results[-1], rate), flush=True)
                    if output is not None:
                        write_json(output, document)
    return document


def worst_camera(row: dict[str, Any]) -> tuple[float, float, float]:
    """(lowest answered fraction, highest e2e p50, highest p99) over the configuration's cameras."""
    cameras = row['per_camera'].values()
    return (min(c['answered_fraction'] for c in cameras), max(c['p50_ms'] or float('nan') for c in cameras),
            max(c['p99_ms'] or float('nan') for c in cameras))


def summary_line(row: dict[str, Any], rate: float) -> str:
    worst, p50, p99 = worst_camera(row)
    floor = row.get('transport_floor_p50_ms')
    floor_text = 'n/a' if floor is None else f'{floor:.2f}'
    return (f'{row["cameras"]} x {rate:g} Hz {row["configuration"]:<20} answered >= {worst:.3f}  '
            f'e2e p50 <= {p50:.2f} ms  p99 <= {p99:.2f} ms  floor p50 {floor_text} ms  '
            f'node CPU {row["cores_used"]:.2f} cores')


@on_ctrl_c('perception-cameras-bench')
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='perception-cameras-bench', description=__doc__.split('\n\n')[0])
    node_arguments(parser, rate_help='each camera\'s rate, Hz',
                   seconds_help='streaming time per configuration')
    parser.add_argument('--cameras', default='1,2,4', help='camera counts, comma separated')
    parser.add_argument('--variants', default='', help='batching-node variants too, comma separated: '
                        + ', '.join(f'{k} ({label})' for k, (label, _) in VARIANTS.items()))
    parser.add_argument('--trigger', default='free',
                        help=f'camera timing, comma separated: {", ".join(TRIGGERS)} '
                        '(free: each camera on its own clock; together: one shared schedule)')
    parser.add_argument('--domain-id', type=int, default=1 + os.getpid() % 100)
    parser.add_argument('-o', '--output', default='out/bench/cameras_bench.json')
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(',') if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f'--variants: {", ".join(unknown)} unknown; one of {", ".join(VARIANTS)}')
    triggers = [t for t in args.trigger.split(',') if t]
    if not triggers or any(t not in TRIGGERS for t in triggers):
        parser.error(f'--trigger {args.trigger!r}: comma separated, of {", ".join(TRIGGERS)}')
    document = measure(Path(args.config), Path(args.model), rate=args.rate, seconds=args.seconds,
                       cameras=args.cameras, backend=args.backend, width=args.width, height=args.height,
                       domain_id=args.domain_id, variants=variants, triggers=triggers,
                       output=Path(args.output))
    write_json(args.output, document)
    print(f'wrote {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
