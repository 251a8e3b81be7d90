// The shim v2 start protocol, the ttrpc client and the Task API schema against Debian's real
// containerd-shim-runc-v2 (package containerd): start → Connect → Create (stdout/stderr FIFOs into
// the CRI log writer) → Start → Wait → Delete; Exec into a running task; State/Pids/Kill; a shim
// killed under a call in flight fails the call (UNAVAILABLE), it does not hang; Shutdown.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeBusyboxRootfs } from '../../harness/rootfs.ts';
import { CriLogWriter } from '../../src/runtime/cri-log.ts';
import { openFifo, startShim, type ShimStartOptions } from '../../src/runtime/shimv2/shim-process.ts';
import { decodeForward, EVENTS_FORWARD, OCI_PROCESS_TYPE_URL, TaskClient, type ShimEvent } from '../../src/runtime/shimv2/task-api.ts';
import { removeStaleSocket } from '../../src/runtime/shimv2/shimv2-backend.ts';
import { TtrpcCallError, TtrpcServer } from '../../src/wire/ttrpc.ts';
import { GrpcStatus } from '../../src/wire/grpc-status.ts';

const SHIM = '/usr/bin/containerd-shim-runc-v2';
const skip = !existsSync(SHIM) || process.getuid?.() !== 0 ? 'needs root and containerd-shim-runc-v2' : false;

let dir: string;
const ns = `bhtest-${randomBytes(4).toString('hex')}`;
const shims: TaskClient[] = [];
const events: ShimEvent[] = [];
let eventServer: TtrpcServer | null = null;

function process_(args: string[]): Record<string, unknown> {
  return {
    terminal: false, user: { uid: 0, gid: 0 }, args, cwd: '/',
    env: ['PATH=/bin:/usr/bin'],
    capabilities: { bounding: ['CAP_KILL'], effective: ['CAP_KILL'], permitted: ['CAP_KILL'] },
    noNewPrivileges: true,
  };
}

async function bundle(id: string, args: string[]): Promise<ShimStartOptions> {
  const b = join(dir, id);
  await mkdir(b);
  await writeBusyboxRootfs(join(b, 'rootfs'));
  const spec = {
    ociVersion: '1.0.2', process: process_(args), root: { path: 'rootfs' }, hostname: id,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    ],
    linux: {
      cgroupsPath: `/bulkhead-test/${ns}-${id}`,
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }],
      maskedPaths: ['/proc/kcore'], readonlyPaths: ['/proc/sys'],
    },
  };
  await writeFile(join(b, 'config.json'), JSON.stringify(spec));
  return {
    binary: SHIM, id, namespace: ns, bundle: b, address: join(dir, 'bulkhead.sock'), ttrpcAddress: join(dir, 'bulkhead.sock.ttrpc'),
    publishBinary: '/bin/true',
  };
}

const killedSockets: string[] = [];

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'bh-shimv2-'));
  // the events address the shims are given: what they forward (TaskExit among them) lands here
  eventServer = new TtrpcServer({ [EVENTS_FORWARD]: (p) => { events.push(decodeForward(p)); return Buffer.alloc(0); } });
  await eventServer.listen(join(dir, 'bulkhead.sock.ttrpc'));
});

after(async () => {
  if (skip) return;
  for (const c of shims) c.close();
  await eventServer?.close();
  // a killed shim leaves its socket file (the backend removes it on delete; this test drives the shim itself)
  for (const a of killedSockets) await removeStaleSocket(a);
  // whatever a failed test left: the runc state of this namespace
  const root = `/run/containerd/runc/${ns}`;
  if (existsSync(root)) {
    for (const id of execFileSync('runc', ['--root', root, 'list', '-q'], { encoding: 'utf8', timeout: 10_000 }).split('\n').filter(Boolean)) {
      try { execFileSync('runc', ['--root', root, 'delete', '--force', id], { timeout: 10_000 }); } catch { /* gone */ }
    }
    await rm(root, { recursive: true, force: true });
  }
  await rm(dir, { recursive: true, force: true });
});

test('start, Create with FIFOs into a CRI log, Start, Wait, Delete, Shutdown', { skip }, async () => {
  const o = await bundle('c1', ['sh', '-c', 'echo hello; echo oops >&2; exit 3']);
  const address = await startShim(o);
  assert.match(address, /^\//);
  const task = new TaskClient(address);
  shims.push(task);
  const info = await task.connect('c1');
  assert.ok(info.shimPid > 1);

  const log = await CriLogWriter.open(join(dir, 'c1.log'));
  const out = await openFifo(join(o.bundle, 'stdout'));
  const err = await openFifo(join(o.bundle, 'stderr'));
  const piped = Promise.all([log.pipeFrom(out, 'stdout'), log.pipeFrom(err, 'stderr')]);

  const created = await task.create({ id: 'c1', bundle: o.bundle, stdout: join(o.bundle, 'stdout'), stderr: join(o.bundle, 'stderr') });
  assert.ok(created.pid > 1);
  assert.equal((await task.state('c1')).status, 'CREATED');
  const waiting = task.wait('c1', '', { timeoutMs: 30_000 });
  await task.start('c1');
  const w = await waiting;
  assert.equal(w.exitStatus, 3);
  assert.ok(w.exitedAt && w.exitedAt.seconds > 0);
  const st = await task.state('c1');
  assert.equal(st.status, 'STOPPED');
  assert.equal(st.exitStatus, 3);

  // the FIFOs were opened read-write by us, so they never see EOF: wait (bounded) for the output
  // in the log, then end them (a fixed 200 ms could end them first on a loaded host)
  for (let i = 0; i < 300; i++) {
    const text = await readFile(join(dir, 'c1.log'), 'utf8').catch(() => '');
    if (/ stdout F hello$/m.test(text) && / stderr F oops$/m.test(text)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  out.destroy(); err.destroy();
  await piped.catch(() => {});
  await log.close();
  const text = await readFile(join(dir, 'c1.log'), 'utf8');
  assert.match(text, /^\S+ stdout F hello$/m);
  assert.match(text, /^\S+ stderr F oops$/m);

  const del = await task.delete('c1');
  assert.equal(del.exitStatus, 3);
  await assert.rejects(task.state('c1'), (e: unknown) => e instanceof TtrpcCallError && e.code === GrpcStatus.NOT_FOUND);
  // the shim exits on Shutdown once it has no task: its connection drops, the call may fail with UNAVAILABLE
  await task.shutdown('c1').catch((e: unknown) => { assert.ok(e instanceof TtrpcCallError && e.code === GrpcStatus.UNAVAILABLE); });
  const gone = async (): Promise<boolean> => {
    for (let i = 0; i < 300; i++) {
      try { process.kill(info.shimPid, 0); } catch { return true; }
      if ((await readFile(`/proc/${info.shimPid}/stat`, 'utf8').catch(() => '')).split(') ')[1]?.startsWith('Z')) return true;
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  };
  // with its events taken (TaskExit among them), the shim exits at once: not after ~15 s of retries
  const t0 = Date.now();
  assert.ok(await gone(), 'the shim exited after Shutdown');
  assert.ok(Date.now() - t0 < 5000, `the shim exited within 5 s of Shutdown (took ${Date.now() - t0} ms)`);
  const exit = events.find((e) => e.taskExit?.containerId === 'c1');
  assert.ok(exit, `a TaskExit for c1 was forwarded (got ${events.map((e) => e.topic).join(', ')})`);
  assert.equal(exit.topic, '/tasks/exit');
  assert.equal(exit.namespace, ns);
  assert.equal(exit.taskExit!.exitStatus, 3);
});

test('Exec into a running task, Pids, Kill, and the exit of both', { skip }, async () => {
  const o = await bundle('c2', ['sleep', '1000']);
  const task = new TaskClient(await startShim(o));
  shims.push(task);
  await task.create({ id: 'c2', bundle: o.bundle });
  const started = await task.start('c2');
  assert.equal((await task.state('c2')).status, 'RUNNING');
  assert.deepEqual(await task.pids('c2'), [started.pid]);

  const out = await openFifo(join(o.bundle, 'exec-stdout'));
  const errFifo = await openFifo(join(o.bundle, 'exec-stderr'));
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const spec = Buffer.from(JSON.stringify(process_(['sh', '-c', 'echo from-exec $$'])));
  await task.exec({ id: 'c2', execId: 'e1', stdout: join(o.bundle, 'exec-stdout'), stderr: join(o.bundle, 'exec-stderr'), spec: { typeUrl: OCI_PROCESS_TYPE_URL, value: spec } });
  const ew = task.wait('c2', 'e1', { timeoutMs: 30_000 });
  await task.start('c2', 'e1');
  assert.equal((await ew).exitStatus, 0);
  for (let i = 0; i < 300 && !Buffer.concat(chunks).toString().endsWith('\n'); i++) await new Promise((r) => setTimeout(r, 100));
  out.destroy(); errFifo.destroy();
  assert.match(Buffer.concat(chunks).toString(), /^from-exec \d+\n$/);
  await task.delete('c2', 'e1');

  const w = task.wait('c2', '', { timeoutMs: 30_000 });
  await task.kill('c2', 9);
  assert.equal((await w).exitStatus, 137);
  await task.delete('c2');
  await task.shutdown('c2').catch(() => {});
});

test('a shim killed under a call in flight: the call fails UNAVAILABLE at once, the next one too (no hang)', { skip }, async () => {
  const o = await bundle('c3', ['sleep', '1000']);
  const address = await startShim(o);
  const task = new TaskClient(address);
  shims.push(task);
  killedSockets.push(address);
  const { shimPid } = await task.connect('c3');
  await task.create({ id: 'c3', bundle: o.bundle });
  await task.start('c3');
  const w = task.wait('c3', '', { timeoutMs: 60_000 });
  const t0 = Date.now();
  process.kill(shimPid, 'SIGKILL');
  await assert.rejects(w, (e: unknown) => e instanceof TtrpcCallError && e.code === GrpcStatus.UNAVAILABLE);
  await assert.rejects(task.state('c3', '', { timeoutMs: 5000 }), (e: unknown) => e instanceof TtrpcCallError && e.code === GrpcStatus.UNAVAILABLE);
  assert.ok(Date.now() - t0 < 5000, 'failed promptly');
  // the container outlives its shim: after() removes it through runc
});
