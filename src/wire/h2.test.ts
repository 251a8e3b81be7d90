// The HTTP/2 client connection and HPACK decoder against nghttp2 (node:http2's server) on a temporary
// unix socket: header blocks with static/dynamic table entries, Huffman strings of every byte value,
// CONTINUATION, trailers, flow control beyond the initial windows both ways, RST_STREAM, GOAWAY.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import * as http2 from 'node:http2';
import { connect, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { H2Connection, H2_CANCEL, H2_NO_ERROR, type Headers } from './h2.ts';
import { HpackDecoder, encodeHeaders, huffmanCode, huffmanDecode } from './hpack.ts';

let dir: string;
let socket: string;
let server: http2.Http2Server;
/** What the server saw of the last request. */
let lastRequest: { headers: http2.IncomingHttpHeaders; bodyHash: string; bodyLen: number } | null = null;
const sessions = new Set<http2.ServerHttp2Session>();

function sha(b: Buffer): string { return createHash('sha256').update(b).digest('hex'); }

/** A printable header value of `n` bytes from a seed (every visible latin1 byte, plus space). */
function headerValue(seed: number, n: number): string {
  const chars: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = (seed * 7 + i * 13) % 190;
    chars.push(c < 95 ? 0x20 + c : 0xa0 + (c - 95)); // 0x20-0x7e and 0xa0-0xfe
  }
  return Buffer.from(chars).toString('latin1').trim() || 'x';
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bulkhead-h2-'));
  socket = join(dir, 'h2.sock');
  server = http2.createServer();
  server.on('session', (s) => { sessions.add(s); s.on('close', () => sessions.delete(s)); });
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('error', () => { /* resets are part of the tests */ });
    stream.on('data', (b: Buffer) => chunks.push(b));
    stream.on('end', () => {
      const body = Buffer.concat(chunks);
      lastRequest = { headers, bodyHash: sha(body), bodyLen: body.length };
      const path = String(headers[':path']);
      const q = new URLSearchParams(path.split('?')[1] ?? '');
      if (path.startsWith('/headers')) {
        const seed = Number(q.get('seed'));
        stream.respond({
          ':status': 200, 'content-type': 'application/grpc', date: 'Fri, 27 Nov 2026 03:00:00 GMT', server: 'nghttp2',
          vary: 'accept-encoding', 'x-value': headerValue(seed, 40), 'x-long': headerValue(seed + 1, Number(q.get('long') ?? 10)),
        }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': headerValue(seed + 2, 30) }));
        stream.end(Buffer.from(`seed ${seed}`));
      } else if (path.startsWith('/big')) {
        const n = Number(q.get('n'));
        stream.respond({ ':status': 200 });
        const block = Buffer.alloc(1 << 20);
        for (let i = 0; i < block.length; i++) block[i] = (i * 31) & 0xff;
        let sent = 0;
        const pump = (): void => {
          while (sent < n) {
            const part = block.subarray(0, Math.min(block.length, n - sent));
            sent += part.length;
            if (!stream.write(part)) { stream.once('drain', pump); return; }
          }
          stream.end();
        };
        pump();
      } else if (path.startsWith('/echo')) {
        stream.respond({ ':status': 200, 'x-len': String(body.length), 'x-hash': sha(body) }, { endStream: true });
      } else if (path.startsWith('/reset')) {
        stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      } else if (path.startsWith('/hang')) {
        stream.respond({ ':status': 200 });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
});
after(async () => {
  for (const s of sessions) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

interface Result { headers: Headers | null; endStream: boolean; data: Buffer; trailers: Headers | null; rstCode: number; err: Error | null }

function call(conn: H2Connection, path: string, body = Buffer.alloc(0), extra: [string, string][] = []): Promise<Result> & { stream?: ReturnType<H2Connection['request']> } {
  let stream: ReturnType<H2Connection['request']> | undefined;
  const p = new Promise<Result>((resolve) => {
    const r: Result = { headers: null, endStream: false, data: Buffer.alloc(0), trailers: null, rstCode: -1, err: null };
    const chunks: Buffer[] = [];
    stream = conn.request([[':method', 'POST'], [':scheme', 'http'], [':path', path], [':authority', 'localhost'], ...extra], body, {
      headers: (h, end) => { r.headers = h; r.endStream = end; },
      data: (b) => chunks.push(Buffer.from(b)),
      trailers: (t) => { r.trailers = t; },
      close: (code, err) => { r.rstCode = code; r.err = err; r.data = Buffer.concat(chunks); resolve(r); },
    });
  }) as Promise<Result> & { stream?: ReturnType<H2Connection['request']> };
  if (stream) p.stream = stream;
  return p;
}

test('Huffman codes derived from the lengths are the spec\'s', () => {
  assert.deepEqual(huffmanCode(0x30), [0x0, 5]); // '0'
  assert.deepEqual(huffmanCode(0x20), [0x14, 6]); // ' '
  assert.deepEqual(huffmanCode(0x61), [0x3, 5]); // 'a'
  assert.deepEqual(huffmanCode(0x7a), [0x7b, 7]); // 'z'
  assert.deepEqual(huffmanCode(0), [0x1ff8, 13]);
  assert.deepEqual(huffmanCode(255), [0x3ffffee, 26]);
  assert.deepEqual(huffmanCode(256), [0x3fffffff, 30]); // EOS
  // RFC 7541 C.4.1: "www.example.com" Huffman-coded.
  assert.equal(huffmanDecode(Buffer.from('f1e3c2e5f23a6ba0ab90f4ff', 'hex')), 'www.example.com');
  assert.throws(() => huffmanDecode(Buffer.from('f1e3c2e5f23a6ba0ab90f4fe', 'hex')), /padding|code/); // padding not all ones
  assert.throws(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff])), /EOS|code/);
});

test('HPACK decoder: RFC 7541 C.3 requests (dynamic table across blocks) and our encoder\'s blocks', () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(Buffer.from('828684410f7777772e6578616d706c652e636f6d', 'hex')),
    [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com']]);
  assert.deepEqual(d.decode(Buffer.from('828684be58086e6f2d6361636865', 'hex')),
    [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'], ['cache-control', 'no-cache']]);
  assert.deepEqual(d.decode(Buffer.from('828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565', 'hex')),
    [[':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value']]);
  const list: [string, string][] = [[':method', 'POST'], [':path', '/runtime.v1.RuntimeService/Version'], ['te', 'trailers'], ['grpc-timeout', '300000m'], ['x-ü', 'ÿ']];
  assert.deepEqual(new HpackDecoder().decode(encodeHeaders(list)), list);
  assert.throws(() => new HpackDecoder().decode(Buffer.from([0xbe])), /bad index/); // dynamic index into an empty table
});

test('header blocks from nghttp2: static names, dynamic table reuse, Huffman, CONTINUATION, trailers', async () => {
  const conn = new H2Connection(connect(socket));
  try {
    await conn.ready;
    for (let seed = 0; seed < 60; seed++) {
      const long = seed === 30 ? 40_000 : seed % 7 === 0 ? 3000 : 10; // 40 KB needs CONTINUATION frames; 3 KB values evict
      const r = await call(conn, `/headers?seed=${seed}&long=${long}`, Buffer.from('ping'), [['x-seed', String(seed)]]);
      assert.equal(r.err, null);
      assert.equal(r.rstCode, H2_NO_ERROR);
      assert.equal(r.headers?.[':status'], '200');
      assert.equal(r.headers?.['content-type'], 'application/grpc');
      assert.equal(r.headers?.date, 'Fri, 27 Nov 2026 03:00:00 GMT');
      assert.equal(r.headers?.server, 'nghttp2');
      assert.equal(r.headers?.vary, 'accept-encoding');
      assert.equal(r.headers?.['x-value'], headerValue(seed, 40), `seed ${seed}`);
      assert.equal(r.headers?.['x-long'], headerValue(seed + 1, long), `seed ${seed} long`);
      assert.equal(r.endStream, false);
      assert.equal(r.data.toString(), `seed ${seed}`);
      assert.deepEqual(r.trailers, { 'grpc-status': '0', 'grpc-message': headerValue(seed + 2, 30) });
      assert.equal(lastRequest?.headers['x-seed'], String(seed));
      assert.equal(lastRequest?.headers[':authority'], 'localhost');
      assert.equal(lastRequest?.bodyLen, 4);
    }
  } finally {
    conn.close();
  }
});

test('flow control: a 40 MB response and a 3 MB request pass the initial windows; pause and resume', async () => {
  const conn = new H2Connection(connect(socket));
  try {
    const n = 40 * 1024 * 1024;
    const big = await call(conn, `/big?n=${n}`);
    assert.equal(big.err, null);
    assert.equal(big.data.length, n);
    for (let i = 0; i < n; i += 999_983) assert.equal(big.data[i], ((i % (1 << 20)) * 31) & 0xff, `byte ${i}`);

    const body = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
    const echo = await call(conn, '/echo', body);
    assert.equal(echo.err, null);
    assert.equal(echo.headers?.['x-len'], String(body.length));
    assert.equal(echo.headers?.['x-hash'], sha(body));
    assert.equal(echo.endStream, true);

    // Paused, the stream stops taking window updates; resumed, the rest arrives.
    const p = call(conn, `/big?n=${n}`);
    p.stream!.pause();
    await new Promise((r) => setTimeout(r, 300));
    p.stream!.resume();
    assert.equal((await p).data.length, n);
  } finally {
    conn.close();
  }
});

test('RST_STREAM from the server and our own cancel end one stream; the connection keeps working', async () => {
  const conn = new H2Connection(connect(socket));
  try {
    const r = await call(conn, '/reset');
    assert.equal(r.rstCode, 7);
    assert.equal(r.err, null);
    const hang = call(conn, '/hang');
    await new Promise((res) => setTimeout(res, 100));
    hang.stream!.cancel();
    assert.equal((await hang).rstCode, H2_CANCEL);
    assert.equal((await call(conn, '/echo', Buffer.from('ok'))).headers?.['x-len'], '2');
  } finally {
    conn.close();
  }
});

test('a server that goes away: GOAWAY stops new streams, a dropped socket fails open ones with an error', async () => {
  const conn = new H2Connection(connect(socket));
  await conn.ready;
  const hang = call(conn, '/hang');
  await new Promise((res) => setTimeout(res, 100));
  for (const s of sessions) s.close(); // graceful: GOAWAY, open streams may finish
  for (let i = 0; i < 50 && conn.acceptsStreams; i++) await new Promise((res) => setTimeout(res, 10));
  assert.equal(conn.acceptsStreams, false);
  for (const s of sessions) s.destroy();
  const r = await hang;
  assert.ok(r.err, 'the open stream failed with the connection');
  assert.throws(() => conn.request([[':method', 'POST']], Buffer.alloc(0), { headers() {}, data() {}, trailers() {}, close() {} }));

  // Nothing speaking HTTP/2 on the socket: ready rejects.
  const plain: Server = (await import('node:net')).createServer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
  const p2 = join(dir, 'plain.sock');
  await new Promise<void>((resolve) => plain.listen(p2, resolve));
  try {
    await assert.rejects(new H2Connection(connect(p2)).ready);
  } finally {
    plain.close();
  }
});
