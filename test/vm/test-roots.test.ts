// A test process killed before its after() (a signal to the run, a runner's timeout) left its
// temporary root for good, and with it the pod VM cgroups its supervisors made: their owner records
// (src/cgroup/owner.ts) are anchored in the root, so no sweep takes them (seen: bulkhead-vm/ns-a-…,
// sd-node-… of node-supervisor.test.ts and sandbox-delete.test.ts killed mid-run). The harness now
// records each root (harness/test-dirs.ts) and the next test's root removes those of dead tests.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { vmmHierarchies } from '../../src/vm/vm-cgroup.ts';
import { alive, skipReason, tempDir, waitFor } from '../../harness/vm-assets.ts';

const skip = skipReason();

// the killed test: a root (tempDir), a pod dir in it, a supervisor's work — a process naming the pod
// dir (as QEMU does) placed in the pod VM's cgroup by the real placeVmm — then it waits to be killed
const CHILD = `
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './harness/vm-assets.ts';
import { placeVmm } from './src/vm/vm-cgroup.ts';
import { silentLogger } from './src/util/log.ts';
const dir = tempDir('bulkhead-vm-killed-');
const pod = join(dir, 'state', 'pods', 'p1');
mkdirSync(pod, { recursive: true });
const vmm = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e6)', join(pod, 'console.log')], { stdio: 'ignore', detached: true });
const leaves = await placeVmm(process.argv[1], [vmm.pid], { memoryBytes: 256 << 20 }, pod, silentLogger);
console.log(JSON.stringify({ dir, vmm: vmm.pid, leaves }));
setInterval(() => {}, 1e6);
`;

describe('test roots of a killed test process', { skip, timeout: 120_000 }, () => {
  it('the next test\'s root removes them: what runs naming them, the root, and the pod VM cgroups anchored there', async () => {
    const rel = `bulkhead-vm-test/killed-${process.pid}`;
    const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', CHILD, rel], { cwd: join(import.meta.dirname, '..', '..'), stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    await waitFor(() => out.includes('\n'), 'the child test to make its root and pod VM cgroup');
    const made = JSON.parse(out) as { dir: string; vmm: number; leaves: string[] };
    let mine: string | undefined;
    try {
      assert.ok(made.leaves.length > 0, 'the stand-in VMM is in its cgroup');
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      assert.ok(existsSync(made.dir) && alive(made.vmm), 'a killed test leaves its root and what runs there');
      // the next test (this one) makes a root of its own
      mine = tempDir('bulkhead-vm-roots-');
      await waitFor(() => !existsSync(made.dir), 'the dead test\'s root to go', 30_000);
      await waitFor(() => !alive(made.vmm), 'the process naming it to end', 10_000);
      for (const h of vmmHierarchies()) await waitFor(() => !existsSync(join(h.path, rel)), `its cgroup in ${h.path} to go`, 10_000);
      assert.ok(existsSync(mine), 'a live test\'s root stays');
    } finally {
      child.kill('SIGKILL');
      try { process.kill(made.vmm, 'SIGKILL'); } catch { /* gone */ }
      if (existsSync(made.dir)) rmSync(made.dir, { recursive: true, force: true });
      if (mine) rmSync(mine, { recursive: true, force: true });
      for (const h of vmmHierarchies()) { try { rmdirSync(join(h.path, rel)); } catch { /* gone */ } }
    }
  });
});
