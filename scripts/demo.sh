#!/usr/bin/env bash
# Sets up the host and runs the main job: the same workload in every sandbox this host offers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
exec bin/bulkhead demo "$@"
