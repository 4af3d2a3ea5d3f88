"""``perception-bundle``: bring your own model.

    perception-bundle import MODEL [--classes FILE] [--input-size WxH] [--out DIR] [--force]
    perception-bundle show DIR

Every failure is one line on stderr and an exit code, never a traceback: 2 = bad input (the model,
the class file, a bundle), 3 = TensorRT is needed and missing here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .bundle import NETWORK_SIZE, Bundle, BundleError, load_bundle
from .bundle_import import NeedsTensorRT, import_model, parse_input_size
from .decode import Thresholds
from .decode import describe as decoding_steps
from .interrupt import interrupted

PROG = 'perception-bundle'
EXIT_INPUT, EXIT_MISSING = 2, 3
FIRST_NAMES = 8

def _input_line(bundle: Bundle) -> str:
    i = bundle.input
    shape = 'x'.join(str(d) for d in i.shape(1))
    resize = f'letterbox (pad {i.pad_value})' if i.resize == 'letterbox' else 'stretch'
    return (f'input: {i.name!r} {shape} {i.layout}, {i.color}, {resize}, pixels / 255, '
            f'mean {list(i.mean)}, std {list(i.std)}')


def _extra_input_lines(bundle: Bundle) -> list[str]:
    i = bundle.input
    return [f'extra input: {e.name!r} {e.dtype} {list(array.shape)} = {array.tolist()}'
            + (' (network_size: width, height of the input)' if e.value == NETWORK_SIZE else '')
            for e, array in zip(i.extra, i.extra_arrays().values(), strict=True)]


def _engine_lines(bundle: Bundle) -> list[str]:
    from .sidecar import Expected, SidecarError, check_sidecar, read_sidecar
    from .ultralytics_engine import EngineHeaderError, read_engine
    lines = []
    for engine in sorted(p for s in ('*.engine', '*.plan') for p in bundle.directory.glob(s)):
        try:
            header = read_engine(engine)
            kind = (f'Ultralytics header ({len(header.metadata)} keys), plan at byte {header.plan_offset}'
                    if header.has_header else 'plain TensorRT plan')
        except EngineHeaderError as exc:
            lines.append(f'engine: {engine.name}: unusable: {exc}')
            continue
        try:
            sidecar = read_sidecar(engine)
        except SidecarError as exc:
            lines.append(f'engine: {engine.name} ({kind}); sidecar: {exc}')
            continue
        gpu = sidecar.get('gpu', {})
        mismatches = check_sidecar(sidecar, None, Expected(onnx_sha256=bundle.onnx_sha256,
                                                            input_shape=bundle.input.shape(1)[1:]))
        state = 'fits the bundle' if not mismatches else 'does not fit: ' + '; '.join(map(str, mismatches))
        lines.append(f'engine: {engine.name} ({kind}); sidecar: TensorRT {sidecar.get("tensorrt_version")}, '
                     f'{gpu.get("name")} (sm {gpu.get("compute_capability")}), {sidecar.get("precision")}; '
                     f'{state} (TensorRT version and GPU are checked where it runs)')
    return lines or ['engine: none (perception-build-engine builds one for this device)']


def describe(bundle: Bundle) -> list[str]:
    """What ``show`` prints: what the bundle is and how its outputs become detections."""
    source = bundle.raw.get('source') if isinstance(bundle.raw.get('source'), dict) else None
    lines = [f'bundle: {bundle.directory} (arch {bundle.arch or "?"}'
             + (f', imported from {source.get("path")}' if source else '') + ')']
    if source and source.get('metadata'):
        meta = source['metadata']
        keys = [k for k in ('task', 'end2end', 'stride', 'batch', 'description', 'version') if k in meta]
        if keys:
            lines.append('model metadata: ' + ', '.join(f'{k} {meta[k]}' for k in keys))
    names = ', '.join(bundle.classes[:FIRST_NAMES]) + (', ...' if len(bundle.classes) > FIRST_NAMES else '')
    lines.append(f'classes: {len(bundle.classes)}: {names}')
    lines.append(_input_line(bundle))
    lines += _extra_input_lines(bundle)
    options = {k: v for k, v in (bundle.raw.get('output') or {}).items() if k not in ('format', 'names')}
    lines.append(f'output: {bundle.output.format}, tensors {", ".join(bundle.output.names)}'
                 + (f', options {options}' if options else ''))
    p = bundle.postprocess
    lines.append(f'postprocess defaults: score {p.score_threshold}, NMS IoU {p.nms_iou_threshold}, '
                 f'at most {p.max_detections} detections')
    i = bundle.input
    steps = [f'{i.resize} the camera image to {i.width}x{i.height}, {i.color}, / 255, '
             f'(x - mean) / std, {i.layout}']
    if i.extra:
        steps.append('feed beside it, every frame: ' + ', '.join(
            f'{name} {array.tolist()}' for name, array in i.extra_arrays().items()))
    steps += decoding_steps(bundle.output, Thresholds.resolve(p))
    steps.append('boxes back to image pixels: undo the ' + (
        'letterbox (remove the padding, divide by the scale)' if i.resize == 'letterbox' else 'stretch')
        + ', clipped to the image')
    lines.append('decoding:')
    lines += [f'  {n}. {s}' for n, s in enumerate(steps, 1)]
    lines += _engine_lines(bundle)
    return lines


def _import(args: argparse.Namespace) -> int:
    size = parse_input_size(args.input_size) if args.input_size else None
    out = import_model(args.model, args.out, args.classes, size, force=args.force)
    print(f'{PROG}: wrote {out} (loads, and runs one frame under ONNX Runtime)'
          if (out / 'model.onnx').is_file() else f'{PROG}: wrote {out}')
    for line in describe(load_bundle(out)):
        print(line)
    return 0


def _show(args: argparse.Namespace) -> int:
    for line in describe(load_bundle(args.bundle)):
        print(line)
    return 0


def _fail(exc: BaseException) -> None:
    # one line: protobuf and ONNX Runtime messages can span several
    print(f'{PROG}: ' + ' '.join(str(exc).split()), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description='Bring your own model: wrap a foreign ONNX '
                                     'or Ultralytics .engine into a model bundle, or show what a bundle is.')
    sub = parser.add_subparsers(dest='command', required=True)
    imp = sub.add_parser('import', help='write a bundle for a foreign .onnx or Ultralytics .engine')
    imp.add_argument('model', type=Path, help='the .onnx (or .engine / .plan) file')
    imp.add_argument('--classes', type=Path, help='class names when the model carries none (or to rename '
                     'them): a list one per line, a YOLO data.yaml (names:), or a COCO json (categories)')
    imp.add_argument('--input-size', metavar='WxH', help='network input size for a model with dynamic '
                     'height/width and no imgsz metadata')
    imp.add_argument('--out', type=Path, help='bundle directory to write (default: MODEL_bundle beside '
                     'the model)')
    imp.add_argument('--force', action='store_true', help='replace --out if it exists')
    show = sub.add_parser('show', help='print what a bundle is and how it will be decoded')
    show.add_argument('bundle', type=Path, help='the bundle directory (or a model file in it)')
    args = parser.parse_args(argv)
    try:
        return _import(args) if args.command == 'import' else _show(args)
    except NeedsTensorRT as exc:
        _fail(exc)
        return EXIT_MISSING
    except (BundleError, OSError, ValueError, RuntimeError) as exc:
        _fail(exc)
        return EXIT_INPUT
    except KeyboardInterrupt:
        return interrupted(PROG)


if __name__ == '__main__':
    sys.exit(main())
