#!/usr/bin/env bash
# Sources ROS 2 and the workspace (env.sh also applies the large-frames middleware profile).
set -e
# shellcheck disable=SC1090
. "/opt/ros/${ROS_DISTRO}/setup.bash"
# shellcheck disable=SC1091
. "${WORKSPACE}/env.sh"
exec "$@"
