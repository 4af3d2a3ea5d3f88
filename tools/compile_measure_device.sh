#!/usr/bin/env bash
# The trainer's compile key measured where it counts, in whole training runs (train_step_profile.py
# times one step; this times epochs, loader and validation included), in ONE call of the device tool:
#   bash tools/device_wheels.sh peers        # here, once: .whl_peers
#   run  carry=[".whl_peers"]  command="bash tools/compile_measure_device.sh"
# Renders TRAIN_IMAGES training frames (seed 1) and 500 validation frames (seed 2), then trains
# config/train_default.yaml for MINUTES (the schedule fitted to it) once per value of COMPILES on
# the same data, and prints compile_measure.json (perception_bench.scaling.summarise_run of each
# run: images/s after the first epoch, every epoch's mAP, the last validation's).
# Extra arguments go to every perception-train run.
set -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-out/compile_measure}
WORK=/tmp/compile_measure
MINUTES=${MINUTES:-1.5}
COMPILES=${COMPILES:-none reduce-overhead}
mkdir -p "$OUT" "$WORK"
# shellcheck source=tools/device_peers_env.sh
source tools/device_peers_env.sh
for set in "train ${TRAIN_IMAGES:-4000} 1" "val 500 2"; do
  read -r folder images seed <<< "$set"
  [ -f "$WORK/$folder/coco_instances.json" ] || python3 -m perception_trainer.generate --out "$WORK/$folder" \
    --num-images "$images" --seed "$seed" >> "$OUT/render.log" 2>&1 || { tail -20 "$OUT/render.log"; exit 1; }
done
for mode in $COMPILES; do
  timeout "${RUN_LIMIT_S:-240}" python3 -m perception_trainer.train --config config/train_default.yaml \
    --train-data "$WORK/train" --val-data "$WORK/val" --device cuda --time-limit-minutes "$MINUTES" \
    --compile "$mode" --out "$WORK/run_$mode" "$@" > "$OUT/train_$mode.log" 2>&1
  echo "compile $mode: exit $?"
  cp "$WORK/run_$mode/history.json" "$OUT/history_$mode.json" 2>/dev/null
done
python3 - "$OUT" $COMPILES <<'EOF'
import json, sys
from pathlib import Path
from perception_bench.scaling import summarise_run
out = Path(sys.argv[1])
histories = {mode: out / f'history_{mode}.json' for mode in sys.argv[2:]}
summary = {mode: summarise_run(json.loads(path.read_text()), gpus=1) if path.is_file() else None
           for mode, path in histories.items()}
(out / 'compile_measure.json').write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
EOF
