"""float16 bundle weights: batch norms fold exactly, model.onnx stores float16 initializers that
ONNX Runtime turns back into the same graph, model.ts runs as it is in float32 and in float16, and
perception-export records what the rounding changed (or refuses it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from perception_core.bundle import load_bundle
from perception_trainer import checkpoint
from perception_trainer.architectures import ARCHITECTURES, Deployed
from perception_trainer.export import ExportError, export_bundle
from perception_trainer.float16_weights import (
    SUFFIX,
    float16_buffers,
    float16_initializers,
    float32_state,
    fold_batchnorm,
    round_to_float16,
    stored_model,
)

CENTERNET = ARCHITECTURES['centernet']
IMAGES = torch.rand(2, 3, 96, 128)


def _trained_looking(backbone: str) -> nn.Module:
    """A family member whose batch norms hold non-trivial statistics and affine weights."""
    torch.manual_seed(0)
    model = CENTERNET.model(3, backbone, 'n')
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 3, 96, 128) * 2)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize('backbone', ['tiny', 'resnet_slim', 'resnet18'])
def test_every_batch_norm_of_the_family_folds_into_its_convolution_exactly(backbone: str) -> None:
    model = _trained_looking(backbone)
    folded = fold_batchnorm(model, IMAGES[:1])
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    with torch.no_grad():
        for before, after in zip(model(IMAGES), folded(IMAGES), strict=True):
            torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    fresh = fold_batchnorm(CENTERNET.model(3, backbone, 'n').eval(), IMAGES[:1])
    fresh.load_state_dict(folded.state_dict())  # the structure is the architecture's alone


class _SharedConvolution(nn.Module):
    """A convolution whose output goes into its batch norm and, unnormalised, into a second module."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.side = nn.ReLU()
        self.own = nn.Conv2d(3, 4, 3, padding=1)
        self.own_bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + self.side(y) + self.own_bn(self.own(x))


def test_a_convolution_whose_output_another_module_reads_is_not_folded() -> None:
    model = _SharedConvolution().eval()
    with torch.no_grad():
        for bn in (model.bn, model.own_bn):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    folded = fold_batchnorm(model, IMAGES[:1])
    assert isinstance(folded.bn, nn.BatchNorm2d)  # left alone: folding would change what side sees
    assert isinstance(folded.own_bn, nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(folded(IMAGES), model(IMAGES), rtol=1e-4, atol=1e-4)


def test_rounding_keeps_float32_tensors_holding_float16_values_and_refuses_what_float16_cannot_hold() -> None:
    model = round_to_float16(nn.Conv2d(3, 4, 3))
    assert model.weight.dtype == torch.float32
    assert torch.equal(model.weight, model.weight.half().float())
    big = nn.Conv2d(3, 4, 3)
    with torch.no_grad():
        big.bias[1] = 1e6
    with pytest.raises(ValueError, match=r'^bias: values beyond float16.*--weights float32'):
        round_to_float16(big)


def _run_onnx(path: Path) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return session.run(None, {'images': IMAGES[:1].numpy()})


def test_onnx_initializers_become_float16_behind_casts_and_compute_the_same(tmp_path: Path) -> None:
    stored = Deployed(stored_model(_trained_looking('tiny'), IMAGES[:1]), CENTERNET).eval()
    path = tmp_path / 'model.onnx'
    torch.onnx.export(stored, (IMAGES[:1],), str(path), dynamo=False, opset_version=17,
                      input_names=['images'], output_names=['detections'])
    before = _run_onnx(path)
    size = path.stat().st_size
    converted = float16_initializers(path)
    graph = onnx.load(str(path)).graph
    halves = [i for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert converted == len(halves) > 20 and all(i.name.endswith(SUFFIX) for i in halves)
    assert sum(n.op_type == 'Cast' for n in graph.node) >= converted
    assert path.stat().st_size < 0.6 * size
    after = _run_onnx(path)
    np.testing.assert_array_equal(after[0], before[0])


def test_the_torchscript_copy_stores_float16_and_runs_as_it_is_in_float32_and_float16(tmp_path: Path) -> None:
    reference = Deployed(stored_model(_trained_looking('resnet_slim'), IMAGES[:1]), CENTERNET).eval()
    with torch.no_grad():
        stored = Deployed(float16_buffers(reference.model), CENTERNET).eval()
        traced = torch.jit.trace(stored, (IMAGES,), check_trace=False)
    traced.save(str(tmp_path / 'model.ts'))
    loaded = torch.jit.load(str(tmp_path / 'model.ts')).eval()
    state = loaded.state_dict()
    assert state and all(k.endswith(SUFFIX) and v.dtype == torch.float16 for k, v in state.items()
                         if 'weight' in k or 'bias' in k)
    with torch.no_grad():
        torch.testing.assert_close(loaded(IMAGES)[0], reference(IMAGES)[0], rtol=0, atol=0)
        halved = loaded.half()(IMAGES.half())[0]  # the GPU backends' .to(dtype): the casts are no-ops
    assert halved.shape == reference(IMAGES)[0].shape and torch.isfinite(halved).all()
    fresh = Deployed(fold_batchnorm(CENTERNET.model(3, 'resnet_slim', 'n').eval(), IMAGES[:1]), CENTERNET)
    fresh.load_state_dict(float32_state(torch.jit.load(str(tmp_path / 'model.ts')).state_dict()))
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(IMAGES)[0], reference(IMAGES)[0], rtol=0, atol=0)


def test_export_stores_float16_by_default_records_the_change_and_keeps_float32_on_request(
        tmp_path: Path) -> None:
    model = _trained_looking('resnet_slim')
    spec = CENTERNET.input_spec(96, 128)
    meta = {'arch': 'centernet', 'classes': ['ball', 'cone', 'book'],
            'input': {k: list(v) if isinstance(v, tuple) else v for k, v in spec.__dict__.items()},
            'config': {'backbone': 'resnet_slim', 'size': 'n'}, 'epoch': 1}
    saved = checkpoint.save(tmp_path / 'best.pt', {'model': model.state_dict(), 'meta': meta})
    sizes, documents = {}, {}
    for weights in ('float16', 'float32'):
        documents[weights] = json.loads(export_bundle(saved, tmp_path / weights, weights=weights).read_text())
        sizes[weights] = sum(f.stat().st_size for f in (tmp_path / weights).iterdir())
    half, full = documents['float16'], documents['float32']
    assert half['weights']['storage'] == 'float16' and full['weights'] == {'storage': 'float32'}
    change = half['weights']['rounding']
    assert 0 < change['box_pixels'] < 0.5 and 0 <= change['scores'] < 0.01
    assert half['model'] == full['model']  # the trained model's parameters, whatever the storage
    assert sizes['float16'] < 0.55 * sizes['float32']
    stored = [load_bundle(tmp_path / w).weights_storage for w in ('float16', 'float32')]
    assert stored == ['float16', 'float32']
    with pytest.raises(ValueError, match="weights 'int8': one of float16, float32"):
        export_bundle(saved, tmp_path / 'int8', weights='int8')


def test_export_refuses_a_diverged_checkpoint_naming_the_tensor(tmp_path: Path) -> None:
    """NaN outputs compare as no difference, so a diverged model must be stopped before verifying."""
    model = _trained_looking('tiny')
    state = model.state_dict()
    state['heat.1.bias'][0] = float('nan')
    spec = CENTERNET.input_spec(96, 128)
    meta = {'arch': 'centernet', 'classes': ['ball', 'cone', 'book'], 'epoch': 1,
            'input': {k: list(v) if isinstance(v, tuple) else v for k, v in spec.__dict__.items()}}
    saved = checkpoint.save(tmp_path / 'best.pt', {'model': state, 'meta': meta})
    with pytest.raises(ExportError, match=r'best\.pt: heat\.1\.bias hold NaN or inf \(1 tensors\): the'):
        export_bundle(saved, tmp_path / 'bundle')
    assert not (tmp_path / 'bundle' / 'model.json').exists()
