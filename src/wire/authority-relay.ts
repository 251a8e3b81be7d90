/**
 * A byte-level relay in front of the gRPC server that makes older Go gRPC clients work over the
 * unix socket. crictl/critest 1.26 (and kubelets before 1.26) send the socket path as HTTP/2
 * `:authority`; Node's HTTP/2 layer (nghttp2) rejects that value with RST_STREAM PROTOCOL_ERROR
 * before gRPC sees the call, and there is no option to relax it.
 *
 * The relay passes every byte through unchanged except the client's request header blocks, where
 * it replaces a literal `:authority` value with a short valid one. HPACK state stays in step: the
 * replacement is never longer than the original (so the server's dynamic table never evicts
 * before the client's, and indices mean the same entries on both sides), and everything else in
 * the block is copied as is (Huffman strings included; they are skipped by length, not decoded).
 * A header block is re-framed as one HEADERS frame (split with CONTINUATION when too big) without
 * padding. Anything it cannot parse is passed through untouched.
 *
 * Bounds (per connection, so one client cannot make the daemon hold memory for it): the relay keeps
 * at most one frame of the client's (a frame longer than the HTTP/2 default SETTINGS_MAX_FRAME_SIZE,
 * 16 KiB, which the gRPC server never raises, is refused) and one header block being collected (at
 * most 64 KiB of HEADERS + CONTINUATION, far above the < 1 KiB a gRPC client sends). Past either,
 * that connection gets a GOAWAY (FRAME_SIZE_ERROR / ENHANCE_YOUR_CALM) when the relay is between
 * two server frames, and is closed with what it buffered dropped; other connections go on.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../util/log.ts';

const PREFACE_LEN = 24;
const FRAME_HEADERS = 0x1;
const FRAME_CONTINUATION = 0x9;
const FLAG_END_STREAM = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
const FRAME_GOAWAY = 0x7;
const MAX_FRAME = 16384;
/** Largest header block (HEADERS + CONTINUATION payloads) the relay collects for one request. */
export const MAX_HEADER_BLOCK = 64 * 1024;
/** HTTP/2 error codes used in the relay's GOAWAY. */
const FRAME_SIZE_ERROR = 0x6;
const ENHANCE_YOUR_CALM = 0xb;

/** A client broke a bound of the relay; its connection is to be closed with `h2Code`. */
export class RelayLimitError extends Error {
  readonly h2Code: number;
  constructor(h2Code: number, message: string) { super(message); this.h2Code = h2Code; }
}

/** Reads an HPACK prefixed integer at `pos` with an N-bit prefix; returns [value, next position] or null. */
function readInt(buf: Buffer, pos: number, prefixBits: number): [number, number] | null {
  if (pos >= buf.length) return null;
  const max = (1 << prefixBits) - 1;
  let v = buf[pos]! & max;
  pos++;
  if (v < max) return [v, pos];
  let shift = 0;
  for (;;) {
    if (pos >= buf.length || shift > 28) return null;
    const b = buf[pos++]!;
    v += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) return [v, pos];
  }
}

/** Reads an HPACK string at `pos`; returns {start, end, huffman, next} or null. */
function readString(buf: Buffer, pos: number): { huffman: boolean; start: number; end: number } | null {
  if (pos >= buf.length) return null;
  const huffman = (buf[pos]! & 0x80) !== 0;
  const r = readInt(buf, pos, 7);
  if (!r) return null;
  const [len, start] = r;
  if (start + len > buf.length) return null;
  return { huffman, start, end: start + len };
}

/** Shortest decoded length a Huffman string of `n` bytes can have (codes are 5..30 bits, padding < 8). */
function minHuffmanDecoded(n: number): number {
  return n === 0 ? 0 : Math.ceil((8 * n - 7) / 30);
}

function encodeString(value: string): Buffer {
  const bytes = Buffer.from(value, 'latin1');
  if (bytes.length >= 127) throw new RangeError('replacement too long');
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

/**
 * Rewrites one complete header block: every literal `:authority` (static name index 1, or a
 * plain-text name) gets the value "localhost", or "l" when the original might be shorter than
 * that. Returns the block unchanged when it cannot be parsed.
 */
export function rewriteAuthority(block: Buffer): Buffer {
  const out: Buffer[] = [];
  let pos = 0;
  let copied = 0;
  while (pos < block.length) {
    const b = block[pos]!;
    if (b & 0x80) { // indexed field
      const r = readInt(block, pos, 7); if (!r) return block; pos = r[1]; continue;
    }
    if ((b & 0xe0) === 0x20) { // dynamic table size update
      const r = readInt(block, pos, 5); if (!r) return block; pos = r[1]; continue;
    }
    const prefix = (b & 0xc0) === 0x40 ? 6 : 4; // with incremental indexing : without / never indexed
    const r = readInt(block, pos, prefix); if (!r) return block;
    const [nameIndex, afterIndex] = r;
    let isAuthority = nameIndex === 1;
    let valuePos = afterIndex;
    if (nameIndex === 0) {
      const name = readString(block, afterIndex); if (!name) return block;
      isAuthority = !name.huffman && block.toString('latin1', name.start, name.end) === ':authority';
      valuePos = name.end;
    }
    const value = readString(block, valuePos); if (!value) return block;
    if (isAuthority) {
      const len = value.end - value.start;
      const decodedAtLeast = value.huffman ? minHuffmanDecoded(len) : len;
      const original = value.huffman ? '' : block.toString('latin1', value.start, value.end);
      const needsFix = value.huffman || /[^A-Za-z0-9._~!$&'()*+,;=:%[\]-]/.test(original);
      if (needsFix && decodedAtLeast >= 1) {
        const replacement = decodedAtLeast >= 9 ? 'localhost' : 'l';
        out.push(block.subarray(copied, valuePos), encodeString(replacement));
        copied = value.end;
      }
    }
    pos = value.end;
  }
  if (copied === 0) return block;
  out.push(block.subarray(copied));
  return Buffer.concat(out);
}

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

/** Client→server byte transformer: whole frames out, header blocks rewritten. */
export class AuthorityRewriter {
  #buf: Buffer = Buffer.alloc(0);
  #prefaceLeft = PREFACE_LEN;
  /** A header block being collected: HEADERS flags/stream/priority bytes and fragments. */
  #pending: { streamId: number; flags: number; priority: Buffer; fragments: Buffer[] } | null = null;
  #pendingBytes = 0;
  #broken = false;
  #failed = false;
  readonly #maxBlock: number;
  /** Highest stream id of a request header block passed on (for the GOAWAY's last-stream-id). */
  lastStreamId = 0;

  constructor(opts: { maxHeaderBlock?: number } = {}) {
    this.#maxBlock = opts.maxHeaderBlock ?? MAX_HEADER_BLOCK;
  }

  /**
   * Feeds client bytes; returns the bytes to send to the server now. Throws RelayLimitError (and
   * drops everything it held) when the client sends a frame or header block past the bounds;
   * after that every push throws.
   */
  push(chunk: Buffer): Buffer {
    if (this.#failed) throw new RelayLimitError(ENHANCE_YOUR_CALM, 'connection already refused');
    if (this.#broken) return chunk;
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: Buffer[] = [];
    if (this.#prefaceLeft > 0) {
      const n = Math.min(this.#prefaceLeft, this.#buf.length);
      out.push(this.#buf.subarray(0, n));
      this.#buf = this.#buf.subarray(n);
      this.#prefaceLeft -= n;
    }
    while (this.#prefaceLeft === 0 && this.#buf.length >= 9) {
      const len = this.#buf.readUIntBE(0, 3);
      if (len > MAX_FRAME) this.#fail(FRAME_SIZE_ERROR, `frame of ${len} bytes exceeds the maximum frame size ${MAX_FRAME}`);
      if (this.#buf.length < 9 + len) break;
      const type = this.#buf[3]!;
      const flags = this.#buf[4]!;
      const streamId = this.#buf.readUInt32BE(5) & 0x7fffffff;
      const payload = this.#buf.subarray(9, 9 + len);
      const whole = this.#buf.subarray(0, 9 + len);
      this.#buf = this.#buf.subarray(9 + len);
      if (type === FRAME_HEADERS) {
        let p = payload;
        let padLen = 0;
        if (flags & FLAG_PADDED) { padLen = p[0] ?? 0; p = p.subarray(1); }
        const priority = flags & FLAG_PRIORITY ? Buffer.from(p.subarray(0, 5)) : Buffer.alloc(0);
        p = p.subarray(priority.length, p.length - padLen);
        if (p.length < 0 || padLen > payload.length) { this.#broken = true; out.push(whole, this.#buf); this.#buf = Buffer.alloc(0); break; }
        this.#pending = { streamId, flags, priority, fragments: [Buffer.from(p)] };
        this.#pendingBytes = p.length;
        if (flags & FLAG_END_HEADERS) out.push(this.#flush());
      } else if (type === FRAME_CONTINUATION && this.#pending && this.#pending.streamId === streamId) {
        this.#pendingBytes += payload.length;
        if (this.#pendingBytes > this.#maxBlock) this.#fail(ENHANCE_YOUR_CALM, `header block of stream ${streamId} exceeds ${this.#maxBlock} bytes`);
        this.#pending.fragments.push(Buffer.from(payload));
        if (flags & FLAG_END_HEADERS) out.push(this.#flush());
      } else {
        out.push(whole);
      }
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  #fail(h2Code: number, message: string): never {
    this.#failed = true;
    this.#pending = null;
    this.#pendingBytes = 0;
    this.#buf = Buffer.alloc(0);
    throw new RelayLimitError(h2Code, message);
  }

  #flush(): Buffer {
    const p = this.#pending!;
    this.#pending = null;
    this.#pendingBytes = 0;
    if (p.streamId > this.lastStreamId) this.lastStreamId = p.streamId;
    const block = rewriteAuthority(Buffer.concat(p.fragments));
    const keep = (p.flags & (FLAG_END_STREAM | FLAG_PRIORITY));
    const first = Math.min(block.length, MAX_FRAME - p.priority.length);
    const frames: Buffer[] = [];
    const lastInFirst = first === block.length;
    frames.push(frame(FRAME_HEADERS, keep | (lastInFirst ? FLAG_END_HEADERS : 0), p.streamId, Buffer.concat([p.priority, block.subarray(0, first)])));
    for (let off = first; off < block.length; off += MAX_FRAME) {
      const end = Math.min(off + MAX_FRAME, block.length);
      frames.push(frame(FRAME_CONTINUATION, end === block.length ? FLAG_END_HEADERS : 0, p.streamId, block.subarray(off, end)));
    }
    return Buffer.concat(frames);
  }
}

/** Follows the server's frame boundaries without buffering (to know when a GOAWAY may be put in). */
export class FrameBoundary {
  #header = Buffer.alloc(9);
  #headerHave = 0;
  #payloadLeft = 0;

  feed(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.#payloadLeft > 0) {
        const n = Math.min(this.#payloadLeft, chunk.length - pos);
        this.#payloadLeft -= n;
        pos += n;
        continue;
      }
      const n = Math.min(9 - this.#headerHave, chunk.length - pos);
      chunk.copy(this.#header, this.#headerHave, pos, pos + n);
      this.#headerHave += n;
      pos += n;
      if (this.#headerHave === 9) {
        this.#payloadLeft = this.#header.readUIntBE(0, 3);
        this.#headerHave = 0;
      }
    }
  }

  /** True when the bytes so far end exactly after a whole frame. */
  get atBoundary(): boolean {
    return this.#headerHave === 0 && this.#payloadLeft === 0;
  }
}

/** A GOAWAY frame (stream 0) with `lastStreamId`, `h2Code` and a short debug text. */
export function goaway(lastStreamId: number, h2Code: number, debug: string): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(lastStreamId & 0x7fffffff, 0);
  p.writeUInt32BE(h2Code, 4);
  return frame(FRAME_GOAWAY, 0, 0, Buffer.concat([p, Buffer.from(debug.slice(0, 200), 'latin1')]));
}

export interface AuthorityRelay {
  /** Stops accepting and drops every relayed connection. */
  close(): Promise<void>;
}

/** Listens on `publicPath` and relays each connection to `innerPath`, fixing `:authority`. */
export async function listenAuthorityRelay(publicPath: string, innerPath: string, logger: Logger): Promise<AuthorityRelay> {
  const open = new Set<Socket>();
  const server: Server = createServer((client: Socket) => {
    const upstream = connect(innerPath);
    open.add(client);
    open.add(upstream);
    const rw = new AuthorityRewriter();
    const down = new FrameBoundary();
    let refused = false;
    client.on('data', (chunk: Buffer) => {
      if (refused) return;
      let out: Buffer;
      try {
        out = rw.push(chunk);
      } catch (err) {
        if (!(err instanceof RelayLimitError)) throw err;
        // Nothing more from the server reaches this client; a GOAWAY goes in only between frames.
        refused = true;
        logger.warn('relay: connection refused for exceeding a bound', { error: err.message });
        if (down.atBoundary) client.end(goaway(rw.lastStreamId, err.h2Code, err.message));
        else client.destroy();
        upstream.destroy();
        setTimeout(() => client.destroy(), 1000).unref();
        return;
      }
      if (out.length > 0 && !upstream.write(out)) client.pause();
    });
    upstream.on('drain', () => client.resume());
    upstream.on('data', (chunk: Buffer) => {
      if (refused) return;
      down.feed(chunk);
      if (!client.write(chunk)) upstream.pause();
    });
    client.on('drain', () => upstream.resume());
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    const close = (): void => { client.destroy(); upstream.destroy(); open.delete(client); open.delete(upstream); };
    client.on('error', close);
    upstream.on('error', (err) => { logger.debug('relay upstream error', { error: err.message }); close(); });
    client.on('close', close);
    // after a refusal the client's side ends on its own (GOAWAY written, or the timer above)
    upstream.on('close', () => { if (refused) { upstream.destroy(); open.delete(upstream); } else close(); });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(publicPath, () => { server.off('error', reject); resolve(); });
  });
  return {
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of open) s.destroy();
      open.clear();
      await closed;
    },
  };
}
