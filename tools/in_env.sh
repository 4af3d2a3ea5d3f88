#!/usr/bin/env bash
# Runs a command inside the workspace environment (env.sh), for the Makefile.
set -eo pipefail
# shellcheck disable=SC1091
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/env.sh"
exec "$@"
