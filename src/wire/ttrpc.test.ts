// The ttrpc client against a ttrpc server written here on a temporary unix socket: framing split
// across writes, odd stream ids, out-of-order answers, error statuses, deadlines, an oversized
// frame, a peer that closes, reconnect. (The client against a real containerd shim is
// test/runtime/shimv2.test.ts.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  TTRPC_MAX_MESSAGE, TTRPC_TYPE_REQUEST, TTRPC_TYPE_RESPONSE, TtrpcCallError, TtrpcClient, TtrpcFrameReader, TtrpcServer,
  ttrpcEnvelope, ttrpcFrame,
} from './ttrpc.ts';
import { GrpcStatus } from './grpc-status.ts';

let dir: string;
let socket: string;
let server: Server;
const seen: { streamId: number; service: string; method: string; timeoutNano: number; metadata: unknown }[] = [];
const conns = new Set<Socket>();

function reply(sock: Socket, id: number, status: { code: number; message: string } | null, payload: Buffer): void {
  const body = ttrpcEnvelope.codec.encode(ttrpcEnvelope.response, { status, payload });
  const frame = ttrpcFrame(id, TTRPC_TYPE_RESPONSE, body);
  // write the frame in two pieces split inside the header, to exercise reassembly
  sock.write(frame.subarray(0, 3));
  setImmediate(() => sock.write(frame.subarray(3)));
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bh-ttrpc-'));
  socket = join(dir, 's.sock');
  server = createServer((sock) => {
    conns.add(sock);
    sock.on('close', () => conns.delete(sock));
    const reader = new TtrpcFrameReader();
    sock.on('data', (chunk: Buffer) => {
      for (const f of reader.push(chunk)) {
        assert.equal(f.type, TTRPC_TYPE_REQUEST);
        const req = ttrpcEnvelope.codec.decode(ttrpcEnvelope.request, f.payload);
        seen.push({ streamId: f.streamId, service: req.service as string, method: req.method as string, timeoutNano: req.timeoutNano as number, metadata: req.metadata });
        const payload = req.payload as Buffer;
        switch (req.method) {
          case 'Echo': reply(sock, f.streamId, null, payload); break;
          case 'Slow': setTimeout(() => reply(sock, f.streamId, null, Buffer.from('slow')), 80); break;
          case 'Fail': reply(sock, f.streamId, { code: GrpcStatus.NOT_FOUND, message: 'container x: not found' }, Buffer.alloc(0)); break;
          case 'Never': break;
          case 'Hangup': sock.destroy(); break;
          case 'Huge': {
            const h = Buffer.alloc(10);
            h.writeUInt32BE(TTRPC_MAX_MESSAGE + 1, 0);
            h.writeUInt32BE(f.streamId, 4);
            h.writeUInt8(TTRPC_TYPE_RESPONSE, 8);
            sock.write(h);
            break;
          }
          default: reply(sock, f.streamId, { code: GrpcStatus.UNIMPLEMENTED, message: `${req.service}/${req.method} not implemented` }, Buffer.alloc(0));
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(socket, r));
});

after(async () => {
  for (const c of conns) c.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  await rm(dir, { recursive: true, force: true });
});

test('a call carries service, method, payload, deadline and metadata; stream ids are odd and rising', async () => {
  const c = new TtrpcClient(socket);
  seen.length = 0;
  const a = await c.call('containerd.task.v2.Task', 'Echo', Buffer.from('hello'), { timeoutMs: 5000, metadata: { k: 'v' } });
  const b = await c.call('containerd.task.v2.Task', 'Echo', Buffer.from(''));
  assert.equal(a.toString(), 'hello');
  assert.equal(b.length, 0);
  assert.deepEqual(seen.map((s) => s.streamId), [1, 3]);
  assert.equal(seen[0]!.service, 'containerd.task.v2.Task');
  assert.equal(seen[0]!.method, 'Echo');
  assert.equal(seen[0]!.timeoutNano, 5000 * 1_000_000);
  assert.deepEqual(seen[0]!.metadata, [{ key: 'k', value: 'v' }]);
  c.close();
});

test('calls are multiplexed: a fast answer overtakes a slow one on the same connection', async () => {
  const c = new TtrpcClient(socket);
  const order: string[] = [];
  const slow = c.call('s', 'Slow', Buffer.alloc(0)).then((b) => { order.push(b.toString()); });
  const fast = c.call('s', 'Echo', Buffer.from('fast')).then((b) => { order.push(b.toString()); });
  await Promise.all([slow, fast]);
  assert.deepEqual(order, ['fast', 'slow']);
  assert.equal(conns.size, 1);
  c.close();
});

test('a non-OK status is a TtrpcCallError with its code and message', async () => {
  const c = new TtrpcClient(socket);
  await assert.rejects(c.call('s', 'Fail', Buffer.alloc(0)), (e: unknown) => e instanceof TtrpcCallError && e.code === GrpcStatus.NOT_FOUND && e.details === 'container x: not found');
  await assert.rejects(c.call('s', 'Nope', Buffer.alloc(0)), (e: unknown) => e instanceof TtrpcCallError && e.code === GrpcStatus.UNIMPLEMENTED);
  c.close();
});

test('a call past its deadline fails with DEADLINE_EXCEEDED and the connection stays usable', async () => {
  const c = new TtrpcClient(socket);
  await assert.rejects(c.call('s', 'Never', Buffer.alloc(0), { timeoutMs: 50 }), (e: unknown) => e instanceof TtrpcCallError && e.code === GrpcStatus.DEADLINE_EXCEEDED);
  assert.equal((await c.call('s', 'Echo', Buffer.from('after'))).toString(), 'after');
  c.close();
});

test('a peer that hangs up fails the calls in flight with UNAVAILABLE; the next call reconnects', async () => {
  const c = new TtrpcClient(socket);
  const pending = c.call('s', 'Never', Buffer.alloc(0), { timeoutMs: 5000 });
  await assert.rejects(c.call('s', 'Hangup', Buffer.alloc(0)), (e: unknown) => e instanceof TtrpcCallError && e.code === GrpcStatus.UNAVAILABLE);
  await assert.rejects(pending, (e: unknown) => e instanceof TtrpcCallError && e.code === GrpcStatus.UNAVAILABLE);
  assert.equal((await c.call('s', 'Echo', Buffer.from('again'))).toString(), 'again');
  c.close();
});

test('a frame over 4 MiB from the peer drops the connection instead of buffering it', async () => {
  const c = new TtrpcClient(socket);
  await assert.rejects(c.call('s', 'Huge', Buffer.alloc(0)), (e: unknown) => e instanceof TtrpcCallError && e.code === GrpcStatus.RESOURCE_EXHAUSTED);
  c.close();
});

test('no socket: UNAVAILABLE, not a hang', async () => {
  const c = new TtrpcClient(join(dir, 'absent.sock'));
  await assert.rejects(c.call('s', 'Echo', Buffer.alloc(0), { timeoutMs: 2000 }), (e: unknown) => e instanceof TtrpcCallError && e.code === GrpcStatus.UNAVAILABLE);
  c.close();
});

test('a request over 4 MiB is refused locally', async () => {
  const c = new TtrpcClient(socket);
  await assert.rejects(c.call('s', 'Echo', Buffer.alloc(TTRPC_MAX_MESSAGE + 1)), (e: unknown) => e instanceof TtrpcCallError && e.code === GrpcStatus.RESOURCE_EXHAUSTED);
  c.close();
});

test('TtrpcServer answers registered methods, UNIMPLEMENTED for others, a handler\'s TtrpcCallError as its status', async () => {
  const srv = new TtrpcServer({
    'ev.Events/Forward': (p) => Buffer.concat([Buffer.from('got:'), p]),
    'ev.Events/Refuse': () => { throw new TtrpcCallError(GrpcStatus.PERMISSION_DENIED, 'no'); },
  });
  const path = join(dir, 'srv.sock');
  await srv.listen(path);
  const c = new TtrpcClient(path);
  assert.equal((await c.call('ev.Events', 'Forward', Buffer.from('x'))).toString(), 'got:x');
  await assert.rejects(c.call('ev.Events', 'Other', Buffer.alloc(0)), (e: unknown) => e instanceof TtrpcCallError && e.code === GrpcStatus.UNIMPLEMENTED);
  await assert.rejects(c.call('ev.Events', 'Refuse', Buffer.alloc(0)), (e: unknown) => e instanceof TtrpcCallError && e.code === GrpcStatus.PERMISSION_DENIED && e.details === 'no');
  c.close();
  await srv.close();
});
