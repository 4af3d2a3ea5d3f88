#!/usr/bin/env bash
# Multi-GPU scaling of perception-train, in ONE call of the device tool on a multi-GPU kind:
#   run  kind=nvidia-h100-x2  carry=[".whl_packed"]  command="bash tools/train_scaling.sh"
# 1. sets the workspace up from the carried wheels (tools/device_setup.sh);
# 2. renders the default recipe's data (8000 training images, seed 1; 500 validation, seed 2);
# 3. trains config/train_default.yaml, shortened to EPOCHS epochs, under torchrun on 1 GPU and on N,
#    with the same GLOBAL batch (the recipe's batch_size, split over the GPUs), so both runs take the same
#    number of steps of the same size and their mAP must agree; every GPU gets WORKERS loader
#    processes (its share of the host's cores); batch-norm synchronised or not as SYNC_BN says;
# 4. one throughput-only run on N GPUs with the recipe's batch on EVERY GPU (global batch N x that).
# $OUT gets gpu.txt, setup.log (rendering included), one log per run and train_ddp.json, the summary
# (python -m perception_bench.scaling); the run folders are removed, because the device returns only 8 files.
# Copy train_ddp.json to bench/results/train_ddp_<machine>.json.
set -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-out/train_scaling}
EPOCHS=${EPOCHS:-8}
WORKERS=${WORKERS:-14}
RUN_LIMIT_S=${RUN_LIMIT_S:-300}
SYNC_BN=${SYNC_BN:-false}
TRAIN_ARGS=${TRAIN_ARGS:-}  # more perception-train options for every run, split into words: "--compile cudagraphs"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1
# NVLink multicast stays off (KINDS.md: using it can take the host's shared GPUs out of service).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
GPUS=${GPUS:-$(nvidia-smi -L | wc -l)}
nvidia-smi --query-gpu=index,name,driver_version,pstate,clocks.sm,temperature.gpu,power.draw \
  --format=csv > "$OUT/gpu.txt" 2>&1
nvidia-smi topo -m >> "$OUT/gpu.txt" 2>&1
nproc >> "$OUT/gpu.txt"
t0=$SECONDS
# shellcheck disable=SC1091
source tools/device_setup.sh || exit 1
for set in "data/synth_train 8000 1" "data/synth_val 500 2"; do
  read -r folder images seed <<< "$set"
  [ -f "$folder/coco_instances.json" ] || perception-synth --out "$folder" --num-images "$images" \
    --seed "$seed" >> "$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log"; exit 1; }
done
echo "rendered: $((SECONDS - t0)) s"
# The recipe's batch, read from the recipe so that the two cannot drift apart.
BATCH=$(python -c "import yaml; print(yaml.safe_load(open('config/train_default.yaml'))['batch_size'])") || exit 1

train() {  # name gpus epochs batch-per-process [extra perception-train options]
  local name=$1 gpus=$2 epochs=$3 batch=$4; shift 4
  local started=$SECONDS
  timeout "$RUN_LIMIT_S" python -m torch.distributed.run --standalone --nproc-per-node "$gpus" -m perception_trainer.train \
    --config config/train_default.yaml --train-data data/synth_train --val-data data/synth_val \
    --device cuda --epochs "$epochs" --batch-size "$batch" --workers "$WORKERS" \
    --sync-bn "$SYNC_BN" --cache-images false --out "$OUT/$name" $TRAIN_ARGS "$@" > "$OUT/$name.log" 2>&1
  local status=$?
  grep -E 'epoch [0-9]+:|best|Error|error' "$OUT/$name.log" | grep -v '%|' | tail -14
  echo "$name: exit $status after $((SECONDS - started)) s"
}
train gpu1 1 "$EPOCHS" "$BATCH"
train "gpu$GPUS" "$GPUS" "$EPOCHS" $((BATCH / GPUS))
train "gpu${GPUS}_batch$BATCH" "$GPUS" 3 "$BATCH" --eval-interval 1000
python -m perception_bench.scaling "$OUT" --out "$OUT/train_ddp.json"
rm -rf "${OUT:?}"/gpu*/
echo "total $((SECONDS - t0)) s"
