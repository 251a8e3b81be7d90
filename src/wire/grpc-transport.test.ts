// The HTTP/2 gRPC transport against a real grpc-js server (the daemon's server library) on a
// temporary unix socket: unary and streaming calls, statuses, deadlines, cancellation, size limit,
// reconnection after the server restarts, and that an idle connection does not keep a process alive.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { GrpcCallError, GrpcChannel, percentDecode, timeoutHeader } from './grpc-transport.ts';
import { GrpcStatus } from './grpc-status.ts';

const raw = (b: Buffer): Buffer => b;
function method(path: string, responseStream: boolean): grpc.MethodDefinition<Buffer, Buffer> {
  return { path, requestStream: false, responseStream, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw };
}
const service = {
  Echo: method('/test.T/Echo', false),
  Fail: method('/test.T/Fail', false),
  Hang: method('/test.T/Hang', false),
  Big: method('/test.T/Big', false),
  Count: method('/test.T/Count', true),
  CountThenFail: method('/test.T/CountThenFail', true),
};

let dir: string;
let socket: string;
let server: grpc.Server;
/** What the server saw of the last Hang call. */
const seen = { cancelled: false, deadline: Infinity as grpc.Deadline, authority: '' };

async function startServer(): Promise<grpc.Server> {
  const s = new grpc.Server();
  s.addService(service as unknown as grpc.ServiceDefinition, {
    Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      seen.authority = call.getHost();
      cb(null, Buffer.concat([Buffer.from('echo:'), call.request]));
    },
    Fail: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      cb({ code: grpc.status.NOT_FOUND, details: 'no such thing: ä 漢 100% done\nsecond line' });
    },
    Hang: (call: grpc.ServerUnaryCall<Buffer, Buffer>) => {
      seen.cancelled = false;
      seen.deadline = call.getDeadline();
      call.on('cancelled', () => { seen.cancelled = true; });
    },
    Big: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      cb(null, Buffer.alloc(call.request.readUInt32BE(0), 0x61));
    },
    Count: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const n = call.request.readUInt32BE(0);
      const size = call.request.readUInt32BE(4);
      for (let i = 0; i < n; i++) { const b = Buffer.alloc(Math.max(4, size)); b.writeUInt32BE(i, 0); call.write(b); }
      call.end();
    },
    CountThenFail: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      for (let i = 0; i < 3; i++) call.write(Buffer.from([i]));
      call.emit('error', { code: grpc.status.FAILED_PRECONDITION, details: 'stopped after 3' });
    },
  });
  await new Promise<void>((resolve, reject) => s.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return s;
}

function u32(...ns: number[]): Buffer {
  const b = Buffer.alloc(4 * ns.length);
  ns.forEach((n, i) => b.writeUInt32BE(n, 4 * i));
  return b;
}

async function rejectsWith(p: Promise<unknown>, code: number, details?: string | RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof GrpcCallError, `expected GrpcCallError, got ${String(err)}`);
    assert.equal(err.code, code, `code ${err.code}: ${err.details}`);
    if (typeof details === 'string') assert.equal(err.details, details);
    else if (details) assert.match(err.details, details);
    return true;
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bulkhead-wire-'));
  socket = join(dir, 's.sock');
  server = await startServer();
});
after(async () => {
  server?.forceShutdown();
  await rm(dir, { recursive: true, force: true });
});

test('unary call: request and response bytes, :authority localhost', async () => {
  const ch = new GrpcChannel(socket);
  try {
    await ch.waitForReady(Date.now() + 5000);
    assert.deepEqual(await ch.unary('/test.T/Echo', Buffer.from('hi')), Buffer.from('echo:hi'));
    assert.deepEqual(await ch.unary('/test.T/Echo', Buffer.alloc(0)), Buffer.from('echo:'));
    assert.equal(seen.authority, 'localhost');
    // Many calls share the connection, concurrently.
    const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => ch.unary('/test.T/Echo', Buffer.from(String(i)))));
    rs.forEach((r, i) => assert.equal(r.toString(), `echo:${i}`));
  } finally {
    ch.close();
  }
});

test('a failed status comes back with its code and percent-decoded message', async () => {
  const ch = new GrpcChannel(socket);
  try {
    await rejectsWith(ch.unary('/test.T/Fail', Buffer.alloc(0)), GrpcStatus.NOT_FOUND, 'no such thing: ä 漢 100% done\nsecond line');
    await rejectsWith(ch.unary('/test.T/NoSuchMethod', Buffer.alloc(0)), GrpcStatus.UNIMPLEMENTED);
  } finally {
    ch.close();
  }
});

test('server streams: every message in order across frame splits, then the status', async () => {
  const ch = new GrpcChannel(socket);
  try {
    for (const [n, size] of [[0, 4], [1000, 4], [100, 70_000]] as const) {
      let i = 0;
      for await (const m of ch.serverStream('/test.T/Count', u32(n, size))) {
        assert.equal(m.readUInt32BE(0), i);
        assert.equal(m.length, size);
        i++;
      }
      assert.equal(i, n);
    }
    const got: number[] = [];
    await rejectsWith((async () => { for await (const m of ch.serverStream('/test.T/CountThenFail', Buffer.alloc(0))) got.push(m[0]!); })(), GrpcStatus.FAILED_PRECONDITION, 'stopped after 3');
    assert.deepEqual(got, [0, 1, 2]);
    // Leaving the loop early cancels the stream; the channel keeps working.
    for await (const m of ch.serverStream('/test.T/Count', u32(1_000_000, 4))) { if (m.readUInt32BE(0) === 5) break; }
    assert.equal((await ch.unary('/test.T/Echo', Buffer.from('x'))).toString(), 'echo:x');
  } finally {
    ch.close();
  }
});

test('deadline: sent as grpc-timeout, DEADLINE_EXCEEDED when it passes; an aborted signal cancels the call', async () => {
  const ch = new GrpcChannel(socket);
  try {
    const before = Date.now();
    await rejectsWith(ch.unary('/test.T/Hang', Buffer.alloc(0), { deadline: Date.now() + 300 }), GrpcStatus.DEADLINE_EXCEEDED);
    const d = seen.deadline instanceof Date ? seen.deadline.getTime() : seen.deadline;
    assert.ok(d > before && d < before + 60_000, `server saw deadline ${String(seen.deadline)}`);
    await rejectsWith(ch.unary('/test.T/Echo', Buffer.alloc(0), { deadline: Date.now() - 1 }), GrpcStatus.DEADLINE_EXCEEDED);

    const ac = new AbortController();
    const p = ch.unary('/test.T/Hang', Buffer.alloc(0), { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 200));
    ac.abort();
    await rejectsWith(p, GrpcStatus.CANCELLED, 'Cancelled on client');
    for (let i = 0; i < 50 && !seen.cancelled; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(seen.cancelled, true, 'the server saw the cancellation (RST_STREAM)');

    const ac2 = new AbortController();
    const it = ch.serverStream('/test.T/Count', u32(1_000_000, 4), { signal: ac2.signal });
    await it.next();
    ac2.abort();
    await rejectsWith((async () => { for (;;) { const r = await it.next(); if (r.done) break; } })(), GrpcStatus.CANCELLED);
  } finally {
    ch.close();
  }
});

test('a response larger than the limit is RESOURCE_EXHAUSTED; one at the limit passes', async () => {
  const ch = new GrpcChannel(socket, { maxReceiveMessageLength: 100_000 });
  try {
    assert.equal((await ch.unary('/test.T/Big', u32(100_000))).length, 100_000);
    await rejectsWith(ch.unary('/test.T/Big', u32(100_001)), GrpcStatus.RESOURCE_EXHAUSTED, 'Received message larger than max (100001 vs. 100000)');
    assert.equal((await ch.unary('/test.T/Echo', Buffer.from('still'))).toString(), 'echo:still');
  } finally {
    ch.close();
  }
});

test('no server: waitForReady rejects at the deadline, calls are UNAVAILABLE; after close calls are refused', async () => {
  const ch = new GrpcChannel(join(dir, 'nobody.sock'));
  await assert.rejects(ch.waitForReady(Date.now() + 300));
  await rejectsWith(ch.unary('/test.T/Echo', Buffer.alloc(0)), GrpcStatus.UNAVAILABLE);
  ch.close();
  await rejectsWith(ch.unary('/test.T/Echo', Buffer.alloc(0)), GrpcStatus.UNAVAILABLE, 'Channel has been shut down');
});

test('the server restarts on the same socket: the next call reconnects', async () => {
  const ch = new GrpcChannel(socket);
  try {
    assert.equal((await ch.unary('/test.T/Echo', Buffer.from('1'))).toString(), 'echo:1');
    const hanging = ch.unary('/test.T/Hang', Buffer.alloc(0));
    server.forceShutdown();
    await rejectsWith(hanging, GrpcStatus.UNAVAILABLE);
    server = await startServer();
    assert.equal((await ch.unary('/test.T/Echo', Buffer.from('2'))).toString(), 'echo:2');
  } finally {
    ch.close();
  }
});

test('an idle connection does not keep the process alive (a CLI that forgets close() still exits)', async () => {
  const script = `
    import { GrpcChannel } from ${JSON.stringify(join(import.meta.dirname, 'grpc-transport.ts'))};
    const ch = new GrpcChannel(${JSON.stringify(socket)});
    const r = await ch.unary('/test.T/Echo', Buffer.from('bye'));
    process.stdout.write(r.toString());
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s])));
  clearTimeout(killer);
  assert.equal(signal, null, 'the child hung and was killed');
  assert.equal(code, 0);
  assert.equal(out, 'echo:bye');
});

test('grpc-timeout and grpc-message helpers', () => {
  assert.equal(timeoutHeader(1), '1m');
  assert.equal(timeoutHeader(300_000), '300000m');
  assert.equal(timeoutHeader(1e8), '100000S');
  assert.equal(timeoutHeader(0.2), '1m');
  assert.equal(percentDecode('a%20b%C3%A4%'), 'a bä%');
  assert.equal(percentDecode('100%zz'), '100%zz');
});
