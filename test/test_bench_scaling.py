"""bench.scaling: the multi-GPU summary from run folders as perception-train writes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from perception_bench.scaling import summarise


def _run(root: Path, name: str, batch: int, images_per_s: list[float], maps: list[float]) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    history = [{'epoch': i + 1, 'images_per_s': ips, 'elapsed_s': 10.0 * (i + 1), 'mAP': m,
                'mAP50': m + 0.2, 'val_loss': 1.0}
               for i, (ips, m) in enumerate(zip(images_per_s, maps, strict=True))]
    (folder / 'history.json').write_text(json.dumps(history))
    config = {'batch_size': batch, 'workers': 14, 'sync_bn': False}
    (folder / 'config.yaml').write_text(yaml.safe_dump(config))


def test_efficiency_ignores_the_first_epoch_and_checks_map_agreement(tmp_path: Path) -> None:
    _run(tmp_path, 'gpu1', 32, [100.0, 400.0, 420.0, 380.0], [0.2, 0.4, 0.5, 0.60])
    _run(tmp_path, 'gpu2', 16, [50.0, 700.0, 720.0, 680.0], [0.2, 0.4, 0.5, 0.63])
    _run(tmp_path, 'gpu2_batch32', 32, [50.0, 780.0], [0.1, 0.3])
    report = summarise(tmp_path)
    assert report['runs']['gpu1']['images_per_s']['median'] == 400.0
    assert report['runs']['gpu2']['global_batch'] == 32
    assert report['runs']['gpu2_batch32']['global_batch'] == 64
    strong, weak = sorted(report['scaling'], key=lambda e: e['run'])
    assert strong['scaling_efficiency'] == pytest.approx(700 / 800, abs=1e-3)
    assert strong['efficiency_met'] is True
    assert strong['mAP_difference'] == pytest.approx(0.03)
    assert strong['mAP_agree'] is False
    assert weak['scaling_efficiency'] == pytest.approx(780 / 800, abs=1e-3)
    assert 'mAP_difference' not in weak  # fewer epochs: its mAP is not comparable


def test_no_single_gpu_run_is_an_error(tmp_path: Path) -> None:
    _run(tmp_path, 'gpu2', 16, [50.0, 700.0], [0.2, 0.4])
    with pytest.raises(ValueError, match='no gpu1'):
        summarise(tmp_path)
