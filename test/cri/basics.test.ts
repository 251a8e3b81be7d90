// The CRI server over a real socket with a real daemon: version/status/config RPCs, malformed and
// out-of-order requests mapped to clean status codes, and the daemon still serving afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { stat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as http2 from 'node:http2';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { connect } from '../../src/cri/client.ts';
import { BulkheadError } from '../../src/errors.ts';
import { spawn } from 'node:child_process';

let d: TestDaemon;
before(async () => { d = await startTestDaemon({ name: 'bulkhead-cri-basics-' }); });
after(async () => { await d?.close(); });

function code(name: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof BulkheadError, `expected a BulkheadError, got ${String(err)}`);
    assert.equal(err.code, name, `expected ${name}, got ${err.code}: ${err.message}`);
    return true;
  };
}

/** A raw unary call with an arbitrary request payload, to send bytes that are not a valid message. */
function rawCall(socket: string, path: string, payload: Buffer): Promise<grpc.ServiceError | null> {
  const client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, payload, (err) => { client.close(); resolve(err); });
  });
}

test('Version names the runtime and the API version', async () => {
  const v = await d.client.version();
  assert.equal(v.runtimeName, 'bulkhead');
  assert.equal(v.runtimeApiVersion, 'v1');
  assert.match(v.runtimeVersion, /^\d+\.\d+\.\d+/);
});

test('Status reports RuntimeReady and NetworkReady, verbose info lists handlers with probe results', async () => {
  await d.client.info(); // waits for the handler probes the daemon started; Status never waits
  const s = await d.client.status(true);
  const types = s.status.conditions.map((c) => c.type);
  assert.deepEqual(types, ['RuntimeReady', 'NetworkReady']);
  assert.equal(s.status.conditions[0]!.status, true, JSON.stringify(s.status.conditions[0]));
  const handlers = JSON.parse(s.info.handlers!) as { name: string; available: boolean; isolation: string; default: boolean }[];
  const runc = handlers.find((h) => h.name === 'runc');
  assert.ok(runc, 'runc handler listed');
  assert.equal(runc.available, true);
  assert.equal(runc.default, true);
  assert.equal(runc.isolation, 'process');
  assert.ok(handlers.find((h) => h.name === 'gvisor'), 'gvisor handler listed');
  assert.ok(s.runtimeHandlers.some((h) => h.name === 'runc'));
  const quiet = await d.client.status(false);
  assert.deepEqual(quiet.info, {});
});

test('RuntimeConfig says cgroupfs; UpdateRuntimeConfig stores a pod CIDR and rejects garbage', async () => {
  assert.equal((await d.client.runtimeConfig()).linux?.cgroupDriver, 'CGROUPFS');
  await d.client.updateRuntimeConfig('10.88.0.0/16');
  const s = await d.client.status(true);
  assert.equal((JSON.parse(s.info.config!) as { podCidr: string }).podCidr, '10.88.0.0/16');
  await assert.rejects(d.client.updateRuntimeConfig('10.88.0.0/99'), code('InvalidArgument'));
  await assert.rejects(d.client.updateRuntimeConfig('not a cidr'), code('InvalidArgument'));
});

test('Info (extension service) lists handlers, paths and versions', async () => {
  const info = await d.client.info();
  assert.equal(info.root, d.root);
  assert.equal(info.socket, d.socket);
  assert.equal(info.defaultHandler, 'runc');
  assert.equal(info.pid, d.pid);
  assert.ok(info.handlers.some((h) => h.name === 'runc' && h.available && h.isDefault));
  assert.equal(info.versions.criApi, 'v1');
  // bulkhead doctor's: every handler probed again now, the same answers here
  const fresh = await d.client.info(undefined, { reprobe: true });
  assert.deepEqual(fresh.handlers.map((h) => [h.name, h.available]), info.handlers.map((h) => [h.name, h.available]));
});

test('the socket is mode 0600 and a second daemon on the same root is refused', async () => {
  const st = await stat(d.socket);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o777, 0o600);
  // Same root and run dir, another socket: the pid lock must stop it before it serves.
  const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', join(import.meta.dirname, '../../src/daemon/main.ts'),
    '--config', d.configPath, '--root', d.root, '--run-dir', d.runDir, '--socket', join(d.base, 'other.sock')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
  const exitCode = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  assert.notEqual(exitCode, 0);
  assert.match(stderr, new RegExp(`another Bulkhead daemon \\(pid ${d.pid}\\)`));
  // The first daemon is untouched.
  assert.equal((await d.client.version()).runtimeName, 'bulkhead');
});

test('empty ids are INVALID_ARGUMENT for every RPC that takes one', async () => {
  const c = d.client;
  const calls: [string, () => Promise<unknown>][] = [
    ['StopPodSandbox', () => c.stopPodSandbox('')],
    ['RemovePodSandbox', () => c.removePodSandbox('')],
    ['PodSandboxStatus', () => c.podSandboxStatus('')],
    ['CreateContainer', () => c.createContainer('', { metadata: { name: 'x' }, image: { image: 'busybox' } }, null)],
    ['StartContainer', () => c.startContainer('')],
    ['StopContainer', () => c.stopContainer('', 0)],
    ['RemoveContainer', () => c.removeContainer('')],
    ['ContainerStatus', () => c.containerStatus('')],
    ['UpdateContainerResources', () => c.updateContainerResources('', {})],
    ['ReopenContainerLog', () => c.reopenContainerLog('')],
    ['ExecSync', () => c.execSync('', ['true'])],
    ['Exec', () => c.exec({ containerId: '', cmd: ['true'], stdout: true })],
    ['Attach', () => c.attach({ containerId: '', stdout: true })],
    ['PortForward', () => c.portForward('', [80])],
    ['ContainerStats', () => c.containerStats('')],
    ['PodSandboxStats', () => c.podSandboxStats('')],
    ['ImageStatus', () => c.imageStatus('')],
    ['PullImage', () => c.pullImage('')],
    ['RemoveImage', () => c.removeImage('')],
  ];
  for (const [name, call] of calls) {
    await assert.rejects(call(), code('InvalidArgument'), name);
  }
});

test('malformed requests are INVALID_ARGUMENT and name what is wrong', async () => {
  const c = d.client;
  await assert.rejects(c.runPodSandbox({}), (err: unknown) => code('InvalidArgument')(err) && /metadata/.test((err as Error).message));
  await assert.rejects(c.runPodSandbox({ metadata: { name: '', namespace: 'n', uid: 'u' } }), code('InvalidArgument'));
  await assert.rejects(c.runPodSandbox({ metadata: { name: 'a/b', namespace: 'n', uid: 'u' } }), code('InvalidArgument'));
  await assert.rejects(c.createContainer('abc', { metadata: { name: 'x' } }, null), (err: unknown) => code('InvalidArgument')(err) && /image/.test((err as Error).message));
  await assert.rejects(c.createContainer('abc', { image: { image: 'busybox' } }, null), code('InvalidArgument'));
  await assert.rejects(c.execSync('abc', []), code('InvalidArgument'));
  await assert.rejects(c.exec({ containerId: 'abc', cmd: ['sh'] }), code('InvalidArgument'));
  await assert.rejects(c.exec({ containerId: 'abc', cmd: ['sh'], tty: true, stdout: true, stderr: true }), code('InvalidArgument'));
  await assert.rejects(c.portForward('abc', [70000]), code('InvalidArgument'));
  await assert.rejects(c.loadImage('relative/path.tar'), code('InvalidArgument'));
  // The deprecated profile path must name a known profile or localhost/<path>.
  await assert.rejects(c.createContainer('abc', { metadata: { name: 'x' }, image: { image: 'busybox' }, linux: { securityContext: { seccompProfilePath: '/tmp/profile.json' } } }, null),
    (err: unknown) => code('InvalidArgument')(err) && /localhost\//.test((err as Error).message));
  await assert.rejects(c.runPodSandbox({ metadata: { name: 'p', namespace: 'n', uid: 'u' }, linux: { securityContext: { seccompProfilePath: 'my-profile' } } }), code('InvalidArgument'));
});

test('an unknown runtime handler is INVALID_ARGUMENT naming it; no silent fallback', async () => {
  const err = await d.client.runPodSandbox({ metadata: { name: 'p', namespace: 'default', uid: 'u1' } }, 'no-such-handler').then(() => null, (e: unknown) => e);
  assert.ok(err instanceof BulkheadError);
  assert.equal(err.code, 'InvalidArgument');
  assert.match(err.message, /no-such-handler/);
  assert.match(err.message, /runc/, 'lists the configured handlers');
  assert.deepEqual(await d.client.listPodSandbox(), [], 'no pod was created');
});

test('out-of-order requests: missing objects are NOT_FOUND, stop/remove of missing objects succeed', async () => {
  const c = d.client;
  const missing = 'f'.repeat(64);
  await assert.rejects(c.startContainer(missing), code('NotFound'));
  await assert.rejects(c.containerStatus(missing), code('NotFound'));
  await assert.rejects(c.podSandboxStatus(missing), code('NotFound'));
  await assert.rejects(c.execSync(missing, ['true']), code('NotFound'));
  await assert.rejects(c.containerStats(missing), code('NotFound'));
  await assert.rejects(c.podSandboxStats(missing), code('NotFound'));
  await assert.rejects(c.reopenContainerLog(missing), code('NotFound'));
  await assert.rejects(c.updateContainerResources(missing, { cpuShares: 512 }), code('NotFound'));
  await assert.rejects(c.createContainer(missing, { metadata: { name: 'x' }, image: { image: 'busybox' } }, { metadata: { name: 'p', namespace: 'n', uid: 'u' } }), code('NotFound'));
  await assert.rejects(c.exec({ containerId: missing, cmd: ['sh'], stdout: true }), code('NotFound'));
  await assert.rejects(c.portForward(missing, [80]), code('NotFound'));
  // Idempotent teardown, as the kubelet expects.
  await c.stopContainer(missing, 0);
  await c.removeContainer(missing);
  await c.stopPodSandbox(missing);
  await c.removePodSandbox(missing);
  await c.removeImage('127.0.0.1:1/no/such:image');
  // An absent image is not an error for ImageStatus: the response has no image.
  assert.equal((await c.imageStatus('127.0.0.1:1/no/such:image')).image, null);
  assert.deepEqual(await c.listImages('127.0.0.1:1/no/such:image'), []);
});

test('CheckpointContainer is UNIMPLEMENTED with a clear message; metrics RPCs answer empty', async () => {
  await assert.rejects(d.client.checkpointContainer('abc', '/tmp/x.tar'), (err: unknown) => code('Unimplemented')(err) && /Checkpoint/.test((err as Error).message));
  assert.deepEqual(await d.client.listMetricDescriptors(), []);
  assert.deepEqual(await d.client.listPodSandboxMetrics(), []);
});

test('bytes that are not a protobuf message are INVALID_ARGUMENT, the daemon keeps serving', async () => {
  const err = await rawCall(d.socket, '/runtime.v1.RuntimeService/RunPodSandbox', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
  assert.ok(err);
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
  assert.match(err.details, /malformed request/);
  const unknown = await rawCall(d.socket, '/runtime.v1.RuntimeService/NoSuchMethod', Buffer.alloc(0));
  assert.equal(unknown?.code, grpc.status.UNIMPLEMENTED);
  assert.equal((await d.client.version()).runtimeName, 'bulkhead');
});

test('garbage bytes on the socket do not disturb the daemon', async () => {
  for (let i = 0; i < 5; i++) {
    await new Promise<void>((resolve) => {
      const s = netConnect(d.socket);
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.on('connect', () => { s.write(i % 2 ? randomBytes(4096) : Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')); setTimeout(() => s.destroy(), 50); });
    });
  }
  assert.equal((await d.client.version()).runtimeName, 'bulkhead');
  // Another client over a fresh connection works too.
  const c2 = await connect(d.socket);
  try { assert.equal((await c2.status()).status.conditions.length, 2); } finally { c2.close(); }
  assert.doesNotMatch(await d.log(), /unexpected error|uncaught/i);
});

test('a client that sends the socket path as :authority (Go gRPC before 1.26: crictl, critest) is served', async () => {
  // Node's own HTTP/2 client, told to send the path as authority, over the unix socket.
  const session = http2.connect('http://localhost', { createConnection: () => netConnect(d.socket) });
  try {
    const req = session.request({
      ':method': 'POST', ':path': '/runtime.v1.RuntimeService/Version', ':authority': d.socket,
      'content-type': 'application/grpc', te: 'trailers',
    });
    const msg = Buffer.from([0x0a, 0x02, 0x76, 0x31]); // VersionRequest{version: "v1"}
    const framed = Buffer.concat([Buffer.from([0, 0, 0, 0, msg.length]), msg]);
    req.end(framed);
    const chunks: Buffer[] = [];
    let trailers: http2.IncomingHttpHeaders = {};
    req.on('trailers', (t) => { trailers = t; });
    req.on('data', (c: Buffer) => chunks.push(c));
    const status = await new Promise<number>((resolve, reject) => {
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', reject);
    });
    await new Promise<void>((resolve, reject) => { req.on('end', resolve); req.on('error', reject); });
    assert.equal(status, 200);
    assert.equal(trailers['grpc-status'], '0', JSON.stringify(trailers));
    assert.match(Buffer.concat(chunks).toString('latin1'), /bulkhead/);
  } finally {
    session.close();
  }
});

test('connect to a socket where nothing listens is UnavailableError naming the socket', async () => {
  const path = join(d.base, 'nobody.sock');
  await assert.rejects(connect(path, { timeoutMs: 1000 }), (err: unknown) => code('Unavailable')(err) && (err as Error).message === `no Bulkhead daemon answers on ${path}`);
});

test('every RPC is logged with method, duration and code', async () => {
  await assert.rejects(d.client.startContainer('e'.repeat(64)), code('NotFound'));
  const log = await readFile(d.logPath, 'utf8');
  assert.match(log, /msg=rpc .*method=\/runtime\.v1\.RuntimeService\/StartContainer durationMs=[\d.]+ code=NOT_FOUND/);
  assert.match(log, /msg=rpc .*method=\/runtime\.v1\.RuntimeService\/Version durationMs=[\d.]+ code=OK/);
});
