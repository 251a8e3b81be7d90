// A minimal SPDY/3.1 client for the streaming tests, written apart from src/stream so the two
// implementations check each other: its own framing and its own zlib contexts (real deflate
// compression of its header blocks, with the dictionary read from the spec bytes in src only).
import { connect, type Socket } from 'node:net';
import { createDeflate, createInflate, constants as zc, type Deflate, type Inflate } from 'node:zlib';
import { EventEmitter } from 'node:events';
import { SPDY_DICTIONARY } from '../../src/stream/spdy-frame.ts';

export interface UpgradeResult {
  status: number;
  headers: Map<string, string[]>;
  body: string;
  socket: Socket;
  rest: Buffer;
}

/** Sends an HTTP/1.1 request with `headers` and reads the response head (and body if not 101). */
export async function httpUpgrade(url: string, headers: Record<string, string | string[]>): Promise<UpgradeResult> {
  const u = new URL(url);
  const socket = connect(Number(u.port), u.hostname);
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  const lines = [`GET ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`];
  for (const [k, v] of Object.entries(headers)) for (const x of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${x}`);
  socket.write(lines.join('\r\n') + '\r\n\r\n');
  let buf = Buffer.alloc(0);
  for (;;) {
    const chunk = await new Promise<Buffer | null>((resolve) => {
      const onData = (b: Buffer): void => { cleanup(); resolve(b); };
      const onEnd = (): void => { cleanup(); resolve(null); };
      const cleanup = (): void => { socket.off('data', onData); socket.off('end', onEnd); socket.off('close', onEnd); };
      socket.on('data', onData);
      socket.once('end', onEnd);
      socket.once('close', onEnd);
    });
    if (chunk) buf = Buffer.concat([buf, chunk]);
    const end = buf.indexOf('\r\n\r\n');
    if (end >= 0 || !chunk) {
      socket.pause();
      const headText = buf.subarray(0, end >= 0 ? end : buf.length).toString('latin1');
      const [statusLine, ...hl] = headText.split('\r\n');
      const h = new Map<string, string[]>();
      for (const l of hl) {
        const i = l.indexOf(':');
        if (i < 0) continue;
        const k = l.slice(0, i).trim().toLowerCase();
        h.set(k, [...(h.get(k) ?? []), l.slice(i + 1).trim()]);
      }
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0);
      let rest = end >= 0 ? buf.subarray(end + 4) : Buffer.alloc(0);
      let body = '';
      if (status !== 101) {
        // Read the rest of the (small) body until the server closes.
        socket.resume();
        await new Promise<void>((resolve) => {
          socket.on('data', (b: Buffer) => { rest = Buffer.concat([rest, b]); });
          socket.once('close', () => resolve());
        });
        body = rest.toString('utf8');
      }
      return { status, headers: h, body, socket, rest };
    }
  }
}

export class ClientStream extends EventEmitter {
  readonly id: number;
  readonly chunks: Buffer[] = [];
  finished = false;
  reset: number | null = null;
  readonly #client: SpdyClient;
  constructor(client: SpdyClient, id: number) {
    super();
    this.id = id;
    this.#client = client;
  }
  get text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
  get bytes(): number {
    return this.chunks.reduce((n, c) => n + c.length, 0);
  }
  write(data: Buffer | string, fin = false): void {
    this.#client.sendData(this.id, Buffer.from(data), fin);
  }
  end(): void {
    this.#client.sendData(this.id, Buffer.alloc(0), true);
  }
  /** Resolves when the server has sent FIN (or reset the stream, or the connection closed). */
  async done(): Promise<void> {
    if (this.finished || this.reset !== null || this.#client.closed) return;
    await new Promise<void>((resolve) => { this.once('done', resolve); });
  }
}

function frameHeader(control: boolean, typeOrId: number, flags: number, len: number): Buffer {
  const h = Buffer.alloc(8);
  if (control) { h.writeUInt16BE(0x8003, 0); h.writeUInt16BE(typeOrId, 2); } else h.writeUInt32BE(typeOrId, 0);
  h[4] = flags;
  h[5] = (len >> 16) & 0xff; h[6] = (len >> 8) & 0xff; h[7] = len & 0xff;
  return h;
}

export class SpdyClient {
  readonly socket: Socket;
  readonly streams = new Map<number, ClientStream>();
  readonly pings: number[] = [];
  goAway: { last: number; status: number } | null = null;
  windowUpdates = 0;
  closed = false;
  readonly #deflate: Deflate = createDeflate({ dictionary: SPDY_DICTIONARY });
  readonly #inflate: Inflate = createInflate({ dictionary: SPDY_DICTIONARY });
  #nextId = 1;
  #buf = Buffer.alloc(0);
  #chain: Promise<unknown> = Promise.resolve();
  readonly #replies = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  readonly #closeWaiters: Array<() => void> = [];

  constructor(socket: Socket, rest: Buffer) {
    this.socket = socket;
    socket.on('data', (b: Buffer) => this.#onData(b));
    socket.on('close', () => void this.#chain.then(() => {
      this.closed = true;
      for (const s of this.streams.values()) s.emit('done');
      for (const r of this.#replies.values()) r.reject(new Error('connection closed'));
      for (const w of this.#closeWaiters.splice(0)) w();
      this.#deflate.destroy();
      this.#inflate.destroy();
    }));
    socket.on('error', () => { /* seen as close */ });
    socket.resume();
    if (rest.length > 0) this.#onData(rest);
  }

  static async connect(url: string, protocols: string[]): Promise<{ client: SpdyClient | null; upgrade: UpgradeResult }> {
    const up = await httpUpgrade(url, { Connection: 'Upgrade', Upgrade: 'SPDY/3.1', 'X-Stream-Protocol-Version': protocols });
    if (up.status !== 101) return { client: null, upgrade: up };
    return { client: new SpdyClient(up.socket, up.rest), upgrade: up };
  }

  async waitClosed(): Promise<void> {
    if (this.closed) return;
    await new Promise<void>((r) => this.#closeWaiters.push(r));
  }

  async #compress(headers: Record<string, string>): Promise<Buffer> {
    const entries = Object.entries(headers);
    const parts: Buffer[] = [Buffer.alloc(4)];
    parts[0]!.writeUInt32BE(entries.length, 0);
    for (const [k, v] of entries) {
      for (const s of [k.toLowerCase(), v]) {
        const b = Buffer.from(s);
        const l = Buffer.alloc(4);
        l.writeUInt32BE(b.length, 0);
        parts.push(l, b);
      }
    }
    const out: Buffer[] = [];
    const onData = (b: Buffer): void => { out.push(b); };
    this.#deflate.on('data', onData);
    this.#deflate.write(Buffer.concat(parts));
    await new Promise<void>((r) => this.#deflate.flush(zc.Z_SYNC_FLUSH, () => r()));
    this.#deflate.off('data', onData);
    return Buffer.concat(out);
  }

  /** Opens a stream; resolves once the server answers SYN_REPLY, rejects on RST_STREAM. */
  async openStream(headers: Record<string, string>, opts: { fin?: boolean } = {}): Promise<ClientStream> {
    const id = this.#nextId;
    this.#nextId += 2;
    const s = new ClientStream(this, id);
    this.streams.set(id, s);
    const replied = new Promise<void>((resolve, reject) => this.#replies.set(id, { resolve, reject }));
    const sent = this.#chain.then(async () => {
      const block = await this.#compress(headers);
      const body = Buffer.alloc(10);
      body.writeUInt32BE(id, 0);
      this.socket.write(Buffer.concat([frameHeader(true, 1, opts.fin ? 1 : 0, 10 + block.length), body, block]));
    });
    this.#chain = sent;
    await sent;
    await replied;
    return s;
  }

  sendData(id: number, data: Buffer, fin: boolean): void {
    this.socket.write(Buffer.concat([frameHeader(false, id, fin ? 1 : 0, data.length), data]));
  }

  sendPing(id: number): void {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(id, 0);
    this.socket.write(Buffer.concat([frameHeader(true, 6, 0, 4), p]));
  }

  sendWindowUpdate(id: number, delta: number): void {
    const p = Buffer.alloc(8);
    p.writeUInt32BE(id, 0);
    p.writeUInt32BE(delta, 4);
    this.socket.write(Buffer.concat([frameHeader(true, 9, 0, 8), p]));
  }

  close(): void {
    this.socket.destroy();
  }

  #onData(b: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, b]);
    while (this.#buf.length >= 8) {
      const len = this.#buf.readUIntBE(5, 3);
      if (this.#buf.length < 8 + len) break;
      const head = this.#buf.subarray(0, 8);
      const payload = this.#buf.subarray(8, 8 + len);
      this.#buf = this.#buf.subarray(8 + len);
      const flags = head[4]!;
      if (head[0]! & 0x80) {
        const type = head.readUInt16BE(2);
        this.#chain = this.#chain.then(() => this.#control(type, flags, Buffer.from(payload)));
      } else {
        const id = head.readUInt32BE(0) & 0x7fffffff;
        const data = Buffer.from(payload);
        this.#chain = this.#chain.then(() => {
          const s = this.streams.get(id);
          if (!s) return;
          if (data.length > 0) { s.chunks.push(data); s.emit('data', data); }
          if (flags & 1) { s.finished = true; s.emit('done'); }
        });
      }
    }
  }

  async #inflateBlock(block: Buffer): Promise<void> {
    this.#inflate.write(block);
    await new Promise<void>((r) => this.#inflate.flush(zc.Z_SYNC_FLUSH, () => r()));
    this.#inflate.read(); // discard: the server's reply headers are empty
  }

  async #control(type: number, flags: number, p: Buffer): Promise<void> {
    switch (type) {
      case 2: { // SYN_REPLY
        const id = p.readUInt32BE(0) & 0x7fffffff;
        await this.#inflateBlock(p.subarray(4));
        this.#replies.get(id)?.resolve();
        this.#replies.delete(id);
        const s = this.streams.get(id);
        if (s && flags & 1) { s.finished = true; s.emit('done'); }
        return;
      }
      case 3: { // RST_STREAM
        const id = p.readUInt32BE(0) & 0x7fffffff;
        const s = this.streams.get(id);
        if (s) { s.reset = p.readUInt32BE(4); s.emit('done'); }
        this.#replies.get(id)?.reject(new Error(`stream ${id} reset (${p.readUInt32BE(4)})`));
        this.#replies.delete(id);
        return;
      }
      case 6: this.pings.push(p.readUInt32BE(0)); return;
      case 7: this.goAway = { last: p.readUInt32BE(0), status: p.readUInt32BE(4) }; return;
      case 9: this.windowUpdates++; return;
      default: return;
    }
  }
}
