// A bundle of a process's modules (one .mjs file built by esbuild from the TypeScript sources:
// src/cli/bundle-build.ts) is only used when it matches the sources: its manifest names every source
// file it was built from with that file's size, mtime, ctime and inode, and one that differs (or is
// gone) means the sources are loaded as before. ctime cannot be set from user space, so an edit that
// keeps size and mtime (cp -p, tar, rsync -t) still shows. Bundles: the `bulkhead run` path
// (src/cli/bundle.ts) and the microVM supervisors (src/vm/cmd/common.ts supervisorEntry).
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** A source file as it was when bundled: path (from the repository root), size, mtime, ctime, inode. */
export type InputStamp = [path: string, size: number, mtimeMs: number, ctimeMs: number, ino: number];

export interface BundleManifest {
  version: 1;
  /** The bundle's file name in the same directory. */
  bundle: string;
  inputs: InputStamp[];
}

/** The stamp of `path` (relative to `root`) now; undefined when it is not a regular file. */
export function stampOf(root: string, path: string): InputStamp | undefined {
  const st = statSync(join(root, path), { throwIfNoEntry: false });
  return st?.isFile() ? [path, st.size, st.mtimeMs, st.ctimeMs, st.ino] : undefined;
}

const same = (a: InputStamp | undefined, b: InputStamp): boolean => a !== undefined && a.every((v, i) => v === b[i]);

/**
 * The bundle's file name in `dir` when its manifest (`dir/manifest`)'s every input still matches the
 * file under `root`; undefined when there is no bundle, its manifest cannot be read, or any input changed.
 */
export function freshBundle(dir: string, root: string, manifest: string): string | undefined {
  let m: BundleManifest;
  try {
    m = JSON.parse(readFileSync(join(dir, manifest), 'utf8')) as BundleManifest;
  } catch {
    return undefined;
  }
  if (m?.version !== 1 || typeof m.bundle !== 'string' || !/^[\w.-]+\.mjs$/.test(m.bundle) || !Array.isArray(m.inputs) || m.inputs.length === 0) return undefined;
  for (const s of m.inputs) {
    if (!Array.isArray(s) || typeof s[0] !== 'string' || !same(stampOf(root, s[0]), s)) return undefined;
  }
  return m.bundle;
}
