#!/usr/bin/env bash
# The trainer's new model family on the GPU device, in ONE call of the device tool:
#   run  carry=[".whl_train"]  command="tools/train_family_device.sh"
# .whl_train holds what the device lacks for training (albumentations and its three compiled
# dependencies, pydantic, pycocotools, faster-coco-eval: 9 MB; pip download ... --python-version 3.12, see
# tools/device_wheels.sh for the flags). Renders the default recipe's three sets once (16 processes),
# then trains each backbone in BACKBONES at the same time with the default recipe
# (config/train_default.yaml) for MINUTES, exports, and scores it on the held-out set; from scratch:
# the device has no network for torchvision's ImageNet weights. $OUT gets each run's model.json
# (its held-out metrics, parameters, FLOPs) and log, and gpu.txt.
set -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-out/train_family}
MINUTES=${MINUTES:-4.5}
SIZE=${SIZE:-n}
BACKBONES=${BACKBONES:-resnet18 mobilenet_v3}
WORKERS=${WORKERS:-7}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv > "$OUT/gpu.txt" 2>&1
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl_train/*.whl || exit 1
export PYTHONPATH=/tmp/site:src/perception_core:src/perception_trainer PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1
t0=$SECONDS
python3 -c "
from pathlib import Path
from perception_trainer.recipe import ensure_dataset
for role in ('train', 'val', 'test'):
    ensure_dataset(Path('data'), role, 16)
" > "$OUT/render.log" 2>&1 || { tail -20 "$OUT/render.log"; exit 1; }
echo "rendered: $((SECONDS - t0)) s"
for backbone in $BACKBONES; do
  python3 -m perception_trainer.recipe --backbone "$backbone" --size "$SIZE" --device cuda \
    --workers "$WORKERS" --time-limit-minutes "$MINUTES" --out "/tmp/runs/$backbone" \
    --bundle "/tmp/bundles/$backbone" > "$OUT/$backbone.log" 2>&1 &
done
wait
for backbone in $BACKBONES; do
  cp "/tmp/bundles/$backbone/model.json" "$OUT/$backbone.model.json" 2>/dev/null
  tail -16 "$OUT/$backbone.log"
done
echo "total: $((SECONDS - t0)) s"
