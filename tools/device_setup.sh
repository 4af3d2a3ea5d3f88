# Sourced by the device scripts (tools/bench_device.sh, tools/train_scaling.sh), from the repository
# root with OUT set: sets the workspace up from the carried wheels (PERCEPTION_PROFILE=device), adds the
# training-only wheels (albumentations and its dependencies, faster-coco-eval; --no-deps: opencv,
# scipy and pydantic are there), and leaves env.sh sourced. Returns non-zero, with the setup log's tail, when anything fails.
_setup_start=$SECONDS
# The wheels travel packed (tools/wheel_pack.py: the 64 MiB carry limit), unless .whl came itself.
if [[ ! -d .whl && -f .whl_packed/wheels.tar.xz ]]; then
  python3 tools/wheel_pack.py unpack .whl_packed/wheels.tar.xz .whl > "$OUT/unpack.log" 2>&1 \
    || { cat "$OUT/unpack.log"; return 1; }
fi
if ! PERCEPTION_PROFILE=device tools/bootstrap.sh > "$OUT/setup.log" 2>&1; then
  tail -40 "$OUT/setup.log"; return 1
fi
# shellcheck disable=SC1091
source env.sh
if ! python -m pip install -q --no-index --no-deps .whl/albumentations-*.whl .whl/albucore-*.whl \
    .whl/stringzilla-*.whl .whl/simsimd-*.whl .whl/faster_coco_eval-*.whl >> "$OUT/setup.log" 2>&1; then
  tail -20 "$OUT/setup.log"; return 1
fi
echo "setup: $((SECONDS - _setup_start)) s" | tee -a "$OUT/setup.log"
