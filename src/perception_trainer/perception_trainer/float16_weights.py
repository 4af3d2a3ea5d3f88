"""A bundle's weights stored as float16 and computed in float32 (``perception-export --weights``).

Why: a bundle holds every weight twice (model.onnx and model.ts), so in float32 it takes ~9 bytes
a parameter and the shipped bundle's 10 MB allowed ~1.1 M parameters; in float16 it takes ~4.2,
room for ~2.3 M. The arithmetic stays whatever the runtime runs (float32 on ONNX Runtime's CPU,
float16 in a GPU engine); only the stored values are rounded, and export measures what that
rounding changes before it writes the bundle.

1. :func:`stored_model`: each BatchNorm2d that normalises a convolution's output folds into that
   convolution (what ONNX export and ``torch.jit.freeze`` do anyway, so the stored values are the
   ones the graph uses), then every weight is rounded to the nearest float16, kept in float32.
   That model is the reference both runtimes are verified against.
2. :func:`float16_initializers`: in model.onnx each initializer float16 holds exactly is stored as
   float16 behind a Cast to float, which ONNX Runtime and TensorRT fold when they load the graph.
3. :func:`float16_buffers`: in model.ts each parameter is a float16 buffer that ``type_as`` casts
   to the dtype of the module's input as it runs, so the file runs as it is, in float32 or, after
   ``.half()``, in float16; ``.to(dtype)`` makes the cast a no-op.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .architectures import Architecture

STORAGE = ('float16', 'float32')  # --weights; model.json "weights": {"storage": ...}
SUFFIX = '_float16'  # a parameter ``weight`` is the buffer ``weight_float16`` in model.ts
# Most that rounding the weights may move a dense detection's box (network pixels) or change its
# score; what it changes in practice is in bench/README.md.
BOX_PIXEL_LIMIT = 0.5
SCORE_LIMIT = 0.01


def _convolutions_before_batchnorms(model: nn.Module, example: torch.Tensor) -> list[tuple[nn.Conv2d, str]]:
    """(convolution, the qualified name of the BatchNorm2d its output goes straight into), from one
    forward pass: the pairs are found by tensor identity, whatever the module tree looks like. A
    convolution whose output another module reads too is left alone: folding would change what
    that module sees."""
    outputs: dict[int, tuple[nn.Conv2d, torch.Tensor]] = {}  # the tensors are kept: no id reuse
    readers: dict[int, list[nn.Module]] = {}  # conv output id -> the modules that read it
    names = {module: name for name, module in model.named_modules()}

    def conv_output(module: nn.Module, _: tuple, output: torch.Tensor) -> None:
        outputs[id(output)] = (module, output)  # type: ignore[assignment]

    def module_input(module: nn.Module, inputs: tuple) -> None:
        for tensor in inputs:
            found = outputs.get(id(tensor))
            if found is not None and found[1] is tensor:
                readers.setdefault(id(tensor), []).append(module)

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(conv_output) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_pre_hook(module_input) for m in leaves]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    pairs = []
    for key, modules in readers.items():
        if len(modules) == 1 and isinstance(modules[0], nn.BatchNorm2d):
            pairs.append((outputs[key][0], names[modules[0]]))
    return pairs


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """An eval-mode copy of ``model`` with each BatchNorm2d after a convolution folded into it
    (and replaced by Identity). The structure depends only on the architecture, so a fresh model
    folded the same way loads a folded model's state dict. Refused if the folded copy computes
    something else on ``example`` (a convolution's output also used outside modules, say)."""
    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        before = folded(example)
    for conv, bn_name in _convolutions_before_batchnorms(folded, example):
        parent_name, _, attribute = bn_name.rpartition('.')
        parent = folded.get_submodule(parent_name)
        fused = fuse_conv_bn_eval(conv, getattr(parent, attribute))
        conv.weight, conv.bias = fused.weight, fused.bias
        setattr(parent, attribute, nn.Identity())
    with torch.no_grad():
        _require_same(before, folded(example))
    return folded


def _require_same(before: Any, after: Any, where: str = 'output') -> None:
    if isinstance(before, torch.Tensor):
        scale = float(before.abs().max()) + 1e-6
        difference = float((before - after).abs().max())
        if not difference <= 1e-3 * scale:
            raise ValueError(f'folding batch norms changed the model\'s {where} by {difference:.3g} '
                             f'(largest value {scale:.3g}); export it with --weights float32')
    elif isinstance(before, Mapping):
        for key in before:
            _require_same(before[key], after[key], f'{where}[{key!r}]')
    elif isinstance(before, (tuple, list)):
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            _require_same(b, a, f'{where}[{i}]')


def round_to_float16(model: nn.Module) -> nn.Module:
    """Every floating-point parameter and buffer rounded to the nearest float16 (in place, dtype
    unchanged). Refused where float16 cannot hold a value (beyond +-65504)."""
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.is_floating_point():
                rounded = tensor.half()
                if torch.isfinite(tensor).all() and not torch.isfinite(rounded).all():
                    raise ValueError(f'{name}: values beyond float16\'s range (largest '
                                     f'{tensor.abs().max().item():.3g}); export it with --weights float32')
                tensor.copy_(rounded.to(tensor.dtype))
    return model


def stored_model(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The model a float16 bundle stores: batch norms folded, weights rounded to float16."""
    return round_to_float16(fold_batchnorm(model, example))


def _cast_to_input(module: nn.Module, inputs: tuple) -> None:
    for name in module.float16_names:  # type: ignore[union-attr]
        setattr(module, name, getattr(module, name + SUFFIX).type_as(inputs[0]))


def float16_buffers(model: nn.Module) -> nn.Module:
    """A copy of ``model`` to trace into model.ts: each parameter a float16 buffer cast to the
    input's dtype as its module runs (``type_as`` is traced as an operation on the input, so the
    trace keeps no dtype constant)."""
    stored = copy.deepcopy(model)
    for module in stored.modules():
        names = [name for name, _ in module.named_parameters(recurse=False)]
        for name in names:
            value = getattr(module, name).detach()
            delattr(module, name)
            module.register_buffer(name + SUFFIX, value.half())
            setattr(module, name, value)
        if names:
            module.float16_names = names
            module.register_forward_pre_hook(_cast_to_input)
    return stored


def float32_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model.ts state dict (``float16_buffers``' names) as the folded model's own."""
    return {key.removesuffix(SUFFIX): value.float() for key, value in state.items()}


def float16_initializers(path: Path) -> int:
    """Rewrite model.onnx with each float32 initializer that float16 holds exactly stored as float16
    behind a Cast to float; returns how many. The graph computes exactly what it did."""
    model = onnx.load(str(path))
    graph = model.graph
    kept, casts = [], []
    for initializer in graph.initializer:
        is_float = initializer.data_type == onnx.TensorProto.FLOAT
        values = numpy_helper.to_array(initializer) if is_float else None
        if values is None or values.size < 2 or not np.array_equal(values.astype(np.float16), values):
            kept.append(initializer)
            continue
        kept.append(numpy_helper.from_array(values.astype(np.float16), initializer.name + SUFFIX))
        casts.append(helper.make_node('Cast', [initializer.name + SUFFIX], [initializer.name],
                                      to=onnx.TensorProto.FLOAT, name=f'cast{SUFFIX}_{len(casts)}'))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return len(casts)


def rounding_change(trained: nn.Module, stored: nn.Module, arch: Architecture,
                    x: torch.Tensor) -> dict[str, Any]:
    """What storing the weights as float16 changes: the trained model against the stored one
    (both float32 PyTorch) on a batch of verification frames, as absolute differences; where the
    peak test compared two scores within ``SCORE_LIMIT`` either may win (counted, as export's
    ``compare`` does). Dense detections are split into box pixels and scores, each with its limit."""
    with torch.no_grad():
        raw = trained(x)
        expected = [o.numpy() for o in arch.head(raw)]
        ties = arch.ties(raw, SCORE_LIMIT).numpy() if arch.ties else None
        actual = [o.numpy() for o in arch.head(stored(x))]
    report: dict[str, Any] = {'ties_broken_differently': 0}
    for name, e, a in zip(arch.output_names, expected, actual, strict=True):
        diff = np.abs(e - a)
        if ties is not None:
            flipped = ties & (diff > 0) & ((a == 0) | (e == 0))
            report['ties_broken_differently'] += int(flipped.sum())
            diff = np.where(flipped, 0.0, diff)
        if arch.output_format == 'dense_boxes_scores':
            report.update(box_pixels=float(diff[..., :4].max()), scores=float(diff[..., 4:].max()))
        else:
            report[name] = float(diff.max())
    return report


def rounding_problem(change: dict[str, Any]) -> str | None:
    """What went over its limit, in words, or None."""
    for key, limit in (('box_pixels', BOX_PIXEL_LIMIT), ('scores', SCORE_LIMIT)):
        if change.get(key, 0.0) > limit:
            return f'{key.replace("_", " ")} by {change[key]:.3g} (limit {limit:g})'
    return None
