// The runtime layer's conformance suite against the microvm backend (conmon + bulkhead-vm + QEMU).
// Every sandbox case boots its own VM (TCG here), so this file is slow; cases that do not apply say why.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BULKHEAD_VM_BIN, MicrovmBackend } from '../../src/runtime/microvm/microvm-backend.ts';
import { buildSpec } from '../../src/runtime/spec.ts';
import { silentLogger } from '../../src/util/log.ts';
import { vmmHierarchies } from '../../src/vm/vm-cgroup.ts';
import { makeBusyboxRootfs } from '../../harness/rootfs.ts';
import { backendSuite } from '../runtime/backend-suite.ts';
import { alive, ASSETS, skipReason, waitFor } from '../../harness/vm-assets.ts';

// The survives-creator case builds the backend in a separate process from the handler kind alone
// (no options): it finds the assets through $BULKHEAD_VM_ASSETS, which that process inherits.
process.env.BULKHEAD_VM_ASSETS = ASSETS;

backendSuite('microvm', (o) => new MicrovmBackend({ ...o, assetsRoot: ASSETS }), {
  kind: 'microvm',
  skip: {
    oom: 'microvm: the OOM kill happens in the guest; conmon reads oomKilled from the host cgroup (guest OOM is covered by test/vm/bulkhead-vm.test.ts)',
    update: 'microvm: resources of a running VM container cannot be changed (bulkhead-vm update is refused)',
  },
});

// A daemon SIGKILLed while a microVM pod starts (its conmon and `bulkhead-vm create` run on), then
// restarted: the engine's recovery lists the backend's containers and deletes the ones it does not
// know. That delete must find the half-started pod VM and end all of it.
describe('microvm: a daemon killed mid-start, then restarted', { skip: skipReason(), timeout: 300_000 }, () => {
  it('the restarted backend finds the half-started pod VM and ends its VMM, supervisor, slot files and cgroups', async () => {
    const fx = await makeBusyboxRootfs('bulkhead-vm-restart-');
    const runDir = join(fx.dir, 'run');
    const id = `rs-${process.pid}`;
    const parent = `/bulkhead-test-restart-${process.pid}`;
    const child = { pid: 0 };
    try {
      const spec = await buildSpec({ rootfs: fx.path, cgroupParent: parent, cgroupName: id, command: ['sleep', '1000'], resources: { cpuQuota: 50000, cpuPeriod: 100000 } });
      const script = `
        import { createBackend } from ${JSON.stringify(new URL('../../src/runtime/backends.ts', import.meta.url).href)};
        import { silentLogger } from ${JSON.stringify(new URL('../../src/util/log.ts', import.meta.url).href)};
        const b = createBackend('microvm', { runDir: ${JSON.stringify(runDir)}, logger: silentLogger });
        await b.createContainer({ id: ${JSON.stringify(id)}, spec: ${JSON.stringify(spec)}, pod: { podId: 'p', role: 'sandbox' }, logPath: ${JSON.stringify(join(fx.dir, 'c.log'))} });
      `;
      const daemon = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' });
      child.pid = daemon.pid ?? 0;
      const pods = join(runDir, 'state', 'pods');
      let podDir = '';
      await waitFor(() => {
        const names = existsSync(pods) ? readdirSync(pods) : [];
        podDir = names[0] ? join(pods, names[0]) : '';
        return podDir !== '' && existsSync(join(podDir, 'vmm.proc'));
      }, 'the VMM to start', 120_000);
      process.kill(child.pid, 'SIGKILL'); // the "daemon" only: conmon and create run on
      const vmm = JSON.parse(readFileSync(join(podDir, 'vmm.proc'), 'utf8')) as { pid: number };

      const fresh = new MicrovmBackend({ runDir, logger: silentLogger, assetsRoot: ASSETS });
      const found = await fresh.list();
      assert.ok(found.some((c) => c.id === id), `the restarted backend lists ${id}`);
      const t0 = Date.now();
      for (const c of found) await fresh.delete(c.id);
      assert.ok(Date.now() - t0 < 60_000, `orphan delete took ${Date.now() - t0} ms`);
      await waitFor(() => !alive(vmm.pid), 'the VMM to end', 15_000);
      await waitFor(() => !existsSync(podDir), 'the pod dir (slot files) to go', 15_000);
      await waitFor(() => spawnSync('pgrep', ['-f', runDir], { encoding: 'utf8' }).stdout.trim() === '', 'no process naming the run dir', 30_000);
      for (const h of vmmHierarchies()) assert.ok(!existsSync(join(h.path, parent, id)), `no cgroup left in ${h.path}`);
      await fresh.close();
    } finally {
      if (child.pid) { try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } }
      for (const p of spawnSync('pgrep', ['-f', runDir], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean)) { try { process.kill(Number(p), 'SIGKILL'); } catch { /* gone */ } }
      for (const h of vmmHierarchies()) { try { rmdirSync(join(h.path, parent, id)); } catch { /* none */ } try { rmdirSync(join(h.path, parent)); } catch { /* none */ } }
      await fx.cleanup();
    }
  });
});

// start, state, kill and delete run in the daemon's process (MicrovmBackend.inProcessRuntime): a pod's
// whole life spawns `bulkhead-vm` only for conmon's create of each container, and that create's work
// is done in the daemon too (prepareCreate): bin/bulkhead-vm only starts the prepared shim, in sh.
// The runtime is a wrapper that logs each call and makes any Node.js start it leads to fail
// (NODE_OPTIONS requiring a missing module); BULKHEAD_VM_IN_PROCESS=1 keeps the in-process path on for it.
describe('microvm: the runtime process is spawned only for create (start, state, stats, kill, delete in the daemon; --supervisor pod)', { skip: skipReason(), timeout: 300_000 }, () => {
  it('a sandbox and an app container are created, started, stopped and deleted with two bulkhead-vm processes (both create), neither a Node.js start; a second pod\'s supervisor was started ahead', async () => {
    const fx = await makeBusyboxRootfs('bulkhead-vm-inproc-');
    const runDir = join(fx.dir, 'run');
    const calls = join(fx.dir, 'calls.log');
    const wrapper = join(fx.dir, 'bulkhead-vm');
    writeFileSync(wrapper, `#!/bin/bash\nfor a in "$@"; do case "$a" in create|start|state|kill|delete|exec|stats|update) echo "$a" >> ${calls}; break;; esac; done\nexport NODE_OPTIONS=--require=/nonexistent/bulkhead-test-no-node.cjs\nexec ${BULKHEAD_VM_BIN} "$@"\n`, { mode: 0o755 });
    const saved = process.env.BULKHEAD_VM_IN_PROCESS;
    process.env.BULKHEAD_VM_IN_PROCESS = '1';
    // standby supervisors are the per-pod supervisor's (the node-wide one, the default, needs none)
    const savedSup = process.env.BULKHEAD_VM_SUPERVISOR;
    process.env.BULKHEAD_VM_SUPERVISOR = 'pod';
    const b = new MicrovmBackend({ runDir, logger: silentLogger, assetsRoot: ASSETS, binary: wrapper });
    const sb = `ip-sb-${process.pid}`;
    const app = `ip-app-${process.pid}`;
    const parent = `/bulkhead-test-inproc-${process.pid}`;
    try {
      const sbSpec = await buildSpec({ rootfs: fx.path, cgroupParent: parent, cgroupName: sb, command: ['sleep', '1000'] });
      await b.createContainer({ id: sb, spec: sbSpec, pod: { podId: sb, role: 'sandbox' }, logPath: join(fx.dir, 'sb.log') });
      const frontSeen = new Set<string>();
      if (existsSync(join(runDir, 'state', sb, 'front'))) frontSeen.add(sb);
      await b.start(sb);
      assert.equal((await b.state(sb)).status, 'running');
      // the sandbox's slot was fresh: only the image's non-zero blocks were written (it stays sparse);
      // an ext4 image is mostly empty blocks, an erofs one (rootfs-image.ts, where the guest loads
      // erofs) has next to none: its slot holds the image and nothing of the slot's size beyond it
      const image = (JSON.parse(readFileSync(join(runDir, 'state', sb, 'create.json'), 'utf8')) as { image: string }).image;
      const pods = join(runDir, 'state', 'pods');
      const slot = statSync(join(pods, readdirSync(pods)[0]!, 'slot0.img'));
      const imageSize = statSync(image).size;
      if (image.endsWith('.erofs')) assert.ok(slot.blocks * 512 <= imageSize + 64 * 1024 && slot.size > 2 * imageSize, `slot0 (${slot.size} bytes) holds ${slot.blocks * 512} bytes of a ${imageSize}-byte erofs image`);
      else assert.ok(slot.blocks * 512 < imageSize / 2, `slot0 holds ${slot.blocks * 512} bytes of a ${imageSize}-byte image`);
      const usage = await b.stats(sb);
      assert.ok(usage.memoryWorkingSetBytes > 0, 'stats from the guest');
      // the next pod's supervisor was started ahead (`_vmd --standby`, a moment after this pod's VM
      // was up) and is handed the next pod's flags
      await waitFor(() => spawnSync('pgrep', ['-f', `${runDir}/state --assets .* _vmd --standby`], { encoding: 'utf8' }).stdout.trim() !== '', 'a standby supervisor', 30_000);
      const sb2 = `ip-sb2-${process.pid}`;
      await b.createContainer({ id: sb2, spec: await buildSpec({ rootfs: fx.path, cgroupParent: parent, cgroupName: sb2, command: ['sleep', '1000'] }), pod: { podId: sb2, role: 'sandbox' }, logPath: join(fx.dir, 'sb2.log') });
      const pod2 = (JSON.parse(readFileSync(join(runDir, 'state', sb2, 'state.json'), 'utf8')) as { podDir: string }).podDir;
      const vmd2 = JSON.parse(readFileSync(join(pod2, 'vmd.proc'), 'utf8')) as { pid: number };
      assert.match(readFileSync(`/proc/${vmd2.pid}/cmdline`, 'utf8').split('\0').join(' ').trim(), / _vmd --standby$/, 'the second pod\'s supervisor is the standby');
      assert.match(readFileSync(join(pod2, 'vmd.log'), 'utf8'), /guest up/, 'its lines go to its pod\'s vmd.log');
      await b.delete(sb2);
      assert.ok(!existsSync(pod2), 'its pod dir is gone');
      const appSpec = await buildSpec({ rootfs: fx.path, cgroupParent: parent, cgroupName: app, command: ['sh', '-c', 'exit 3'] });
      await b.createContainer({ id: app, spec: appSpec, pod: { podId: sb, role: 'container', sandboxContainerId: sb }, logPath: join(fx.dir, 'app.log') });
      if (existsSync(join(runDir, 'state', app, 'front'))) frontSeen.add(app);
      assert.equal((await b.state(app)).status, 'created');
      await b.start(app);
      const exited = await b.wait(app);
      assert.equal(exited.exitCode, 3);
      await b.delete(app);
      await b.kill(sb, 'SIGKILL');
      await b.wait(sb);
      await b.delete(sb);
      assert.deepEqual(await b.list(), []);
      // the standby supervisor for a next pod names the run dir (--root) until the backend closes
      await b.close();
      await waitFor(() => spawnSync('pgrep', ['-f', runDir], { encoding: 'utf8' }).stdout.trim() === '', 'no process naming the run dir', 30_000);
      assert.ok(!existsSync(join(runDir, 'state', 'pods')) || readdirSync(join(runDir, 'state', 'pods')).length === 0, 'no pod dir left');
      assert.deepEqual(readFileSync(calls, 'utf8').trim().split('\n'), ['create', 'create', 'create']);
      assert.ok(frontSeen.size === 2, 'both creates were prepared in the daemon (a front file each)');
    } finally {
      if (saved === undefined) delete process.env.BULKHEAD_VM_IN_PROCESS; else process.env.BULKHEAD_VM_IN_PROCESS = saved;
      if (savedSup === undefined) delete process.env.BULKHEAD_VM_SUPERVISOR; else process.env.BULKHEAD_VM_SUPERVISOR = savedSup;
      await b.delete(app).catch(() => {});
      await b.delete(sb).catch(() => {});
      await b.delete(`ip-sb2-${process.pid}`).catch(() => {});
      await b.close().catch(() => {});
      for (const p of spawnSync('pgrep', ['-f', runDir], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean)) { try { process.kill(Number(p), 'SIGKILL'); } catch { /* gone */ } }
      for (const h of vmmHierarchies()) { for (const c of [sb, `ip-sb2-${process.pid}`]) { try { rmdirSync(join(h.path, parent, c)); } catch { /* none */ } } try { rmdirSync(join(h.path, parent)); } catch { /* none */ } }
      await fx.cleanup();
    }
  });
});
