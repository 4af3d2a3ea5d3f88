#!/usr/bin/env bash
# The peer table (tools/peer_table.py) in ONE call of the device tool:
#   bash tools/device_wheels.sh peers                 # here, once: .whl_peers (~10 MB)
#   run  carry=[".whl_peers"]  command="bash tools/peer_table_device.sh"
# MINUTES (default 5) is every model's training budget; OURS the backbones trained beside YOLO11n.
# The whole call: rendering the sets (~1 min), MINUTES of training, export/score/time (~2 min).
set -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-out/peers}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv > "$OUT/gpu.txt" 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl_peers/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src/perception_core:$PWD/src/perception_trainer:$PWD/src/perception_bench
export PYTHONUNBUFFERED=1 YOLO_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1
# shellcheck disable=SC2086
python3 tools/peer_table.py --out "$OUT" --minutes "${MINUTES:-5}" --ours ${OURS:-resnet18 mobilenet_v3}
