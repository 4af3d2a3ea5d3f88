#!/usr/bin/env bash
# The peer table (tools/peer_table.py) in ONE call of the device tool:
#   bash tools/device_wheels.sh peers                 # here, once: .whl_peers (~10 MB)
#   run  carry=[".whl_peers"]  command="bash tools/peer_table_device.sh"
# MINUTES (default 5) is every model's training budget; OURS the members (BACKBONE[:SIZE][@WxH])
# trained beside YOLO11n (NO_YOLO=1: ours alone), OURS_ARGS more perception-train options for them; LIMIT_S (default 540) ends the table's run so the packing below fits the call.
# At most 8 files of 16 MiB each come back from a call: $OUT gets peers.json (copied as each stage
# ends), table.md, pareto.png, gpu.txt, peers.tar.gz (every log and evaluation, no bundle: two 9 MB
# bundles inside once kept it all from coming back) and up to three bundle_NAME.tar.gz, each only if
# under 15 MiB packed.
set -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-out/peers}
STAGE=/tmp/peers_out
mkdir -p "$OUT" "$STAGE"
# shellcheck source=tools/device_peers_env.sh
source tools/device_peers_env.sh
# shellcheck disable=SC2086
timeout "${LIMIT_S:-540}" python3 tools/peer_table.py --out "$STAGE" --minutes "${MINUTES:-5}" \
  --ours ${OURS:-resnet18 tiny:m} ${NO_YOLO:+--no-yolo} --ours-args "${OURS_ARGS:-}" > "$STAGE/peer_table.log" 2>&1 &
table=$!
follow "$table" "$OUT" "$STAGE/peers.json"
wait "$table"; status=$?
cp "$STAGE"/peers.json "$STAGE"/table.md "$STAGE"/pareto.png "$OUT/" 2>/dev/null
tar -czf "$OUT/peers.tar.gz" -C "$STAGE" .
packed=0
for bundle in /tmp/peers/bundles/*; do
  [[ -d $bundle && $packed -lt 3 ]] || continue
  archive="$OUT/bundle_$(basename "$bundle").tar.gz"
  tar -czf "$archive" -C "$(dirname "$bundle")" "$(basename "$bundle")"
  if (( $(stat -c %s "$archive") < 15 * 1024 * 1024 )); then packed=$((packed + 1)); else
    echo "not brought back (over 15 MiB packed): $bundle"; rm -f "$archive"; fi
done
tail -40 "$STAGE/peer_table.log"
echo "peer_table exit $status"
exit $status
