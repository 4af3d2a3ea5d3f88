# Sourced (not run) by the device scripts that travel with .whl_peers (tools/device_wheels.sh peers),
# from the repository root with OUT set: records the GPU in $OUT/gpu.txt, installs the wheels the
# device lacks into /tmp/site and points Python at them and at the workspace's pure packages.
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv > "$OUT/gpu.txt" 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl_peers/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src/perception_core:$PWD/src/perception_trainer:$PWD/src/perception_bench
export PYTHONUNBUFFERED=1 YOLO_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1
# follow PID DIR FILE...: until PID ends, copy each FILE that exists into DIR every 10 s, so that a
# call cut short still brings back what the run had finished.
follow() {
  local pid=$1 dir=$2
  shift 2
  while kill -0 "$pid" 2>/dev/null; do
    cp "$@" "$dir/" 2>/dev/null
    sleep 10
  done
}
