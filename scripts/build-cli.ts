// Builds the bundle of the `bulkhead run` path (src/cli/bundle.ts): `npm run build:cli`; npm runs it
// at `npm ci` too. Without esbuild (a devDependency) it says so and the CLI runs from the sources.
import { join } from 'node:path';
import { buildBundle } from '../src/cli/bundle-build.ts';

const r = await buildBundle(join(import.meta.dirname, '..'));
if (r.built) console.log(`bulkhead: built ${r.file} (${r.inputs} sources, ${Math.round(r.bytes / 1024)} KiB)`);
else console.log(`bulkhead: no CLI bundle built (${r.reason}); bin/bulkhead runs the sources`);
