// The `bulkhead run` path as one file: main, the run command and every module they import, bundled
// by esbuild (bundle-build.ts; `npm run build:cli`, also at `npm ci`) into dist/cli/run.mjs. Node
// then resolves and links one module instead of ~30 (~15 ms of CPU at every run). A bundle is only
// used when it matches the sources (src/util/bundle.ts).
import { freshBundle as fresh } from '../util/bundle.ts';

export { stampOf, type BundleManifest, type InputStamp } from '../util/bundle.ts';

/** Where the bundle and its manifest go, under the repository. */
export const BUNDLE_DIR = 'dist/cli';
export const MANIFEST = 'run.json';

/** The run bundle's file name in `dir` when it matches the sources under `root` (src/util/bundle.ts). */
export function freshBundle(dir: string, root: string): string | undefined {
  return fresh(dir, root, MANIFEST);
}
