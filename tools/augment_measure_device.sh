#!/usr/bin/env bash
# perception_trainer.augment_measure (default vs strong augmentation, scored by perception-gap on a
# held-out set and its blurred / darkened / noised / JPEG copy) in ONE call of the device tool:
#   bash tools/device_wheels.sh peers        # here, once: .whl_peers
#   run  carry=[".whl_peers"]  command="bash tools/augment_measure_device.sh"
# MINUTES (default 2.8) is each policy's training budget on the shipped recipe; LIMIT_S (default
# 540) ends the run so the packing fits the call. $OUT gets augment_measure.json / .md (written as
# each policy ends) and augment_measure.png, gap reports (Markdown + PNG, no bundles) packed, and the log.
set -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-out/augment_measure}
WORK=/tmp/augment_measure
mkdir -p "$OUT" "$WORK"
# shellcheck source=tools/device_peers_env.sh
source tools/device_peers_env.sh
cores=$(nproc)
timeout "${LIMIT_S:-540}" python3 -m perception_trainer.augment_measure --out "$WORK" \
  --config config/train_default.yaml --device cuda --time-limit-minutes "${MINUTES:-2.8}" \
  --render-workers "$cores" "$@" > "$OUT/augment_measure.log" 2>&1 &
measure=$!
follow "$measure" "$OUT" "$WORK"/augment_measure.json "$WORK"/augment_measure.md "$WORK"/augment_measure.png
wait "$measure"; status=$?
cp "$WORK"/augment_measure.json "$WORK"/augment_measure.md "$WORK"/augment_measure.png "$OUT/" 2>/dev/null
tar -czf "$OUT/gap_reports.tar.gz" -C "$WORK" --exclude='./*/augment_*' --exclude='*/run/*.pt' \
  --exclude='data' . 2>/dev/null
grep -v "^USDT" "$OUT/augment_measure.log" | grep -v "batch/s" | tail -40
echo "augment_measure exit $status"
exit $status
