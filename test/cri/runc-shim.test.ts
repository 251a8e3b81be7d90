// The runc-shim handler (containerd-shim-runc-v2 driven over ttrpc, src/runtime/shimv2/) through
// the daemon over real CRI gRPC: logs and exec; a daemon restart with the shim running (the
// container keeps running, its output keeps reaching the CRI log, exec works); a SIGKILLed shim
// (the container is reported not running, with a reason, and nothing hangs; the pod is removable).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages } from '../../harness/images.ts';

const cleanups: (() => Promise<void>)[] = [];
after(async () => { for (const fn of cleanups.reverse()) await fn().catch(() => {}); });

async function until(check: () => Promise<boolean>, what: string, limit = 100): Promise<void> {
  for (let i = 0; i < limit; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`gave up waiting for ${what}`);
}

/** Pids of the containerd-shim-runc-v2 processes started by this daemon (their -address is under its run dir). */
/** The socket paths the backend recorded for its shims (record.json under the run dir). */
async function shimSockets(runDir: string): Promise<string[]> {
  const out = new Set<string>();
  for (const f of await readdir(runDir, { recursive: true })) {
    if (!String(f).endsWith('record.json')) continue;
    const rec = JSON.parse(await readFile(join(runDir, String(f)), 'utf8')) as { address?: string };
    if (rec.address) out.add(rec.address.replace(/^unix:\/\//, ''));
  }
  return [...out];
}

async function shimPids(runDir: string): Promise<number[]> {
  const out: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes('containerd-shim-runc-v2') && cmd.includes(runDir)) out.push(Number(p));
  }
  return out;
}

test('runc-shim over CRI: logs, exec, a daemon restart with the shim running, then a killed shim', async () => {
  const images = await buildAndPushTestImages(await sharedRegistry());
  const d: TestDaemon = await startTestDaemon({ name: 'bulkhead-cri-shim-', handlers: { runc: { backend: 'runc' }, 'runc-shim': { backend: 'runc-shim' } }, defaultHandler: 'runc-shim' });
  cleanups.push(() => d.close());
  await d.client.pullImage(images.busybox);
  const pc = { metadata: { name: 'shim', namespace: 'cri-shim', uid: randomUUID(), attempt: 0 }, linux: {} };
  const podId = await d.client.runPodSandbox(pc, 'runc-shim');
  const ctr = await d.client.createContainer(podId, {
    metadata: { name: 'talker' }, image: { image: images.busybox }, logPath: 'talker.log',
    command: ['sh', '-c', 'echo hello-out; echo hello-err >&2; echo $$ > /tmp/pid; exec sleep 3600'],
  }, pc);
  await d.client.startContainer(ctr);
  const st0 = (await d.client.containerStatus(ctr)).status;
  assert.equal(st0.state, 'CONTAINER_RUNNING');
  const logPath = st0.logPath;
  // two FIFOs: neither stream waits for the other
  await until(async () => /stdout F hello-out/.test(await readFile(logPath, 'utf8').catch(() => '')), 'the container output in its CRI log');
  await until(async () => /stderr F hello-err/.test(await readFile(logPath, 'utf8').catch(() => '')), 'the container\'s stderr in its CRI log');
  const ex = await d.client.execSync(ctr, ['sh', '-c', 'echo exec-out; echo exec-err >&2; exit 4'], 10);
  assert.equal(ex.exitCode, 4);
  assert.equal(ex.stdout.toString(), 'exec-out\n');
  assert.equal(ex.stderr.toString(), 'exec-err\n');
  const pidBefore = (await d.client.execSync(ctr, ['cat', '/tmp/pid'], 10)).stdout.toString();
  const shims = await shimPids(d.runDir);
  assert.equal(shims.length, 1, 'one shim serves the pod (the sandbox and its container)');

  // the daemon restarts; the shim and the container do not
  await d.restart();
  const st1 = (await d.client.containerStatus(ctr)).status;
  assert.equal(st1.state, 'CONTAINER_RUNNING');
  assert.equal(st1.startedAt, st0.startedAt, 'the same process, not a restarted one');
  assert.equal((await d.client.execSync(ctr, ['cat', '/tmp/pid'], 10)).stdout.toString(), pidBefore);
  assert.deepEqual(await shimPids(d.runDir), shims, 'the same shim');
  // output after the restart still reaches the log: the new daemon reads the FIFOs again
  await d.client.execSync(ctr, ['sh', '-c', 'echo after-restart > /proc/1/fd/1'], 10);
  await until(async () => /stdout F after-restart/.test(await readFile(logPath, 'utf8').catch(() => '')), 'output written after the restart in the CRI log');

  // the shim is killed: the container is not reported running, calls answer promptly
  const sockets = await shimSockets(d.runDir);
  assert.ok(sockets.length > 0 && sockets.every((s) => existsSync(s)), `the shim's socket is recorded: ${sockets.join(', ')}`);
  process.kill(shims[0]!, 'SIGKILL');
  const t0 = Date.now();
  await until(async () => (await d.client.containerStatus(ctr)).status.state !== 'CONTAINER_RUNNING', 'the container not to be reported running', 100);
  const st2 = (await d.client.containerStatus(ctr)).status;
  assert.ok(['CONTAINER_UNKNOWN', 'CONTAINER_EXITED'].includes(st2.state), st2.state);
  assert.ok(st2.reason || st2.message, `a reason is given: ${JSON.stringify(st2)}`);
  assert.ok(Date.now() - t0 < 15_000, 'answered promptly');
  await d.client.stopPodSandbox(podId);
  await d.client.removePodSandbox(podId);
  assert.deepEqual(await shimPids(d.runDir), []);
  assert.deepEqual(sockets.filter((s) => existsSync(s)), [], 'the killed shim\'s socket file is removed with its containers');
});
