"""Every parameter of the isaac_trt_perception node, declared once.

A parameter's name is its dotted key path under ``deployment_config`` in
``config/jetson_deployment.yaml`` (``runtime.inference_frequency``). The bringup turns the YAML
into a params file of the form ``{node_name: {ros__parameters: <deployment_config>}}`` and ROS 2
flattens the nested dicts into exactly these names. Both the bringup's validation and the node
check values through :func:`check_value`, so a wrong type or range is reported the same way,
naming the key path, wherever it is found.

Keys of the design card's deployment schema (the seed ``jetson_deployment.yaml``) keep its example
value as default, and so its type; keys this workspace added are marked ``extension``.
:func:`markdown_table` renders the README's parameter table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import qos
from .convert import ENCODINGS

ParameterValue = bool | int | float | str | list


@dataclass(frozen=True)
class Parameter:
    name: str                 # dotted, mirrors the YAML key path under deployment_config
    default: ParameterValue   # typed default (lists typed by the design card's example)
    description: str          # one line; the README parameter table is generated from it
    choices: tuple = ()       # allowed values (strings or numbers), empty = any
    minimum: float | None = None
    maximum: float | None = None
    extension: bool = False   # True for keys the design card's schema does not have


class ParameterError(ValueError):
    """A parameter value that cannot be used; the message starts with the key path."""


BACKENDS = ('auto', 'tensorrt', 'torchscript', 'onnxruntime', 'torch_cuda')
FALLBACK_BEHAVIORS = ('degraded', 'report')
IMAGE_TRANSPORTS = ('raw', 'compressed')
# logging.level's choices and ROS 2's name for each (``--log-level``, ``LoggingSeverity[name.upper()]``).
LOG_LEVELS = {'DEBUG': 'debug', 'INFO': 'info', 'WARN': 'warn', 'WARNING': 'warn', 'ERROR': 'error',
              'FATAL': 'fatal'}
_WARMUP_IMAGE = re.compile(r'^\s*(\d+)\s*x\s*(\d+)\s+(\w+)\s*$')
_MEMORY_SIZE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$', re.IGNORECASE)
_MEMORY_UNITS = {'b': 1, 'kb': 10**3, 'mb': 10**6, 'gb': 10**9, 'tb': 10**12,
                 'kib': 2**10, 'mib': 2**20, 'gib': 2**30, 'tib': 2**40}

# The output files of one node instance. Two nodes started from one YAML (two cameras) must not
# write one file, so these paths may name the instance; the node expands the placeholders at start
# from its fully qualified name (see instance_path).
INSTANCE_PATHS = ('runtime.profile_output_path', 'runtime.monitoring_output_path', 'logging.log_path')
PLACEHOLDERS = {
    'node': 'the fully qualified node name without the leading "/", "/" written "." '
            '(/robot/cam_left -> robot.cam_left, as in ROS log lines)',
    'name': 'the node name alone (cam_left)',
    'namespace': 'the namespace the same way (robot; "" in the root namespace)',
}
_PLACEHOLDER = re.compile(r'\{([^{}]*)\}')
_PLACEHOLDER_NOTE = ('{node}, {name} and {namespace} name this instance, so two nodes from one YAML '
                     'never share the file (README: "Several instances").')

P = Parameter
PARAMETERS: tuple[Parameter, ...] = (
    # target_platform: checked against the engine's sidecar and the GPU when an engine is loaded.
    P('target_platform.type', 'jetson', 'Platform family (dgpu = a discrete-GPU PC); checked against the '
      'engine sidecar.', choices=('jetson', 'dgpu')),
    P('target_platform.model', 'jetson_orin_nano', 'Device model (jetson_orin_nano, jetson_agx_orin, ...); '
      'reported in diagnostics and checked against the engine sidecar.'),
    P('target_platform.compute_capability', '8.7', 'CUDA compute capability "major.minor" of the device; '
      'a TensorRT engine built for another one is refused.'),
    # model
    P('model.path', 'package://perception/models/detector/model.onnx', 'Model file in a bundle: '
      '.engine/.plan (TensorRT), .ts (TorchScript), .onnx (ONNX Runtime); package://, absolute, or '
      'relative to the YAML (a value that reaches the node unresolved, such as this default, is resolved '
      'by the node, relative to its working directory); a file that does not exist stops the node '
      '(exit 2), except an engine still to be built in an existing bundle.'),
    P('model.input_shape', [1, 3, 256, 320], 'Network input [N, C, H, W]; must match the bundle\'s '
      'model.json, checked at start.'),
    P('model.precision', 'fp16', 'Inference precision: the engine\'s (checked against its sidecar) and '
      'the torch_cuda path\'s (fp16 or fp32).', choices=('fp16', 'fp32', 'int8')),
    P('model.batch_size', 1, 'Frames per inference; the node always runs the newest single frame, so '
      'values above 1 are reported and treated as 1.', minimum=1),
    P('model.backend', 'auto', 'Backend: auto = by model.path\'s extension, else one of tensorrt, '
      'torchscript, onnxruntime, torch_cuda; on failure the documented fallback chain applies.',
      choices=BACKENDS, extension=True),
    P('model.rebuild_on_mismatch', False, 'Rebuild the TensorRT engine from the bundle\'s ONNX when its '
      'sidecar does not match this device, instead of falling back.', extension=True),
    P('model.build_on_start', False, 'Build the TensorRT engine from the bundle\'s ONNX at start when '
      'model.path names an engine that does not exist yet.', extension=True),
    # detection (all extensions; negative or zero = the bundle's model.json default)
    P('detection.score_threshold', -1.0, 'Minimum detection score in [0, 1]; -1 = the bundle\'s '
      'postprocess.score_threshold.', minimum=-1.0, maximum=1.0, extension=True),
    P('detection.nms_iou_threshold', -1.0, 'IoU above which same-class boxes are suppressed, in (0, 1]; '
      '-1 = the bundle\'s default.', minimum=-1.0, maximum=1.0, extension=True),
    P('detection.max_detections', 0, 'Most detections per frame, best first; 0 = the bundle\'s default.',
      minimum=0, extension=True),
    # performance: engine-build settings, passed to the engine check (sidecar comparison).
    P('performance.max_batch_size', 8, 'Largest batch the engine profile allows; checked against the '
      'engine sidecar. With ros_integration.cameras, also the most camera frames run as one batch.',
      minimum=1),
    P('performance.batch_window_ms', -1.0, 'With ros_integration.cameras: how long (ms) a frame waits for '
      'the other cameras\' frames expected within it, to run them as one batch; a camera late or silent is '
      'not waited for. -1 = min(1 ms, a quarter of the runtime.inference_frequency period); 0 = no '
      'waiting (batch only what is already there).', minimum=-1.0, extension=True),
    P('performance.workspace_size', 2147483648, 'TensorRT builder workspace in bytes; used when the node '
      'builds an engine.', minimum=0),
    P('performance.minimum_segment_size', 3, 'Torch-TensorRT minimum segment size; used when compiling '
      'TorchScript with Torch-TensorRT.', minimum=1),
    P('performance.sparse_weights', False, 'Allow sparse-weight tactics when building an engine.'),
    P('performance.calibrated_preview', False, 'Allow preview TensorRT features when building an engine.'),
    # resources
    P('resources.gpu_usage', 0.8, 'Fraction of GPU memory the backend may take (torch_cuda, TensorRT, '
      'ONNX Runtime CUDA).', minimum=0.0, maximum=1.0),
    P('resources.cpu_affinity', [0, 1, 2, 3], 'CPU cores the node runs on; cores this machine lacks are '
      'dropped with a warning.'),
    P('resources.memory_limit', '2GB', 'Resident memory guard ("2GB", "512MiB"); above it the node '
      'degrades, and refuses to start a model that cannot fit.'),
    P('resources.power_mode', 'MAXN', 'Expected Jetson power mode; the active one is read with nvpmodel '
      'and reported, a mismatch warned.'),
    # runtime
    P('runtime.inference_frequency', 30.0, 'Most frames processed per second (Hz); extra frames are '
      'dropped, the newest one always wins; 0 = every frame.', minimum=0.0),
    P('runtime.warmup_images', '', 'Camera images to warm up for at start besides the network\'s own '
      'size, "WIDTHxHEIGHT ENCODING" separated by commas ("640x480 rgb8, 1280x720 bgr8"); torch_cuda '
      'captures a CUDA graph per size and channel order, which stalls the first frame of a size not '
      'warmed up for seconds; "" = none.', extension=True),
    P('runtime.enable_profiling', True, 'Write per-stage timings (handoff, convert, preprocess, infer, '
      'postprocess, publish) to runtime.profile_output_path.'),
    P('runtime.profile_output_path', '/tmp/perception/{node}/inference_profile.json', 'Profile JSON, '
      'rewritten every logging.diagnostic_interval and at shutdown; ' + _PLACEHOLDER_NOTE),
    P('runtime.enable_monitoring', True, 'Write fps, latency percentiles, drops, CPU, RSS and GPU memory '
      'to runtime.monitoring_output_path.'),
    P('runtime.monitoring_output_path', '/tmp/perception/{node}/performance_metrics.json', 'Monitoring '
      'JSON, rewritten every logging.diagnostic_interval and at shutdown; ' + _PLACEHOLDER_NOTE),
    # safety
    P('safety.max_inference_time', 0.1, 'Inference deadline in seconds; a slower frame is an overrun, '
      'a run of overruns triggers safety.fallback_behavior.', minimum=0.0),
    P('safety.fallback_behavior', 'degraded', 'On a run of overruns: degraded = halve the processing '
      'rate (repeatedly) until inference is fast again; report = only count and warn.',
      choices=FALLBACK_BEHAVIORS),
    P('safety.watchdog_timeout', 5.0, 'Seconds without an input image before /diagnostics and the log '
      'report the camera as stale.', minimum=0.0),
    P('safety.overrun_limit', 3, 'Consecutive overruns that switch to the fallback behaviour; as many '
      'consecutive on-time frames step back toward full rate.', minimum=1, extension=True),
    # ros_integration
    P('ros_integration.node_name', 'isaac_trt_perception', 'Node name the launch file gives the node; '
      'the params file applies to any name (-r __node:=NAME renames an instance).'),
    P('ros_integration.input_topic', '/camera/image_rect', 'Camera image topic (image_transport\'s base '
      'topic: with ros_integration.image_transport compressed the node subscribes its "/compressed").'),
    P('ros_integration.image_transport', 'raw', 'How images arrive (image_transport\'s names): raw = '
      'sensor_msgs/Image on input_topic; compressed = sensor_msgs/CompressedImage (JPEG or PNG, '
      'compressed_image_transport\'s format strings) on input_topic + "/compressed", decoded by OpenCV '
      'on the worker thread; a message that does not decode is counted (errors.bad_compressed_image) '
      'and skipped.', choices=IMAGE_TRANSPORTS, extension=True),
    P('ros_integration.output_topic', '/object_detections', 'vision_msgs/Detection2DArray output topic.'),
    P('ros_integration.cameras', '', 'Several cameras in one node (one model, batched inference): in the '
      'deployment YAML a list of {name, input_topic, output_topic} mappings with optional frame_id '
      '(overrides frame_id_override), image_transport (raw or compressed), reliability and depth (the '
      'camera\'s input and output QoS; each defaults to the global key); in the params file and launch '
      'argument the same as text, "name:input:output[:frame_id=F][:image_transport=T][:reliability=R]'
      '[:depth=N]" entries separated by commas. Names, input and output topics must be unique. '
      '"" = one camera on input_topic/output_topic (those two keys are ignored when cameras are given).',
      extension=True),
    P('ros_integration.qos_profile.reliability', 'best_effort', 'Input and output reliability.',
      choices=qos.RELIABILITY),
    P('ros_integration.qos_profile.durability', 'volatile', 'Input and output durability.',
      choices=qos.DURABILITY),
    P('ros_integration.qos_profile.history', 'keep_last', 'Input and output history.',
      choices=qos.HISTORY),
    P('ros_integration.qos_profile.depth', 1, 'Queue depth for keep_last; 1 keeps only the newest frame.',
      minimum=1),
    P('ros_integration.debug_image_topic', '', 'sensor_msgs/Image topic with boxes drawn; "" = off (no '
      'cost).', extension=True),
    P('ros_integration.label_info_topic', '/object_detections/label_info', 'vision_msgs/LabelInfo topic '
      '(transient local) with the class map.', extension=True),
    P('ros_integration.frame_id_override', '', 'frame_id written into detections; "" = keep the image\'s.',
      extension=True),
    P('ros_integration.lifecycle', False, 'Run as a lifecycle (managed) node: it starts unconfigured; '
      'configure loads and warms up the model, activate subscribes and answers, deactivate stops answering '
      'with the model kept, cleanup unloads it, shutdown exits. false = answering from the start.',
      extension=True),
    # logging
    P('logging.level', 'INFO', 'Node log level.', choices=tuple(LOG_LEVELS)),
    P('logging.log_path', '/tmp/perception/{node}/jetson_deployment.log', 'File that also receives the '
      'node\'s log lines; "" = none; ' + _PLACEHOLDER_NOTE),
    P('logging.diagnostic_interval', 5.0, 'Seconds between /diagnostics messages (and metric file '
      'writes).', minimum=0.1),
    P('logging.enable_detailed_logging', False, 'Log one DEBUG-level line per processed frame with '
      'stage timings and detection count.'),
)
del P


def by_name() -> dict[str, Parameter]:
    return {p.name: p for p in PARAMETERS}


def instance_path(template: str, fully_qualified_name: str) -> str:
    """``template`` (one of INSTANCE_PATHS) with its placeholders filled in for the node whose fully
    qualified name is given (``/robot/cam_left``); ValueError for a placeholder that is not one.

    "." stands for "/" in ``{node}`` and ``{namespace}`` (a ROS name cannot hold "."), so each is
    one file-name part and different nodes never give the same text.
    """
    namespace, _, name = fully_qualified_name.rpartition('/')
    fields = {'node': fully_qualified_name.strip('/').replace('/', '.'), 'name': name,
              'namespace': namespace.strip('/').replace('/', '.')}

    def fill(match: re.Match) -> str:
        if match.group(1) not in fields:
            raise ValueError(f'{match.group(0)} is not a placeholder (use '
                             + ', '.join('{' + k + '}' for k in PLACEHOLDERS) + ')')
        return fields[match.group(1)]

    return _PLACEHOLDER.sub(fill, template)


def parse_memory_size(text: str) -> int:
    """Bytes in a size such as "2GB", "512MiB" or "1000000"; ValueError if it is not one."""
    match = _MEMORY_SIZE.match(text)
    if not match:
        raise ValueError(f'not a memory size: {text!r} (use e.g. "2GB" or "512MiB")')
    return int(float(match.group(1)) * _MEMORY_UNITS[(match.group(2) or 'B').lower()])


def parse_warmup_images(text: str) -> list[tuple[int, int, str]]:
    """(width, height, encoding) of each "WIDTHxHEIGHT ENCODING" in ``runtime.warmup_images``;
    ValueError naming the entry that is not one."""
    images = []
    for entry in filter(str.strip, text.split(',')):
        match = _WARMUP_IMAGE.match(entry)
        if not match or min(int(match.group(1)), int(match.group(2))) <= 0:
            raise ValueError(f'{entry.strip()!r} is not "WIDTHxHEIGHT ENCODING" (e.g. "640x480 rgb8")')
        if match.group(3) not in ENCODINGS:
            raise ValueError(f'{entry.strip()!r}: encoding {match.group(3)!r} is not one of '
                             f'{sorted(ENCODINGS)}')
        images.append((int(match.group(1)), int(match.group(2)), match.group(3)))
    return images


CAMERAS = 'ros_integration.cameras'
_CAMERA_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')
# a ROS topic name as a user writes it (relative, absolute or ~private), without substitutions
_TOPIC = re.compile(r'^(~/?|/)?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$')
_CAMERA_FIELDS = ('name', 'input_topic', 'output_topic', 'frame_id', 'image_transport', 'reliability',
                  'depth')
_CAMERA_OPTIONS = _CAMERA_FIELDS[3:]  # the optional ones, "key=value" in the text form


@dataclass(frozen=True)
class Camera:
    """One camera of ``ros_integration.cameras``; an empty frame_id / image_transport / reliability /
    depth = the node's global ros_integration.frame_id_override / image_transport / qos_profile key
    (one camera's bag replayed reliably beside live best-effort cameras, say)."""
    name: str
    input_topic: str
    output_topic: str
    frame_id: str = ''
    image_transport: str = ''
    reliability: str = ''
    depth: str = ''  # text like the other fields (the text form); checked to be a whole number >= 1

    def text(self) -> str:
        options = [f'{k}={getattr(self, k)}' for k in _CAMERA_OPTIONS if getattr(self, k)]
        return ':'.join([self.name, self.input_topic, self.output_topic, *options])


def _camera_entry(entry: object, where: str) -> dict[str, object]:
    """One entry of the text form, or a YAML mapping, as {field: value}."""
    if isinstance(entry, dict):
        return entry
    if not isinstance(entry, str):
        raise ParameterError(f'{where}: expected a mapping {{name, input_topic, output_topic}}, got '
                             f'{_type_name(entry)} {entry!r}')
    parts = [p.strip() for p in entry.split(':')]
    if len(parts) < 3:
        raise ParameterError(f'{where}: {entry.strip()!r} is not "name:input_topic:output_topic'
                             '[:frame_id=F][:image_transport=T][:reliability=R][:depth=N]"')
    fields: dict[str, object] = dict(zip(_CAMERA_FIELDS[:3], parts[:3], strict=True))
    for option in parts[3:]:
        key, equals, value = option.partition('=')
        if not equals:
            raise ParameterError(f'{where}: {option!r} is not key=value (keys: {", ".join(_CAMERA_OPTIONS)})')
        fields[key.strip()] = value.strip()
    return fields


def _camera(fields: dict[str, object], where: str) -> Camera:
    unknown = sorted(str(k) for k in fields if k not in _CAMERA_FIELDS)
    if unknown:
        raise ParameterError(f'{where}.{unknown[0]}: unknown key (keys: {", ".join(_CAMERA_FIELDS)})')
    if isinstance(fields.get('depth'), int) and not isinstance(fields.get('depth'), bool):
        fields = {**fields, 'depth': str(fields['depth'])}  # the YAML's depth: 5
    for key in _CAMERA_FIELDS:
        value = fields.get(key, '')
        if not isinstance(value, str):
            raise ParameterError(f'{where}.{key}: expected str, got {_type_name(value)} {value!r}')
        if key in _CAMERA_FIELDS[:3] and not value:
            raise ParameterError(f'{where}.{key}: missing (each camera needs name, input_topic and '
                                 'output_topic)')
    camera = Camera(**fields)  # type: ignore[arg-type]
    if not _CAMERA_NAME.match(camera.name):
        raise ParameterError(f'{where}.name: {camera.name!r} is not a name (letters, digits, "_"; it names '
                             'the camera in /diagnostics)')
    for key in ('input_topic', 'output_topic'):
        if not _TOPIC.match(getattr(camera, key)):
            raise ParameterError(f'{where}.{key}: {getattr(camera, key)!r} is not a valid ROS topic name')
    if camera.image_transport and camera.image_transport not in IMAGE_TRANSPORTS:
        raise ParameterError(f'{where}.image_transport: must be one of {list(IMAGE_TRANSPORTS)}, got '
                             f'{camera.image_transport!r}')
    if camera.reliability and camera.reliability not in qos.RELIABILITY:
        raise ParameterError(f'{where}.reliability: must be one of {list(qos.RELIABILITY)}, got '
                             f'{camera.reliability!r}')
    if camera.depth and not (camera.depth.isdigit() and int(camera.depth) >= 1):
        raise ParameterError(f'{where}.depth: must be a whole number of at least 1, got {camera.depth!r}')
    if any(c in camera.frame_id for c in ':,'):
        raise ParameterError(f'{where}.frame_id: {camera.frame_id!r} must not hold ":" or ","')
    return camera


def parse_cameras(value: object) -> list[Camera]:
    """``ros_integration.cameras`` (the YAML list of mappings or the text form) as Cameras;
    ParameterError naming the entry's key path (``ros_integration.cameras[1].input_topic``)."""
    if isinstance(value, str):
        entries: list = [e for e in value.split(',') if e.strip()]
    elif isinstance(value, (list, tuple)):
        if not value:
            raise ParameterError(f'{CAMERAS}: must not be empty (an empty list has no ROS 2 parameter '
                                 'type); leave the key out for one camera on input_topic/output_topic')
        entries = list(value)
    else:
        raise ParameterError(f'{CAMERAS}: expected a list of cameras or text, got {_type_name(value)} '
                             f'{value!r}')
    cameras = [_camera(_camera_entry(e, f'{CAMERAS}[{i}]'), f'{CAMERAS}[{i}]') for i, e in enumerate(entries)]
    for key in ('name', 'input_topic', 'output_topic'):
        seen: dict[str, int] = {}
        for i, camera in enumerate(cameras):
            first = seen.setdefault(getattr(camera, key), i)
            if first != i:
                raise ParameterError(f'{CAMERAS}[{i}].{key}: {getattr(camera, key)!r} is already '
                                     f'{CAMERAS}[{first}].{key} (each camera needs its own)')
    return cameras


def cameras_text(cameras: list[Camera]) -> str:
    """The text form, which a ROS 2 parameter (a string) can hold."""
    return ','.join(c.text() for c in cameras)


# Text parameters with a syntax of their own: the parser the node uses checks them at load too.
_TEXT_PARSERS = {'resources.memory_limit': parse_memory_size, 'runtime.warmup_images': parse_warmup_images,
                 CAMERAS: parse_cameras}


def _type_name(value: object) -> str:
    return type(value).__name__


def check_value(parameter: Parameter, value: object) -> ParameterValue:
    """The value converted to the parameter's type, or ParameterError naming the key path.

    Integers are accepted for float parameters (YAML ``30`` for 30 Hz); nothing else is converted.
    """
    where = parameter.name
    default = parameter.default
    if where == CAMERAS and not isinstance(value, str):
        value = cameras_text(parse_cameras(value))  # the YAML list: held as its text form from here
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value  # type: ignore[arg-type]
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        element = type(default[0]) if default else object
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(v, element) and not isinstance(v, bool) for v in value)
        value = list(value) if ok else value  # type: ignore[call-overload]
    if not ok:
        expected = (f'list of {type(default[0]).__name__}' if isinstance(default, list) and default
                    else _type_name(default))
        raise ParameterError(f'{where}: expected {expected}, got {_type_name(value)} {value!r}')
    if parameter.choices and value not in parameter.choices:
        raise ParameterError(f'{where}: must be one of {list(parameter.choices)}, got {value!r}')
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if parameter.minimum is not None and value < parameter.minimum:
            raise ParameterError(f'{where}: must be >= {parameter.minimum}, got {value!r}')
        if parameter.maximum is not None and value > parameter.maximum:
            raise ParameterError(f'{where}: must be <= {parameter.maximum}, got {value!r}')
    if where in INSTANCE_PATHS:
        try:
            instance_path(str(value), '/node')  # only the placeholders' spelling is checked here
        except ValueError as exc:
            raise ParameterError(f'{where}: {exc}') from exc
    parse = _TEXT_PARSERS.get(where)
    if parse is not None:
        try:
            parse(str(value))
        except ParameterError:
            raise
        except ValueError as exc:
            raise ParameterError(f'{where}: {exc}') from exc
    if where == 'model.input_shape' and (len(value) != 4 or min(value) <= 0):  # type: ignore[arg-type]
        raise ParameterError(f'{where}: must be four positive integers [N, C, H, W], got {value!r}')
    if where == 'target_platform.compute_capability' and not re.fullmatch(r'\d+\.\d+', str(value)):
        raise ParameterError(f'{where}: must be "major.minor" such as "8.7", got {value!r}')
    return value  # type: ignore[return-value]


def check_values(values: dict[str, object]) -> dict[str, ParameterValue]:
    """Check a flat {dotted name: value} mapping; unknown names are errors too.

    Returns every parameter: the given values checked, the rest at their defaults.
    """
    known = by_name()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ParameterError(f'{unknown[0]}: unknown key (known keys: see the README parameter table)'
                             + (f'; also unknown: {", ".join(unknown[1:])}' if len(unknown) > 1 else ''))
    return {name: check_value(p, values[name]) if name in values else p.default
            for name, p in known.items()}


def _markdown_value(value: ParameterValue) -> str:
    if isinstance(value, bool):
        return f'`{str(value).lower()}`'
    if isinstance(value, str):
        return f'`"{value}"`'
    return f'`{value}`'


def markdown_table() -> str:
    """The README's parameter table, one row per parameter, in declaration order."""
    rows = ['| Parameter | Default | Meaning |', '| --- | --- | --- |']
    for p in PARAMETERS:
        meaning = p.description
        if p.choices:
            meaning += ' One of: ' + ', '.join(f'`{c}`' for c in p.choices) + '.'
        if p.extension:
            meaning += ' *(extension)*'
        rows.append(f'| `{p.name}` | {_markdown_value(p.default)} | {meaning.replace("|", "/")} |')
    return '\n'.join(rows) + '\n'
