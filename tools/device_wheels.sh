#!/usr/bin/env bash
# Fills .whl/ with Python 3.12 x86_64 wheels for the GPU device (which has no network): the ROS 2
# Kilted closure of requirements/ros.txt and requirements/device.txt with their dependencies,
# minus what the device already has (torch, numpy, scipy, opencv). Pure-Python sdists are built here.
# The tree that travels is capped at 64 MiB: only albumentations' own wheels come for training, and
# the whole set travels packed as .whl_packed/wheels.tar.xz (tools/wheel_pack.py).
#   tools/device_wheels.sh peers: .whl_peers instead, what tools/peer_table_device.sh needs and the
#   device lacks (Ultralytics without polars, the trainer's pydantic/pycocotools/albumentations), ~10 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
PLATFORMS=()
for p in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64 \
         manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64 any; do
  PLATFORMS+=(--platform "$p")
done
if [[ "${1:-}" == peers ]]; then
  DEST=.whl_peers
  grep -qx '/.whl_peers/' .git/info/exclude 2>/dev/null || echo /.whl_peers/ >> .git/info/exclude
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${PLATFORMS[@]}" -d "$DEST" \
    ultralytics==8.4.190 ultralytics-thop==2.0.18 pycocotools==2.0.11 pydantic==2.14.3 pydantic-core==2.50.4 \
    annotated-types==0.8.0 typing-inspection==0.4.5 albumentations==2.0.8 albucore==0.0.24 \
    stringzilla==5.3.2 simsimd==6.5.16 faster-coco-eval==1.8.0
  du -sh "$DEST"
  exit 0
fi
DEST=.whl
mkdir -p "$DEST"
resolve() {  # the full closure, as pip would install it into an empty Python 3.12
  .venv/bin/python -m pip install -q --dry-run --ignore-installed --python-version 3.12 \
    --only-binary=:all: "${PLATFORMS[@]}" --target /tmp/device-resolve --report - "$@" \
    | .venv/bin/python -c 'import json,sys; [print(i["metadata"]["name"]+"=="+i["metadata"]["version"]) for i in json.load(sys.stdin)["install"]]'
}
sdists=(empy==4.2.1 lark-parser==0.12.0 notify2==0.3.1)
.venv/bin/python -m pip wheel -q --no-deps -w "$DEST" "${sdists[@]}"
closure=$(resolve --find-links "$DEST" -r requirements/ros.txt -r requirements/device.txt)
echo "$closure" | grep -viE '^(torch|numpy|scipy|opencv-python-headless|nvidia-|triton|sympy|networkx|jinja2|markupsafe|filelock|fsspec|mpmath|empy|lark-parser|notify2)==' \
  > /tmp/device-closure.txt
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d "$DEST" -r /tmp/device-closure.txt
# The trainer's augmentation library and its per-epoch COCO scorer, for GPU training runs; installed
# there with --no-deps (tools/device_setup.sh) because the device's OpenCV is not the
# opencv-python-headless dist.
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d "$DEST" \
  albumentations==2.0.8 albucore==0.0.24 stringzilla==5.3.2 simsimd==6.5.16 faster-coco-eval==1.8.0
du -sh "$DEST"
# What travels: the same wheels stored and xz-compressed (~19 MB instead of ~58 MB, beside a ~25 MB tree).
.venv/bin/python tools/wheel_pack.py pack "$DEST" .whl_packed/wheels.tar.xz
