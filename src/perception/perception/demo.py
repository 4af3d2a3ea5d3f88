"""``perception-demo`` (``make demo``): the whole pipeline on a synthetic camera, one command.

1. record a synthetic camera bag (frames + ground truth) of the shipped bundle's classes;
2. start the node as ``jetson.launch.py`` would, from the default deployment YAML and the shipped
   bundle (on a machine without a GPU the bundle's ONNX model runs on ONNX Runtime's CPU);
3. replay the bag at its recorded 30 Hz and record the node's answers;
4. evaluate: mAP, latency, dropped frames, report with plots and an annotated video.

Everything runs on a ROS domain of its own, on this host only, so it never talks to a robot, and
the node's profile, monitoring and log files go under ``--out`` (``node/``), so a node of the same
name running elsewhere on this machine cannot be mistaken for the demo's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from perception.bag.evaluate import evaluate
from perception.bag.record import record_synthetic
from perception.bag.replay import deployment_topics, replay
from perception.bag.report import summary_table, write_report
from perception.launch_plan import LaunchPlan, make_plan
from perception.middleware import middleware_environment
from perception.node_process import running_node
from perception_core.interrupt import interrupted
from perception_core.qos import QosSpec

log = logging.getLogger('perception-demo')


def default_config() -> Path:
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory('perception')) / 'config' / 'jetson_deployment.yaml'


def isolated_environment() -> dict[str, str]:
    """A ROS domain of this run's own, discovery on this host only (perception.middleware's)."""
    return {**middleware_environment(localhost_only=True), 'ROS_DOMAIN_ID': str(100 + os.getpid() % 100)}


# The node's own files, placed in the demo's folder; {node} as in the YAML's default.
NODE_FILES = {'runtime.profile_output_path': 'node/{node}/inference_profile.json',
              'runtime.monitoring_output_path': 'node/{node}/performance_metrics.json',
              'logging.log_path': 'node/{node}/jetson_deployment.log'}


def demo_plan(out: Path, config: Path, model: str | None) -> LaunchPlan:
    """The launch plan with the node's files under ``out`` instead of the YAML's /tmp paths."""
    return make_plan(config, model=model, params_dir=out / 'launch',
                     overrides={key: str(out / path) for key, path in NODE_FILES.items()})


def run(out: Path, *, config: Path, model: str | None, frames: int, storage: str) -> dict:
    from perception_core.bundle import BundleError, load_bundle

    started = time.monotonic()
    plan = demo_plan(out, config, model)
    try:
        bundle = load_bundle(str(plan.config['model.path']))
    except BundleError as exc:
        raise BundleError(f'{exc}\nThe demo needs a model bundle: the shipped one is models/detector '
                          '(make train writes it), or pass --model PATH/model.onnx') from exc
    for name in ('synthetic', 'answers', 'report'):
        shutil.rmtree(out / name, ignore_errors=True)
    bag = record_synthetic(out / 'synthetic', frames=frames, classes=bundle.classes, storage=storage)
    env = isolated_environment()
    # The replay runs in this process: it needs the same graph and middleware settings as the node.
    os.environ.update({**plan.env, **env})
    values = plan.config.values
    topics = deployment_topics(values)
    with running_node(plan, out / 'node.log', env):
        summary = replay(bag.path, out / 'answers', qos=QosSpec.of(values), storage=storage, **topics)
    evaluation = evaluate(bag.path, summary.output, **topics)
    backend = node_backend(plan.output_path('runtime.monitoring_output_path'), plan.fully_qualified_name)
    paths = write_report(evaluation, out / 'report', image_topic=topics['image_topic'], fps=bag.fps,
                         context={'backend': backend, 'model': str(values['model.path']),
                                  'config': str(plan.config.source)})
    return {'metrics': evaluation.metrics, 'backend': backend, 'paths': paths,
            'seconds': time.monotonic() - started}


def node_backend(monitoring_file: Path, node: str) -> str:
    """The backend the node ``node`` (fully qualified) reported in its monitoring file (written at
    shutdown); a file another node wrote does not count."""
    try:
        document = json.loads(monitoring_file.read_text())
        if document.get('node') != node:
            return f'unknown ({monitoring_file} was written by {document.get("node")!r}, not {node})'
        return str(document['backend'])
    except (OSError, ValueError, KeyError, AttributeError):
        return 'unknown (no monitoring file)'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='perception-demo', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=Path('out/demo'), help='folder for bags and report')
    parser.add_argument('--config', type=Path, help='deployment YAML (default: the installed one)')
    parser.add_argument('--model', help='replace model.path (default: the YAML\'s, the shipped bundle)')
    parser.add_argument('--frames', type=int, default=300, help='frames in the synthetic bag (30 Hz)')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s')
    try:
        result = run(args.out.resolve(), config=args.config or default_config(), model=args.model,
                     frames=args.frames, storage=args.storage)
    except KeyboardInterrupt:  # the node, if started, has been stopped on the way out of running_node
        return interrupted('perception-demo')
    except Exception as exc:  # the CLI's last line: say what failed, no traceback
        log.debug('demo failed', exc_info=True)
        print(f'perception-demo: {type(exc).__name__}: {exc}', file=sys.stderr)
        return 1
    print()
    print(summary_table(result['metrics'], result['backend']))
    print(f'report          {result["paths"]["markdown"]}')
    if 'video' in result['paths']:
        print(f'annotated video {result["paths"]["video"]}')
    print(f'frames strip    {result["paths"].get("strip", "-")}')
    print(f'demo took {result["seconds"]:.0f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
