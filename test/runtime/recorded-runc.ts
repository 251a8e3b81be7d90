// A RuncBackend on a busybox rootfs whose runc is a wrapper that records each call (one line of
// arguments per call), for tests that prove a step ran without runc (runc-start, runc-delete).
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RuncBackend } from '../../src/runtime/runc/runc-backend.ts';
import { resolveBinary } from '../../src/runtime/conmon/driver.ts';
import { silentLogger } from '../../src/util/log.ts';
import { removeTree } from '../../src/cgroup/tree.ts';
import { makeBusyboxRootfs, type RootfsFixture } from '../../harness/rootfs.ts';

export interface RecordedRunc {
  fx: RootfsFixture;
  backend: RuncBackend;
  /** runc's --root (state.json, exec.fifo of each container). */
  stateDir: string;
  /** Containers to delete at close. */
  made: string[];
  /** The runc calls so far, one string of arguments each. */
  runcCalls(): Promise<string[]>;
  /** Deletes what `made` names, closes the backend, removes `cgroupParent` and the rootfs. */
  close(): Promise<void>;
}

export async function recordedRunc(prefix: string, cgroupParent: string): Promise<RecordedRunc> {
  const fx = await makeBusyboxRootfs(prefix);
  const calls = join(fx.dir, 'runc-calls');
  const wrapper = join(fx.dir, 'runc');
  await writeFile(wrapper, `#!/bin/sh\necho "$*" >> '${calls}'\nexec '${resolveBinary('runc')}' "$@"\n`);
  await chmod(wrapper, 0o755);
  const runDir = join(fx.dir, 'run');
  const backend = new RuncBackend({ runDir, logger: silentLogger, binary: wrapper });
  const made: string[] = [];
  return {
    fx, backend, stateDir: join(runDir, 'state'), made,
    runcCalls: async () => (await readFile(calls, 'utf8').catch(() => '')).split('\n').filter(Boolean),
    close: async () => {
      for (const id of made) await backend.delete(id).catch(() => {});
      await backend.close();
      await removeTree(cgroupParent);
      await fx.cleanup();
    },
  };
}
