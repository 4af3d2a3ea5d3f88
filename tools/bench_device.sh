#!/usr/bin/env bash
# The GPU half of `make bench`, in ONE call of the device tool (the device keeps nothing between
# calls and has no network):   run  carry=[".whl_packed"]  command="bash tools/bench_device.sh"
# 1. sets the workspace up from the carried wheels (tools/bootstrap.sh, PERCEPTION_PROFILE=device),
#    plus the training-only wheels albumentations needs;
# 2. runs the CUDA-path tests (fp16 + graph against ONNX Runtime, batches, overflow);
# 3. python -m perception_bench.run: every section, GPU variants included.
# Everything lands in $OUT (gpu.txt, setup.log, pytest.log, bench.log, <gpu>.json, <gpu>.md);
# copy the JSON and Markdown into bench/results/. Extra arguments go to perception_bench.run.
set -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-out/bench_device}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,pstate,clocks.sm,clocks.max.sm,temperature.gpu,utilization.gpu,power.draw \
  --format=csv > "$OUT/gpu.txt" 2>&1
t0=$SECONDS
# shellcheck disable=SC1091
source tools/device_setup.sh || exit 1
python -m pytest -q -p no:cacheprovider test/test_bench_cuda_path.py src/perception_core/test/test_backends.py \
  src/perception_core/test/test_preprocess.py 2>&1 | tee "$OUT/pytest.log" | tail -15
python -m perception_bench.run --out-dir "$OUT" "$@" > "$OUT/bench.log" 2>&1
status=$?
grep -v '^20..-..-.. ' "$OUT/bench.log" | tail -120
echo "perception_bench.run exit $status; total $((SECONDS - t0)) s"
exit $status
