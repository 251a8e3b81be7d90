// The process entry of the `bulkhead` command (bin/bulkhead runs it): `bulkhead run` loads the bundle
// of its path (bundle.ts, dist/cli/run.mjs) when that matches the sources; every other command, and
// `run` without a bundle or with a stale one, loads main.ts from the sources. BULKHEAD_CLI_BUNDLE=0
// always loads the sources.
import { join } from 'node:path';
import { commandIndex } from './global-flags.ts';
import { BUNDLE_DIR, freshBundle } from './bundle.ts';

type Main = typeof import('./main.ts');

const argv = process.argv.slice(2);
const root = join(import.meta.dirname, '..', '..');
const bundle = argv[commandIndex(argv)] === 'run' && process.env.BULKHEAD_CLI_BUNDLE !== '0' ? freshBundle(join(root, BUNDLE_DIR), root) : undefined;
let m: Main | undefined;
// a bundle replaced or removed since the check (a rebuild) is no reason to fail: the sources are there
if (bundle) m = await (import(`../../${BUNDLE_DIR}/${bundle}`) as Promise<Main>).catch(() => undefined);
(m ?? await import('./main.ts')).runMain(argv);
