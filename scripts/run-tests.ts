// Runs the test suite with Node's test runner: unit tests beside the code (src/**/*.test.ts),
// integration tests under test/. Extra arguments are passed on (e.g. a single file).
import { spawnSync } from 'node:child_process';
import { globSync } from 'node:fs';

const args = process.argv.slice(2);
const files = args.filter((a) => !a.startsWith('-'));
const flags = args.filter((a) => a.startsWith('-'));
const targets = files.length > 0 ? files : [...globSync('src/**/*.test.ts'), ...globSync('test/**/*.test.ts')].sort();
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=600000', '--disable-warning=ExperimentalWarning', ...flags, ...targets], { stdio: 'inherit' });
process.exit(r.status ?? 1);
