#!/usr/bin/env bash
# tools/train_step_profile.py in ONE call of the device tool (the peer table's wheels):
#   bash tools/device_wheels.sh peers        # here, once: .whl_peers
#   run  carry=[".whl_peers"]  command="bash tools/train_step_profile_device.sh"
# $OUT gets train_step_profile.json and its log. Extra arguments go to the script.
set -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-out/train_step_profile}
mkdir -p "$OUT"
# shellcheck source=tools/device_peers_env.sh
source tools/device_peers_env.sh
timeout "${LIMIT_S:-400}" python3 tools/train_step_profile.py --out "$OUT" "$@" > "$OUT/train_step_profile.log" 2>&1
status=$?
grep -v "^USDT" "$OUT/train_step_profile.log" | tail -60
echo "train_step_profile exit $status"
exit $status
