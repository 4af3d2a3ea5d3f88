"""The Markdown report of one bench result (``bench/results/<machine>.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

NA = 'n/a'
CAMERAS_OVER_FLOOR_MS = 2.0  # issue 16: 4 cameras' e2e p50 at most this much over the same streams' floor


def fig(figure: dict[str, Any] | None, scale: float = 1.0, digits: int = 3) -> str:
    """'median [min-max]' of a spread figure, scaled."""
    if not figure or 'median' not in figure:
        return NA
    low, high = figure['range']
    return f'{figure["median"] * scale:.{digits}f} [{low * scale:.{digits}f}-{high * scale:.{digits}f}]'


def _yes(flag: bool | None) -> str:
    return NA if flag is None else ('met' if flag else '**missed**')


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        '| ' + ' | '.join(header) + ' |',
        '|' + ' --- |' * len(header),
        *('| ' + ' | '.join(row) + ' |' for row in rows),
        '',
    ]


def short(error: str, limit: int = 200) -> str:
    """The last line of an error message (tracebacks end with the cause), for a table cell."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else '')[:limit].replace('|', '/')


def _failed(section: dict[str, Any] | None) -> str | None:
    if section is None:
        return 'not run'
    if 'error' in section:
        return f'failed: {short(section["error"])}'
    return None


def _header(result: dict[str, Any]) -> list[str]:
    m = result['machine']
    effort = result['effort']
    lines = [
        f'# Bench: {m.get("gpu") or m.get("cpu")}',
        '',
        f'- machine: {m.get("cpu")}, {m.get("usable_cpus")} usable CPUs'
        + (f', GPU {m["gpu"]} (CUDA {m.get("cuda")})' if m.get('gpu') else ', no GPU'),
        f'- load average (1, 5, 15 min) at start {m.get("load_average_at_start")}, '
        f'at end {m.get("load_average_at_end")}',
        f'- torch {m.get("torch")}, onnxruntime {m.get("onnxruntime")}, Python {m.get("python")}; '
        f'{m.get("date")}',
        f'- `{result["command"]}`; bundle `{result["bundle"]}`',
        f'- every figure: **median [min-max] over {effort["repeats"]} runs** of {effort["gpu_calls"]} '
        f'(GPU) / {effort["cpu_calls"]} (CPU) calls each after warm-up; node: {effort["node_repeats"]} '
        f'runs of {effort["node_seconds"]} s per phase',
    ]
    cuda = result.get('cuda_model') or {}
    if cuda.get('retraced'):
        lines.append(f'- **{cuda["note"]}**: {short(cuda["shipped_model_ts_problem"], 400)}')
    return [*lines, '']


def _backends(section: dict[str, Any] | None) -> list[str]:
    lines = ['## Backends', '']
    problem = _failed(section)
    if problem or section is None:
        return [*lines, problem or 'not run', '']
    sizes = section['batch_sizes']
    header = [
        'backend',
        *(f'network b{b} p50 ms' for b in sizes),
        *(f'network b{b} images/s' for b in sizes),
        '640x480 backend p50 ms',
        '640x480 frame->detections p50 ms',
        'p99 ms',
    ]
    rows = []
    for entry in section['variants'].values():
        if 'skipped' in entry or 'error' in entry:
            rows.append(
                [entry['label'], short(entry.get('skipped') or entry.get('error', ''))]
                + [''] * (len(header) - 2)
            )
            continue
        net = entry['network']
        frame = entry['frame_640x480']
        rows.append(
            [
                entry['label'],
                *(fig(net[str(b)]['p50_ms']) for b in sizes),
                *(fig(net[str(b)]['fps'], digits=0) for b in sizes),
                fig(frame['backend']['p50_ms']),
                fig(frame['frame_to_detections']['p50_ms']),
                fig(frame['frame_to_detections']['p99_ms']),
            ]
        )
    lines += [
        f'Model `{section["model"]}`, input {section["input"]}. "network": preprocessed batches in, '
        'outputs on the host. "backend": camera frame in, network outputs on the host (CPU backends: '
        "OpenCV preprocessing + network; GPU: upload, preprocessing, network and decode's first "
        'step on the GPU). "frame->detections": the node\'s Detector, decode included.',
        '',
    ]
    lines += _table(header, rows)
    checks = [
        (entry['label'], name, a)
        for entry in section['variants'].values()
        for name, a in entry.get('agreement', {}).items()
    ]
    if checks:
        lines += [
            f'Agreement with {section["reference"]} (same frames; identical counts and IoU >= 0.9 per '
            'matched box):',
            '',
        ]
        lines += _table(
            ['backend', 'frames', 'detections', 'count mismatches', 'min IoU', 'mean IoU', 'result'],
            [
                [
                    label,
                    name,
                    str(a['detections']),
                    str(a['count_mismatches']),
                    str(a['min_iou']),
                    str(a['mean_iou']),
                    'pass' if a['passed'] else '**FAIL**',
                ]
                for label, name, a in checks
            ],
        )
    return lines


def _preprocessing(section: dict[str, Any] | None) -> list[str]:
    lines = ['## Preprocessing alone', '']
    problem = _failed(section)
    if problem or section is None:
        return [*lines, problem or 'not run', '']
    rows = [
        [
            size,
            fig(e['cpu']['p50_ms']),
            fig(e['gpu'].get('p50_ms')) if 'p50_ms' in e['gpu'] else e['gpu'].get('skipped', NA),
            str(e.get('speedup', NA)),
        ]
        for size, e in section['sizes'].items()
    ]
    return [
        *lines,
        f'Camera frame -> network input {section["input"]}. GPU: copy into pinned memory, upload, '
        'CUDA graph (result stays on the GPU).',
        '',
        *_table(['frame', 'CPU p50 ms', 'GPU p50 ms', 'speed-up'], rows),
    ]


def _node(section: dict[str, Any] | None) -> list[str]:
    lines = ['## Node end to end', '']
    problem = _failed(section)
    if problem or section is None:
        return [*lines, problem or 'not run', '']
    rows = []
    for key, e in section['sizes'].items():
        if 'error' in e:
            rows.append([key, f'failed: {short(e["error"])}', '', '', '', '', '', '', ''])
            continue
        target = e.get('target')
        verdict = (
            NA
            if target is None
            else (
                f'{_yes(target["met"])} (<= {target["end_to_end_max_ms"]:.3f} ms'
                + (f', over by {target["over_by_ms"]:.3f}' if not target['met'] else '')
                + ')'
            )
        )
        overhead = e.get('overhead_target')
        rows.append(
            [
                key,
                fig(e['transport_floor_p50_ms']),
                fig(e['inference_p50_ms']),
                fig(e['end_to_end_p50_ms']),
                fig(e['end_to_end_p99_ms']),
                fig(e['node_overhead_p50_ms']),
                NA if overhead is None else f'{_yes(overhead["met"])} (<= {overhead["max_ms"]:g} ms)',
                fig(e['answered_fraction'], digits=3),
                verdict,
            ]
        )
    return [
        *lines,
        '`perception-node-bench`, the bundle\'s model.onnx (onnxruntime) or model.ts (torchscript, '
        'torch_cuda). Overhead = end to end - floor - the node\'s own inference (p50s); target <= 1.0 ms. '
        'End-to-end target (GPU): end to end p50 <= floor p50 + 1.5 ms.',
        '',
        *_table(
            [
                'frame, backend',
                'transport floor p50 ms',
                'inference p50 ms',
                'end to end p50 ms',
                'end to end p99 ms',
                'node overhead p50 ms',
                'overhead target',
                'answered',
                'end-to-end target',
            ],
            rows,
        ),
    ]


def _training(section: dict[str, Any] | None) -> list[str]:
    lines = ['## Training throughput', '']
    problem = _failed(section)
    if problem or section is None:
        return [*lines, problem or 'not run', '']
    rows = []
    for name, r in section['runs'].items():
        if 'error' in r:
            rows.append([name, f'failed: {short(r["error"])}', '', '', ''])
            continue
        rows.append(
            [
                name,
                f'{r["device"]}{" + AMP" if r["amp"] else ""}',
                str(r['loader_workers']),
                f'{r["train_images"]} x {r["epochs"]} epochs, batch {r["batch_size"]}',
                fig(r['images_per_s'], digits=1),
            ]
        )
    return [
        *lines,
        f'`perception-train` with `{section["recipe"]}`; images/s per epoch (loading and augmentation '
        'included), first epoch left out.',
        '',
        *_table(['run', 'device', 'loader workers', 'data', 'images/s'], rows),
    ]


def _limit(section: dict[str, Any] | None) -> list[str]:
    lines = ['## The limit', '']
    problem = _failed(section)
    if problem or section is None:
        return [*lines, problem or 'not run', '']
    work = section['model']
    lines += [
        f'Model at the default input: {work["gflops"]} GFLOPs, {work["parameters"]} parameters, '
        f'{work["convolutions"]} convolutions; fewest fp16 bytes {work["total_bytes"] / 1e6:.2f} MB '
        f'({", ".join(f"{k} {v / 1e6:.2f}" for k, v in work["bytes"].items())} MB).',
        '',
    ]
    if 'skipped' in section:
        return [*lines, section['skipped'], '']
    c, floor = section['ceilings'], section['floor']
    lines += [
        f'Measured ceilings ({c["gpu"]}): fp16 matrix {c["fp16_matrix_tflops"]} TFLOP/s, device copy '
        f'{c["device_copy_gb_s"]} GB/s, upload {c["upload_gb_s"]} GB/s, download {c["download_gb_s"]} GB/s '
        f'({c["how"]}).',
        '',
        f'Network floor: compute {floor["network"]["compute_us"]} us, '
        f'memory {floor["network"]["memory_us"]} us '
        f'-> {floor["network"]["floor_us"]} us ({floor["network"]["bound_by"]}-bound). 640x480 frame floor: '
        + ', '.join(f'{k.removesuffix("_us")} {v} us' for k, v in floor['frame_640x480'].items())
        + '.',
        '',
    ]
    lines += _table(
        ['fp16 + CUDA graph', 'measured p50 us', 'floor us', 'measured / floor'],
        [
            [k, str(v['measured_us']), str(v['floor_us']), str(v['measured_over_floor'])]
            for k, v in section['measured_over_floor'].items()
        ],
    )
    chain = section['kernel_chain']
    rows = [
        [
            name,
            str(p['kernels_per_frame']),
            str(p['kernel_busy_us_per_frame']),
            str(p['copies_per_frame']),
            str(p['copy_busy_us_per_frame']),
        ]
        for name, p in section['profile'].items()
    ]
    lines += [
        'Where the microseconds go (torch.profiler, per 640x480 frame):',
        '',
        *_table(['path', 'kernels', 'kernel busy us', 'copies', 'copy busy us'], rows),
        f'A CUDA graph of {chain["kernels"]} dependent tiny kernels takes {chain["chain_us"]} us '
        f'({chain["us_per_kernel"]} us per kernel): the cost of the kernel count alone.',
        '',
        'Heaviest kernels (fp16 + CUDA graph):',
        '',
    ]
    heaviest = section['profile'].get('fp16_graph', {}).get('heaviest_kernels', [])
    lines += _table(
        ['kernel', 'per frame', 'us per frame'],
        [[f'`{k["name"]}`', str(k['per_frame']), str(k['us_per_frame'])] for k in heaviest],
    )
    return lines


def _targets(result: dict[str, Any]) -> list[str]:
    rows = []
    targets = (result.get('backends') or {}).get('targets', {})
    for part, t in targets.items():
        rows.append(
            [
                f'fp16 + CUDA graph p50 <= 1.0 ms at 640x480 ({part})',
                f'{t["fp16_graph_p50_ms"]:.3f} ms',
                _yes(t['p50_met']),
            ]
        )
        if 'speedup' in t:
            rows.append(
                [
                    f'fp16 + CUDA graph >= 3x fp32 eager ({part})',
                    f'{t["speedup"]:.2f}x',
                    _yes(t['speedup_met']),
                ]
            )
    for size, e in ((result.get('node') or {}).get('sizes') or {}).items():
        if e.get('target'):
            rows.append(
                [
                    f'node end to end p50 <= floor + 1.5 ms at {size}',
                    f'{e["end_to_end_p50_ms"]["median"]:.3f} ms '
                    f'(limit {e["target"]["end_to_end_max_ms"]:.3f})',
                    _yes(e['target']['met']),
                ]
            )
        if e.get('overhead_target'):
            rows.append(
                [
                    f'node overhead p50 <= {e["overhead_target"]["max_ms"]:g} ms at {size}',
                    f'{fig(e["node_overhead_p50_ms"])} ms',
                    _yes(e['overhead_target']['met']),
                ]
            )
    rows += camera_targets(result.get('cameras'))
    if not rows:
        return []
    return ['## Targets', '', *_table(['target', 'measured', 'result'], rows)]


def _cameras(section: dict[str, Any] | None) -> list[str]:
    lines = ['## Several cameras: one batching node against separate nodes', '']
    problem = _failed(section)
    if problem or section is None:
        return [*lines, problem or 'not run', '']
    from .cameras import worst_camera

    rows = []
    for row in section['results']:
        worst, p50, p99 = worst_camera(row)
        floor = row.get('transport_floor_p50_ms')
        rows.append([f'{row["cameras"]} x {section["rate_hz"]:g} Hz', row['configuration'], f'{worst:.3f}',
                     f'{p50:.2f} / {p99:.2f}', NA if floor is None else f'{floor:.2f}',
                     f'{row["cores_used"]:.2f}'])
    model = Path(section['model']).name
    return [*lines, f'`perception-cameras-bench`: {section["frame"]} frames, `{model}`, '
            f'{section["seconds"]:g} s per configuration; figures of the worst camera; floor = the same '
            'streams to a subscriber with no node; node CPU in cores', '',
            *_table(['cameras x rate', 'configuration', 'answered', 'e2e p50 / p99 ms', 'floor p50 ms',
                     'node CPU (cores)'],
                    rows)]


def camera_targets(section: dict[str, Any] | None) -> list[list[str]]:
    """The GPU device's multi-camera targets (issue 16), where 4 cameras at 30 Hz ran: >= 99 %
    answered, e2e p50 <= transport floor + 2.0 ms and <= 1 core for the batching node, and less CPU
    than 4 separate nodes."""
    if not section or 'results' not in section or section.get('rate_hz') != 30:
        return []
    from .cameras import TRIGGER_LABELS, worst_camera

    four = {r['configuration']: r for r in section['results'] if r['cameras'] == 4}
    rows = []
    for suffix in TRIGGER_LABELS.values():  # free-running cameras, then a triggered rig's
        batched, separate = four.get('one batching node' + suffix), four.get('4 separate nodes' + suffix)
        if batched is None:
            continue
        name = f'4 cameras x 30 Hz{suffix}'
        rows += [[f'{name}, one node: answered >= 0.99', f'{worst_camera(batched)[0]:.3f}',
                  _yes(worst_camera(batched)[0] >= 0.99)],
                 [f'{name}, one node: CPU <= 1 core', f'{batched["cores_used"]:.2f} cores',
                  _yes(batched['cores_used'] <= 1.0)]]
        floor = batched.get('transport_floor_p50_ms')
        if floor is not None:
            p50 = worst_camera(batched)[1]
            rows.append([f'{name}, one node: e2e p50 <= floor + 2.0 ms',
                         f'{p50:.2f} ms vs floor {floor:.2f} ms', _yes(p50 <= floor + CAMERAS_OVER_FLOOR_MS)])
        if separate is not None:
            rows.append([f'{name}: one node less CPU than 4 nodes',
                         f'{batched["cores_used"]:.2f} vs {separate["cores_used"]:.2f} cores',
                         _yes(batched['cores_used'] < separate['cores_used'])])
    return rows


def _family(section: dict[str, Any] | None) -> list[str]:
    lines = ['## The trainer\'s model family (untrained weights: speed only)', '']
    problem = _failed(section)
    if problem or section is None:
        return [*lines, problem or 'not run', '']
    from .family import markdown_rows

    return [*lines, '`perception-family-bench`: each member exported by `perception-export` and timed like '
            'the shipped bundle (network alone at batch 1; 640x480 frame -> detections), p50.', '',
            markdown_rows(section['rows']), '']


def markdown(result: dict[str, Any]) -> str:
    lines = _header(result) + _targets(result)
    lines += _backends(result.get('backends')) + _preprocessing(result.get('preprocessing'))
    lines += _node(result.get('node')) + _cameras(result.get('cameras')) + _family(result.get('family'))
    lines += _training(result.get('training')) + _limit(result.get('limit'))
    seconds = ', '.join(f'{k} {v} s' for k, v in result.get('section_seconds', {}).items())
    lines += [f'Section times: {seconds}.', '']
    return '\n'.join(lines)
