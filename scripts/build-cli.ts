// Builds the bundle of the `bulkhead run` path (src/cli/bundle.ts) unless the one there matches the
// sources: `npm run build:cli`; npm runs it at `npm ci`, scripts/setup.sh at every setup. Without
// esbuild (a devDependency) it says so and the CLI runs from the sources.
import { join } from 'node:path';
import { buildBundle } from '../src/cli/bundle-build.ts';
import { BUNDLE_DIR, freshBundle } from '../src/cli/bundle.ts';

const root = join(import.meta.dirname, '..');
if (freshBundle(join(root, BUNDLE_DIR), root)) {
  console.log(`bulkhead: the CLI bundle ${join(BUNDLE_DIR, 'run.mjs')} matches the sources`);
} else {
  const r = await buildBundle(root);
  if (r.built) console.log(`bulkhead: built ${r.file} (${r.inputs} sources, ${Math.round(r.bytes / 1024)} KiB)`);
  else console.log(`bulkhead: no CLI bundle built (${r.reason}); bin/bulkhead runs the sources`);
}
