// The streaming server over WebSocket, driven by Node's own WebSocket client (undici, an
// independent RFC 6455 implementation) and by raw sockets for protocol errors.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { StreamServer } from '../../src/stream/stream-server.ts';
import { silentLogger } from '../../src/util/log.ts';
import { ProcessRuntime, startEchoServer } from './process-runtime.ts';
import { httpUpgrade } from './spdy-client.ts';

interface Session {
  ws: WebSocket;
  /** Messages as received: channel and payload (decoded for base64 protocols). */
  messages: Array<{ channel: number; data: Buffer }>;
  closed: Promise<{ code: number }>;
  opened: Promise<void>;
  text(channel: number): string;
}

function open(httpUrl: string, protocol: string, base64 = false): Session {
  const ws = new WebSocket(httpUrl.replace(/^http/, 'ws'), protocol ? [protocol] : []);
  ws.binaryType = 'arraybuffer';
  const messages: Session['messages'] = [];
  ws.addEventListener('message', (ev: MessageEvent) => {
    if (base64) {
      const s = String(ev.data);
      messages.push({ channel: s.charCodeAt(0) - 48, data: Buffer.from(s.slice(1), 'base64') });
    } else {
      const b = Buffer.from(ev.data as ArrayBuffer);
      messages.push({ channel: b[0]!, data: b.subarray(1) });
    }
  });
  const closed = new Promise<{ code: number }>((resolve) => ws.addEventListener('close', (ev: CloseEvent) => resolve({ code: ev.code })));
  const opened = new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve());
    ws.addEventListener('error', () => reject(new Error('websocket failed to open')));
  });
  return {
    ws, messages, closed, opened,
    text: (ch) => Buffer.concat(messages.filter((m) => m.channel === ch).map((m) => m.data)).toString('utf8'),
  };
}

const send = (ws: WebSocket, channel: number, data: Buffer | string): void => ws.send(Buffer.concat([Buffer.of(channel), Buffer.from(data)]));

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !cond(); waited += 20) {
    if (waited > 10_000) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Writes one client frame by hand (masked unless told otherwise). */
function rawFrame(opcode: number, payload: Buffer, opts: { mask?: boolean; fin?: boolean; len?: number } = {}): Buffer {
  const mask = opts.mask ?? true;
  const len = opts.len ?? payload.length;
  const head = len < 126 ? Buffer.of((opts.fin ?? true ? 0x80 : 0) | opcode, (mask ? 0x80 : 0) | len)
    : Buffer.concat([Buffer.of((opts.fin ?? true ? 0x80 : 0) | opcode, (mask ? 0x80 : 0) | 127), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(len)); return b; })()]);
  if (!mask) return Buffer.concat([head, payload]);
  const key = randomBytes(4);
  const body = Buffer.from(payload.map((x, i) => x ^ key[i & 3]!));
  return Buffer.concat([head, key, body]);
}

async function rawWebSocket(url: string, protocol: string): Promise<Awaited<ReturnType<typeof httpUpgrade>>> {
  return await httpUpgrade(url, {
    Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': randomBytes(16).toString('base64'), 'Sec-WebSocket-Protocol': protocol,
  });
}

async function readUntilClosed(up: Awaited<ReturnType<typeof httpUpgrade>>): Promise<Buffer> {
  let got = up.rest;
  up.socket.on('data', (b: Buffer) => { got = Buffer.concat([got, b]); });
  up.socket.resume();
  await new Promise<void>((r) => { if (up.socket.destroyed) r(); else up.socket.once('close', () => r()); });
  return got;
}

describe('stream server over WebSocket', () => {
  const runtime = new ProcessRuntime();
  const server = new StreamServer({ runtime, logger: silentLogger, maxMessageBytes: 64 * 1024 });
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

  it('v5: separates stdout and stderr and reports the exit code as a Status on channel 3', async () => {
    const { url } = server.getExec({ containerId: 'w1', cmd: ['sh', '-c', 'echo out; echo err >&2; exit 7'], tty: false, stdin: false, stdout: true, stderr: true });
    const s = open(url, 'v5.channel.k8s.io');
    await s.opened;
    assert.equal(s.ws.protocol, 'v5.channel.k8s.io');
    await s.closed;
    assert.deepEqual(s.messages[0], { channel: 1, data: Buffer.alloc(0) }, 'an empty stdout message first');
    assert.equal(s.text(1), 'out\n');
    assert.equal(s.text(2), 'err\n');
    const st = JSON.parse(s.text(3));
    assert.equal(st.reason, 'NonZeroExitCode');
    assert.deepEqual(st.details.causes, [{ reason: 'ExitCode', message: '7' }]);
  });

  it('v5: pipes stdin and closes it on the close signal [255, 0]', async () => {
    const { url } = server.getExec({ containerId: 'w2', cmd: ['cat'], tty: false, stdin: true, stdout: true, stderr: false });
    const s = open(url, 'v5.channel.k8s.io');
    await s.opened;
    send(s.ws, 0, 'over ');
    send(s.ws, 0, 'websocket');
    s.ws.send(Buffer.of(255, 0));
    await s.closed;
    assert.equal(s.text(1), 'over websocket');
    assert.deepEqual(JSON.parse(s.text(3)), { metadata: {}, status: 'Success' });
  });

  it('v4 base64: decodes stdin and encodes output as text messages', async () => {
    const { url } = server.getExec({ containerId: 'w3', cmd: ['sh', '-c', 'head -c 5; echo " done"'], tty: false, stdin: true, stdout: true, stderr: false });
    const s = open(url, 'v4.base64.channel.k8s.io', true);
    await s.opened;
    s.ws.send('0' + Buffer.from('abcde').toString('base64'));
    await s.closed;
    assert.equal(s.text(1), 'abcde done\n');
    assert.equal(JSON.parse(s.text(3)).status, 'Success');
  });

  it('delivers resize messages on channel 4 for a tty attach', async () => {
    const before = runtime.resizes.length;
    const { url } = server.getAttach({ containerId: 'w4', tty: true, stdin: true, stdout: true, stderr: false });
    const s = open(url, 'v4.channel.k8s.io');
    await s.opened;
    send(s.ws, 4, '{"Width":100,"Height":30}');
    await until(() => runtime.resizes.length > before, 'resize');
    assert.deepEqual(runtime.resizes.slice(before), [{ width: 100, height: 30 }]);
    send(s.ws, 0, 'x\n');
    await until(() => s.text(1) === 'x\n', 'echo from attach');
    s.ws.close();
    await until(() => runtime.aborted.includes('w4'), 'attach aborted when the client closed');
  });

  it('forwards ports named in the request: port preamble, then bytes both ways', async () => {
    const { url } = server.getPortForward({ podSandboxId: 'pod', port: [echoPort] });
    const s = open(url, 'v4.channel.k8s.io');
    await s.opened;
    const preamble = Buffer.alloc(2);
    preamble.writeUInt16LE(echoPort);
    await until(() => s.messages.length >= 2, 'port preamble');
    assert.deepEqual(s.messages.slice(0, 2), [{ channel: 0, data: preamble }, { channel: 1, data: preamble }]);
    send(s.ws, 0, 'round trip');
    await until(() => s.text(0).endsWith('round trip'), 'echoed bytes');
    s.ws.close();
    await s.closed;
  });

  it('refuses unknown subprotocols (403) and unknown tokens (404)', async () => {
    const { url } = server.getExec({ containerId: 'w', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: false });
    const bad = await rawWebSocket(url, 'v9.channel.k8s.io');
    assert.equal(bad.status, 403);
    const reused = await rawWebSocket(url, 'v5.channel.k8s.io');
    assert.equal(reused.status, 404);
  });

  it('fails the connection on malformed frames and keeps serving', async () => {
    const cases: Array<[string, Buffer, number]> = [
      ['unmasked frame', rawFrame(2, Buffer.of(0, 1), { mask: false }), 1002],
      ['unknown opcode', rawFrame(3, Buffer.of(0)), 1002],
      ['fragmented control frame', rawFrame(9, Buffer.alloc(0), { fin: false }), 1002],
      ['continuation without a message', rawFrame(0, Buffer.of(1)), 1002],
      ['oversized message', rawFrame(2, Buffer.alloc(0), { len: 10 * 1024 * 1024 }), 1009],
      ['fragments that add up past the maximum message', Buffer.concat([rawFrame(2, Buffer.alloc(40 * 1024), { fin: false }), rawFrame(0, Buffer.alloc(40 * 1024))]), 1009],
      ['reserved bit without an extension', rawFrame(0x40 | 2, Buffer.of(0)), 1002],
      ['text message that is not UTF-8', rawFrame(1, Buffer.of(0x30, 0xc3, 0x28)), 1007],
      ['close frame with a one-byte payload', rawFrame(8, Buffer.of(3)), 1002],
    ];
    for (const [name, frame, code] of cases) {
      const { url } = server.getExec({ containerId: 'w', cmd: ['sleep', '5'], tty: false, stdin: true, stdout: true, stderr: false });
      const up = await rawWebSocket(url, 'v5.channel.k8s.io');
      assert.equal(up.status, 101, name);
      up.socket.write(frame);
      const started = Date.now();
      const got = await readUntilClosed(up);
      // The server ends the connection itself, at once (it does not wait for our close frame).
      assert.ok(Date.now() - started < 2_000, `${name}: closed in ${Date.now() - started} ms`);
      const i = got.indexOf(Buffer.of(0x88)); // the server's close frame
      assert.ok(i >= 0, `${name}: close frame sent`);
      assert.equal(got.readUInt16BE(i + 2), code, name);
    }
    const { url } = server.getExec({ containerId: 'w5', cmd: ['echo', 'alive'], tty: false, stdin: false, stdout: true, stderr: false });
    const s = open(url, 'v5.channel.k8s.io');
    await s.closed;
    assert.equal(s.text(1), 'alive\n');
  });

  it('answers a ping with a pong carrying its payload, and a client close frame with its code', async () => {
    const { url } = server.getExec({ containerId: 'w6', cmd: ['sleep', '5'], tty: false, stdin: true, stdout: true, stderr: false });
    const up = await rawWebSocket(url, 'v5.channel.k8s.io');
    assert.equal(up.status, 101);
    const close = Buffer.alloc(2);
    close.writeUInt16BE(1001);
    up.socket.write(Buffer.concat([rawFrame(9, Buffer.from('hi')), rawFrame(8, close)]));
    const got = await readUntilClosed(up);
    assert.ok(got.includes(Buffer.from([0x8a, 0x02, 0x68, 0x69])), 'pong "hi"');
    const i = got.indexOf(Buffer.of(0x88, 0x02));
    assert.ok(i >= 0, 'close frame echoed');
    assert.equal(got.readUInt16BE(i + 2), 1001);
    await until(() => runtime.aborted.includes('w6'), 'exec aborted when the client closed');
  });

  it('refuses a malformed handshake (bad key) with 400 and serves nothing', async () => {
    const { url } = server.getExec({ containerId: 'w7', cmd: ['echo', 'no'], tty: false, stdin: false, stdout: true, stderr: false });
    const up = await httpUpgrade(url, {
      Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'short', 'Sec-WebSocket-Protocol': 'v5.channel.k8s.io',
    });
    assert.equal(up.status, 400);
    up.socket.destroy();
    assert.ok(!runtime.calls.some((c) => c.id === 'w7'), 'the command never ran');
  });

  it('a client that does not answer our close frame is dropped after 5 s', async () => {
    const { url } = server.getExec({ containerId: 'w8', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: false });
    const up = await rawWebSocket(url, 'v5.channel.k8s.io');
    assert.equal(up.status, 101);
    const started = Date.now();
    const got = await readUntilClosed(up); // never answers the server's close frame
    const took = Date.now() - started;
    assert.ok(got.includes(Buffer.of(0x88)), 'close frame sent');
    assert.ok(took >= 4_000 && took < 10_000, `dropped after ${took} ms`);
  });
});

describe('stream server over WebSocket: idle bound', () => {
  const runtime = new ProcessRuntime();
  const server = new StreamServer({ runtime, logger: silentLogger, idleTimeoutMs: 300 });
  before(async () => { await server.start(); });
  after(async () => { await server.close(); });

  it('a WebSocket connection with no traffic is closed after idleTimeoutMs', async () => {
    const { url } = server.getExec({ containerId: 'i1', cmd: ['sleep', '30'], tty: false, stdin: true, stdout: true, stderr: false });
    const s = open(url, 'v5.channel.k8s.io');
    await s.opened;
    const started = Date.now();
    await s.closed;
    assert.ok(Date.now() - started < 5_000, `closed after ${Date.now() - started} ms`);
    await until(() => runtime.aborted.includes('i1'), 'exec aborted when the connection went idle');
  });
});
