// Builds the bundles (src/cli/bundle-build.ts: the `bulkhead run` path, the microVM supervisors)
// unless the ones there match the sources: `npm run build:cli`; npm runs it at `npm ci`,
// scripts/setup.sh at every setup. Without esbuild (a devDependency) it says so and the sources run.
import { join } from 'node:path';
import { buildBundle, RUN_BUNDLE, VM_SUPERVISOR_BUNDLE } from '../src/cli/bundle-build.ts';
import { freshBundle } from '../src/util/bundle.ts';

const root = join(import.meta.dirname, '..');
for (const spec of [RUN_BUNDLE, VM_SUPERVISOR_BUNDLE]) {
  if (freshBundle(join(root, spec.dir), root, spec.manifest)) {
    console.log(`bulkhead: the bundle of ${spec.what} ${join(spec.dir, spec.bundle)} matches the sources`);
    continue;
  }
  const r = await buildBundle(root, undefined, spec);
  if (r.built) console.log(`bulkhead: built ${r.file} (${r.inputs} sources, ${Math.round(r.bytes / 1024)} KiB)`);
  else console.log(`bulkhead: no bundle of ${spec.what} built (${r.reason}); the sources run`);
}
