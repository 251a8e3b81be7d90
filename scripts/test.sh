#!/usr/bin/env bash
# Sets up the host (scripts/setup.sh), type-checks, and runs every test. This is the test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
echo "test: type-checking"
npx tsc -p tsconfig.json
echo "test: running tests with Node.js $(node --version)"
exec node scripts/run-tests.ts "$@"
