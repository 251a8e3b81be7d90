// The streaming server over SPDY/3.1 with a test-only client, real processes and a real TCP
// echo server: exec, attach, resize, tokens, port-forward, backpressure, protocol errors.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { StreamServer } from '../../src/stream/stream-server.ts';
import { silentLogger } from '../../src/util/log.ts';
import { ProcessRuntime, startEchoServer } from './process-runtime.ts';
import { SpdyClient, httpUpgrade, type ClientStream } from './spdy-client.ts';

const V4 = 'v4.channel.k8s.io';

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  for (let waited = 0; !cond(); waited += 20) {
    if (waited > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function openCommand(url: string, types: string[], protocol = V4): Promise<{ client: SpdyClient; s: Record<string, ClientStream> }> {
  const { client, upgrade } = await SpdyClient.connect(url, [protocol]);
  assert.equal(upgrade.status, 101, upgrade.body);
  assert.deepEqual(upgrade.headers.get('x-stream-protocol-version'), [protocol]);
  const s: Record<string, ClientStream> = {};
  for (const t of types) s[t] = await client!.openStream({ streamtype: t });
  return { client: client!, s };
}

describe('stream server over SPDY/3.1', () => {
  const runtime = new ProcessRuntime();
  let clock = 0;
  const server = new StreamServer({ runtime, logger: silentLogger, now: () => Date.now() + clock, streamCreationTimeoutMs: 2_000 });
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let echoPort = 0;

  before(async () => {
    await server.start();
    echo = await startEchoServer();
    echoPort = echo.port;
  });
  after(async () => {
    await server.close();
    await echo.close();
  });

  it('answers URLs on loopback with a long random token', () => {
    const { url } = server.getExec({ containerId: 'c', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: false });
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/exec\/[A-Za-z0-9_-]{22}$/);
  });

  it('separates stdout and stderr and reports success as a v1 Status', async () => {
    const { url } = server.getExec({ containerId: 'c1', cmd: ['sh', '-c', 'echo out; echo err >&2'], tty: false, stdin: false, stdout: true, stderr: true });
    const { client, s } = await openCommand(url, ['error', 'stdout', 'stderr']);
    await Promise.all([s.error!.done(), s.stdout!.done(), s.stderr!.done()]);
    assert.equal(s.stdout!.text, 'out\n');
    assert.equal(s.stderr!.text, 'err\n');
    assert.deepEqual(JSON.parse(s.error!.text), { metadata: {}, status: 'Success' });
    await client.waitClosed();
    assert.equal(client.goAway?.status, 0);
  });

  it('reports a non-zero exit code on the error stream', async () => {
    const { url } = server.getExec({ containerId: 'c1', cmd: ['sh', '-c', 'exit 3'], tty: false, stdin: false, stdout: true, stderr: false });
    const { client, s } = await openCommand(url, ['error', 'stdout']);
    await s.error!.done();
    const st = JSON.parse(s.error!.text);
    assert.equal(st.status, 'Failure');
    assert.equal(st.reason, 'NonZeroExitCode');
    assert.deepEqual(st.details.causes, [{ reason: 'ExitCode', message: '3' }]);
    client.close();
  });

  it('reports an engine error (unknown container) as a Failure status', async () => {
    const { url } = server.getExec({ containerId: 'missing', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: false });
    const { client, s } = await openCommand(url, ['error', 'stdout']);
    await s.error!.done();
    const st = JSON.parse(s.error!.text);
    assert.equal(st.status, 'Failure');
    assert.match(st.message, /container missing not found/);
    client.close();
  });

  it('writes only the failure text on the error stream for v2', async () => {
    const { url } = server.getExec({ containerId: 'c1', cmd: ['sh', '-c', 'exit 4'], tty: false, stdin: false, stdout: true, stderr: false });
    const { client, s } = await openCommand(url, ['error', 'stdout'], 'v2.channel.k8s.io');
    await s.error!.done();
    assert.match(s.error!.text, /non-zero exit code: exit status 4/);
    client.close();
  });

  it('pipes stdin to the process and passes the half-close on', async () => {
    const { url } = server.getExec({ containerId: 'c2', cmd: ['cat'], tty: false, stdin: true, stdout: true, stderr: false });
    const { client, s } = await openCommand(url, ['error', 'stdin', 'stdout']);
    s.stdin!.write('hello ');
    s.stdin!.write('world', true);
    await Promise.all([s.stdout!.done(), s.error!.done()]);
    assert.equal(s.stdout!.text, 'hello world');
    assert.equal(JSON.parse(s.error!.text).status, 'Success');
    client.close();
  });

  it('delivers resize events for a tty session and merges stderr', async () => {
    const before = runtime.resizes.length;
    const { url } = server.getAttach({ containerId: 'c3', tty: true, stdin: true, stdout: true, stderr: false });
    const { client, s } = await openCommand(url, ['error', 'stdin', 'stdout', 'resize']);
    s.resize!.write('{"Width":80,"Height":24}');
    s.resize!.write('{"Width":120,');
    s.resize!.write('"Height":40}\n');
    await until(() => runtime.resizes.length >= before + 2, 'two resize events');
    assert.deepEqual(runtime.resizes.slice(before), [{ width: 80, height: 24 }, { width: 120, height: 40 }]);
    const call = runtime.calls.at(-1)!;
    assert.deepEqual(call.has, ['stdin', 'stdout', 'resize']);
    assert.equal(call.tty, true);
    s.stdin!.write('typed\n', true);
    await s.error!.done();
    assert.equal(s.stdout!.text, 'typed\n');
    client.close();
  });

  it('rejects tty with stderr, and requests without any stream', () => {
    assert.throws(() => server.getExec({ containerId: 'c', cmd: ['sh'], tty: true, stdin: true, stdout: true, stderr: true }), { code: 'InvalidArgument' });
    assert.throws(() => server.getAttach({ containerId: 'c', tty: false, stdin: false, stdout: false, stderr: false }), { code: 'InvalidArgument' });
    assert.throws(() => server.getPortForward({ podSandboxId: '' }), { code: 'InvalidArgument' });
  });

  it('uses each token once; unknown tokens get 404', async () => {
    const { url } = server.getExec({ containerId: 'c', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: false });
    const first = await openCommand(url, ['error', 'stdout']);
    await first.s.error!.done();
    first.client.close();
    const again = await SpdyClient.connect(url, [V4]);
    assert.equal(again.upgrade.status, 404);
    const unknown = await SpdyClient.connect(url.replace(/[^/]+$/, 'AAAAAAAAAAAAAAAAAAAAAA'), [V4]);
    assert.equal(unknown.upgrade.status, 404);
    const plain = await httpUpgrade(url.replace('/exec/', '/attach/'), { Connection: 'close' });
    assert.equal(plain.status, 404);
  });

  it('expires unused tokens', async () => {
    const { url } = server.getExec({ containerId: 'c', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: false });
    clock += 61_000;
    try {
      const r = await SpdyClient.connect(url, [V4]);
      assert.equal(r.upgrade.status, 404);
    } finally {
      clock -= 61_000;
    }
  });

  it('refuses a protocol it does not speak, listing the ones it accepts', async () => {
    const { url } = server.getExec({ containerId: 'c', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: false });
    const r = await SpdyClient.connect(url, ['v9.channel.k8s.io']);
    assert.equal(r.upgrade.status, 403);
    assert.ok(r.upgrade.headers.get('x-accepted-stream-protocol-versions')?.includes(V4));
  });

  it('echoes client pings and refuses streams of unknown type', async () => {
    const { url } = server.getExec({ containerId: 'c', cmd: ['sleep', '0.5'], tty: false, stdin: false, stdout: true, stderr: false });
    const { client, upgrade } = await SpdyClient.connect(url, [V4]);
    assert.equal(upgrade.status, 101);
    client!.sendPing(7);
    await assert.rejects(client!.openStream({ streamtype: 'bogus' }), /reset \(3\)/);
    await until(() => client!.pings.includes(7), 'ping echo');
    client!.close();
  });

  it('closes a session whose client never creates its streams', async () => {
    const short = new StreamServer({ runtime, logger: silentLogger, streamCreationTimeoutMs: 200 });
    await short.start();
    try {
      const { url } = short.getExec({ containerId: 'c', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: false });
      const { client } = await SpdyClient.connect(url, [V4]);
      await client!.openStream({ streamtype: 'error' });
      await client!.waitClosed();
      assert.ok(client!.goAway, 'GOAWAY before closing');
    } finally {
      await short.close();
    }
  });

  it('closes the connection on malformed frames and keeps serving others', async () => {
    for (const garbage of [
      Buffer.from('8002000100000004deadbeef', 'hex'), // control frame with SPDY version 2
      Buffer.from('800300010000000e0000000100000000000078da0000', 'hex'), // SYN_STREAM with a corrupt header block
      Buffer.from('00000002000000050102030405', 'hex'), // DATA on a stream that was never opened
    ]) {
      const { url } = server.getExec({ containerId: 'c', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: false });
      const { client } = await SpdyClient.connect(url, [V4]);
      client!.socket.write(garbage);
      await client!.waitClosed();
      assert.equal(client!.goAway?.status, 1, `GOAWAY PROTOCOL_ERROR for ${garbage.toString('hex')}`);
    }
    const { url } = server.getExec({ containerId: 'c', cmd: ['echo', 'still here'], tty: false, stdin: false, stdout: true, stderr: false });
    const { client, s } = await openCommand(url, ['error', 'stdout']);
    await s.error!.done();
    assert.equal(s.stdout!.text, 'still here\n');
    client.close();
  });

  it('does not buffer without bound when the client stops reading, and stops the process when it leaves', async () => {
    const start = runtime.stdoutBytes;
    const { url } = server.getExec({ containerId: 'flood', cmd: ['cat', '/dev/zero'], tty: false, stdin: false, stdout: true, stderr: false });
    const { client, s } = await openCommand(url, ['error', 'stdout']);
    await until(() => s.stdout!.bytes > 1024 * 1024, 'some output');
    client.socket.pause();
    await sleep(1_500);
    const produced = runtime.stdoutBytes - start;
    // cat /dev/zero writes gigabytes per second; only socket buffers and small stream buffers may hold data.
    assert.ok(produced < 48 * 1024 * 1024, `process wrote ${produced} bytes while the client was not reading`);
    client.close();
    await until(() => runtime.aborted.includes('flood'), 'exec aborted after the client left');
  });

  it('forwards a port: bytes both ways, several request pairs on one connection', async () => {
    const { url } = server.getPortForward({ podSandboxId: 'pod1' });
    const { client, upgrade } = await SpdyClient.connect(url, ['portforward.k8s.io']);
    assert.equal(upgrade.status, 101);
    const big = Buffer.alloc(512 * 1024, 'x');
    for (const rid of ['0', '1']) {
      const err = await client!.openStream({ streamtype: 'error', port: String(echoPort), requestid: rid });
      const data = await client!.openStream({ streamtype: 'data', port: String(echoPort), requestid: rid });
      data.write(`ping ${rid}`);
      await until(() => data.text === `ping ${rid}`, 'echo');
      data.write(big, true);
      await data.done();
      assert.equal(data.bytes, 6 + big.length);
      await err.done();
      assert.equal(err.text, '');
    }
    client!.close();
  });

  it('reports a port that cannot be reached on the error stream, and refuses bad port headers', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const deadPort = (closed.address() as { port: number }).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const { url } = server.getPortForward({ podSandboxId: 'pod1', port: [deadPort, echoPort] });
    const { client } = await SpdyClient.connect(url, ['portforward.k8s.io']);
    const err = await client!.openStream({ streamtype: 'error', port: String(deadPort), requestid: '0' });
    await client!.openStream({ streamtype: 'data', port: String(deadPort), requestid: '0' });
    await err.done();
    const body = JSON.parse(err.text);
    assert.match(body.message, new RegExp(`error forwarding port ${deadPort} to pod pod1`));
    await assert.rejects(client!.openStream({ streamtype: 'data', port: 'http', requestid: '1' }), /reset/);
    await assert.rejects(client!.openStream({ streamtype: 'data', port: '9', requestid: '2' }), /reset/, 'a port not in the request');
    client!.close();
  });
});
