# Source me: `source env.sh` gives an interactive shell the workspace's environment:
# the venv (with ROS 2 wheels, or your sourced distro), the built workspace and the middleware
# settings for camera-sized images. Run `make build` (or any make target) once first.
_ws="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
if [ ! -f "$_ws/install/setup.bash" ]; then
  echo "env.sh: $_ws/install/setup.bash is missing; run 'make build' first" >&2
  return 1 2>/dev/null || exit 1
fi
export VIRTUAL_ENV="$_ws/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
if [ -z "${ROS_DISTRO:-}" ]; then
  export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
fi
# shellcheck disable=SC1091
. "$_ws/install/setup.bash"
eval "$(python3 -m perception.middleware --config-dir "$_ws/config")"
unset _ws
