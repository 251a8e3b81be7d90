// One container cannot stall the guest agent of its pod VM. A start (or exec) is answered once its
// process has exec'd, from the agent's main loop (guest/agent.c start_progress), never by a blocking
// wait. The block is real: the sandbox container (root in the guest, as a bundle without a
// capabilities list is) mounts a FUSE filesystem whose /dev/fuse it never reads, so any lookup in
// it waits for ever; an exec into the sandbox whose working directory lies in it blocks before its
// execve (the agent makes the cwd). The old agent waited for that exec in a blocking read: the
// pod's other container was never created. Now the other container is created, started, its output
// and an exec in it served meanwhile, and the blocked exec is failed within the bound the host sends
// (3/4 of the boot timeout), its process killed. Real QEMU guest (TCG here).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ASSETS, BULKHEAD_VM, createWithPipes, makeBundle, makeRootfs, skipReason, tempDir, vm, waitFor } from '../../harness/vm-assets.ts';
import { agentStartWaitMs } from '../../src/vm/limits.ts';

const skip = skipReason();
/** The boot timeout of this file's pod VM: the agent's wait for an exec is 3/4 of it. */
const BOOT_MS = 60_000;
const WAIT_MS = agentStartWaitMs(BOOT_MS);

/** `p`, or a failure naming `what` after `ms` (the old agent never answers: fail, do not hang). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { t = setTimeout(() => reject(new Error(`${what} did not end within ${ms} ms (the guest agent is stalled)`)), ms); });
  return Promise.race([p, late]).finally(() => clearTimeout(t));
}

describe('microVM: a process blocked before its exec does not stall the guest agent', { skip, timeout: 600_000 }, () => {
  let dir: string;
  let root: string;
  let rootfs: string;
  let sbOut: () => string = () => '';
  const sbId = `stall-sb-${process.pid}`;
  const member = { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': sbId };
  const ids: string[] = [];

  before(async () => {
    // every bulkhead-vm this file runs (its env is passed on) creates the pod VM with this boot timeout
    process.env.BULKHEAD_VM_BOOT_TIMEOUT_MS = String(BOOT_MS);
    dir = tempDir('bulkhead-vm-stall-');
    root = join(dir, 'state');
    rootfs = makeRootfs(dir);
    // a FUSE mount at /hang whose server (fd 3, kept open by the sleep) never answers, not even its INIT
    const script = '/bin/busybox mknod /dev/fuse c 10 229 && mkdir -p /hang && exec 3<>/dev/fuse && mount -t fuse -o fd=3,rootmode=40000,user_id=0,group_id=0 none /hang && echo fuse-ready; exec sleep 100000';
    const c = await createWithPipes(root, sbId, makeBundle(dir, 'sb', { rootfs, annotations: { 'io.kubernetes.cri.container-type': 'sandbox' }, args: ['sh', '-c', script] }));
    assert.equal(c.code, 0, c.err());
    sbOut = () => `${c.out()}${c.err()}`;
    const s = await vm(root, ['start', sbId]);
    assert.equal(s.code, 0, s.stderr);
    await waitFor(() => sbOut().includes('fuse-ready'), `the sandbox's FUSE mount (its output: ${sbOut()})`, 60_000);
  });
  after(async () => {
    for (const id of [...ids, sbId]) await vm(root, ['delete', '--force', id]).catch(() => {});
    delete process.env.BULKHEAD_VM_BOOT_TIMEOUT_MS;
    rmSync(dir, { recursive: true, force: true });
  });

  /** The pod VM's console (the agent logs what it killed there). */
  function consoleLog(): string {
    const pods = join(root, 'pods');
    return readdirSync(pods).map((p) => { try { return readFileSync(join(pods, p, 'console.log'), 'utf8'); } catch { return ''; } }).join('\n');
  }

  it('serves another container meanwhile, and fails the blocked exec within its bound', async () => {
    // an exec into the sandbox whose working directory is in the silent FUSE mount: blocked before its execve
    const t0 = Date.now();
    const blocked = new Promise<{ code: number | null; stderr: string; ms: number }>((resolve) => {
      const p = spawn(BULKHEAD_VM, ['--root', root, '--assets', ASSETS, 'exec', '--detach', '--cwd', '/hang/x', '--pid-file', join(dir, 'blocked.pid'), sbId, 'true'], { stdio: ['ignore', 'ignore', 'pipe'], env: process.env });
      let stderr = '';
      p.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
      p.on('close', (code) => resolve({ code, stderr, ms: Date.now() - t0 }));
    });
    let settled = false;
    void blocked.then(() => { settled = true; });
    await new Promise((r) => setTimeout(r, 3000));

    // meanwhile another container of the pod: created, started, its output, an exec in it
    const id = `other-${process.pid}`;
    ids.push(id);
    const c = await within(createWithPipes(root, id, makeBundle(dir, 'other', { rootfs, annotations: member, args: ['sh', '-c', 'echo hello-from-other; exec sleep 1000'] })), 120_000, 'the other container\'s create');
    assert.equal(c.code, 0, c.err());
    const s = await vm(root, ['start', id], undefined, 120_000);
    assert.equal(s.code, 0, s.stderr);
    await waitFor(() => c.out().includes('hello-from-other'), 'the other container\'s output', 60_000);
    const e = await vm(root, ['exec', id, 'echo', 'exec-in-other'], undefined, 120_000);
    assert.equal(e.code, 0, e.stderr);
    assert.equal(e.stdout, 'exec-in-other\n');
    const servedWhileBlocked = !settled;

    // the blocked exec: failed by the agent within its bound, named, its process killed
    const r = await within(blocked, WAIT_MS + 60_000, 'the blocked exec');
    assert.notEqual(r.code, 0, 'the blocked exec is not reported started');
    assert.match(r.stderr, new RegExp(`start: the process did not reach its exec within ${WAIT_MS} ms`), r.stderr);
    assert.ok(r.ms >= WAIT_MS, `answered after ${r.ms} ms, before its bound of ${WAIT_MS} ms`);
    assert.ok(servedWhileBlocked, `the other container was served only after the blocked exec's answer (${r.ms} ms)`);
    assert.match(consoleLog(), /start timed out before its process \d+ exec'd \(state \w, wchan [^)]*\): killed/);
    // the sandbox itself is still running and served
    const st = await vm(root, ['state', sbId]);
    assert.equal((JSON.parse(st.stdout) as { status: string }).status, 'running', st.stderr);
  });
});
