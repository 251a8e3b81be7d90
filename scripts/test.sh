#!/usr/bin/env bash
# Sets up the host (scripts/setup.sh), type-checks, checks the folder layering, and runs every test. This is the test command.
set -euo pipefail
cd "$(dirname "$0")/.."
# the test command also installs chromium, so the report's browser test runs rather than skips
BULKHEAD_SETUP_CHROMIUM=1 bash scripts/setup.sh
. scripts/env.sh
echo "test: type-checking"
npx tsc -p tsconfig.json
echo "test: checking the layering (.dependency-cruiser.cjs)"
npm run --silent lint:layers
echo "test: running tests with Node.js $(node --version)"
exec node scripts/run-tests.ts "$@"
