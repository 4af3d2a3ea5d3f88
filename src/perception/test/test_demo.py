"""make demo reads its own node's monitoring file: the path the node writes, in the demo's folder,
and only if that node wrote it (a node of the same name elsewhere on the machine does not count)."""

from __future__ import annotations

import json
from pathlib import Path

from perception.demo import demo_plan, node_backend
from perception_core.params import instance_path

WORKSPACE = Path(__file__).resolve().parents[3]


def test_the_demo_reads_the_file_its_node_writes(tmp_path: Path) -> None:
    plan = demo_plan(tmp_path, WORKSPACE / 'config/jetson_deployment.yaml', None)
    monitoring = plan.output_path('runtime.monitoring_output_path')
    # what the node does with the parameter it is given: fill {node} from its fully qualified name
    written = instance_path(str(plan.config['runtime.monitoring_output_path']), '/isaac_trt_perception')
    assert monitoring == Path(written) == tmp_path / 'node/isaac_trt_perception/performance_metrics.json'
    for key in ('runtime.profile_output_path', 'logging.log_path'):
        assert tmp_path in plan.output_path(key).parents, key  # not the YAML's shared /tmp paths
    monitoring.parent.mkdir(parents=True)
    monitoring.write_text(json.dumps({'node': '/isaac_trt_perception', 'backend': 'onnxruntime: CPU'}))
    assert node_backend(monitoring, plan.fully_qualified_name) == 'onnxruntime: CPU'


def test_a_monitoring_file_of_another_node_is_not_the_demos(tmp_path: Path) -> None:
    other = tmp_path / 'performance_metrics.json'
    other.write_text(json.dumps({'node': '/robot/isaac_trt_perception', 'backend': 'tensorrt: engine'}))
    assert node_backend(other, '/isaac_trt_perception').startswith('unknown (')
    assert node_backend(tmp_path / 'none.json', '/isaac_trt_perception') == 'unknown (no monitoring file)'
