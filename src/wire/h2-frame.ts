/**
 * HTTP/2 framing (RFC 9113 §4, §6) shared by the client connection (h2.ts) and the `:authority`
 * relay (authority-relay.ts): frame types, flags and error codes, writing a frame, reading frames
 * out of a byte stream with a bound on their size, collecting a header block from HEADERS +
 * CONTINUATION (padding and priority stripped, with a bound on its size), and writing a block back
 * as HEADERS + CONTINUATION frames.
 *
 * A peer that breaks a bound or sends malformed framing gets an H2ConnectionError: the caller ends
 * the connection with a GOAWAY carrying `h2Code` (RFC 9113 §5.4.1).
 */

export const FRAME_HEADER_LEN = 9;
/** SETTINGS_MAX_FRAME_SIZE's initial value: the largest frame a peer may send until told otherwise. */
export const DEFAULT_MAX_FRAME = 16384;
/** The client connection preface (RFC 9113 §3.4). */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const T_DATA = 0x0;
export const T_HEADERS = 0x1;
export const T_RST_STREAM = 0x3;
export const T_SETTINGS = 0x4;
export const T_PUSH_PROMISE = 0x5;
export const T_PING = 0x6;
export const T_GOAWAY = 0x7;
export const T_WINDOW_UPDATE = 0x8;
export const T_CONTINUATION = 0x9;

export const F_END_STREAM = 0x1;
export const F_ACK = 0x1;
export const F_END_HEADERS = 0x4;
export const F_PADDED = 0x8;
export const F_PRIORITY = 0x20;

/** HTTP/2 error codes (RFC 9113 §7) used by Bulkhead. */
export const H2_NO_ERROR = 0x0;
export const H2_PROTOCOL_ERROR = 0x1;
export const H2_INTERNAL_ERROR = 0x2;
export const H2_FRAME_SIZE_ERROR = 0x6;
export const H2_REFUSED_STREAM = 0x7;
export const H2_CANCEL = 0x8;
export const H2_COMPRESSION_ERROR = 0x9;
export const H2_ENHANCE_YOUR_CALM = 0xb;
export const H2_INADEQUATE_SECURITY = 0xc;

/** The peer broke the protocol or a bound: the connection is to be ended with GOAWAY `h2Code`. */
export class H2ConnectionError extends Error {
  readonly h2Code: number;
  constructor(h2Code: number, message: string) {
    super(message);
    this.name = 'H2ConnectionError';
    this.h2Code = h2Code;
  }
}

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
  /** The frame as it came, header included (for passing it on unchanged). */
  raw: Buffer;
}

/** One frame's bytes. */
export function encodeFrame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_LEN + payload.length);
  out.writeUIntBE(payload.length, 0, 3);
  out[3] = type;
  out[4] = flags;
  out.writeUInt32BE(stream & 0x7fffffff, 5);
  payload.copy(out, FRAME_HEADER_LEN);
  return out;
}

/** A GOAWAY frame (stream 0) with `lastStreamId`, `h2Code` and an optional short debug text. */
export function goawayFrame(lastStreamId: number, h2Code: number, debug = ''): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(lastStreamId & 0x7fffffff, 0);
  p.writeUInt32BE(h2Code >>> 0, 4);
  return encodeFrame(T_GOAWAY, 0, 0, Buffer.concat([p, Buffer.from(debug.slice(0, 200), 'latin1')]));
}

/**
 * Cuts a byte stream into frames. Holds at most one incomplete frame: a frame whose declared length
 * is past `maxFrame` is refused as soon as its 9-byte header is in (FRAME_SIZE_ERROR), before any of
 * its payload is buffered.
 */
export class FrameReader {
  #buf: Buffer = Buffer.alloc(0);
  readonly #maxFrame: number;

  constructor(maxFrame: number = DEFAULT_MAX_FRAME) {
    this.#maxFrame = maxFrame;
  }

  /** Bytes held that do not make a whole frame yet. */
  get buffered(): number { return this.#buf.length; }

  push(chunk: Buffer): void {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
  }

  /** The next whole frame, or null until more bytes come. Throws H2ConnectionError (and drops what it held) for an oversized one. */
  next(): Frame | null {
    if (this.#buf.length < FRAME_HEADER_LEN) return null;
    const len = this.#buf.readUIntBE(0, 3);
    if (len > this.#maxFrame) {
      this.#buf = Buffer.alloc(0);
      throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, `frame of ${len} bytes exceeds the maximum frame size ${this.#maxFrame}`);
    }
    if (this.#buf.length < FRAME_HEADER_LEN + len) return null;
    const raw = this.#buf.subarray(0, FRAME_HEADER_LEN + len);
    this.#buf = this.#buf.subarray(FRAME_HEADER_LEN + len);
    return { type: raw[3]!, flags: raw[4]!, stream: raw.readUInt32BE(5) & 0x7fffffff, payload: raw.subarray(FRAME_HEADER_LEN), raw };
  }

  /** Takes every byte held (a caller that stops parsing passes them on as they are). */
  drain(): Buffer {
    const b = this.#buf;
    this.#buf = Buffer.alloc(0);
    return b;
  }
}

/** A DATA or HEADERS payload without its padding (RFC 9113 §6.1). Throws PROTOCOL_ERROR for a pad length past the payload. */
export function unpad(flags: number, payload: Buffer): Buffer {
  if (!(flags & F_PADDED)) return payload;
  const pad = payload[0] ?? 0;
  if (payload.length === 0 || pad >= payload.length) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'bad padding');
  return payload.subarray(1, payload.length - pad);
}

/** A complete request or response header block. */
export interface HeaderBlock {
  stream: number;
  /** The HEADERS frame's flags (END_STREAM, PRIORITY; PADDED and END_HEADERS no longer apply). */
  flags: number;
  /** The 5 priority bytes of the HEADERS frame, or empty. */
  priority: Buffer;
  /** The HPACK bytes of the whole block. */
  block: Buffer;
}

/**
 * Collects one header block at a time from HEADERS and the CONTINUATION frames that follow it.
 * Holds at most `maxBlock` bytes of it (ENHANCE_YOUR_CALM past that).
 */
export class HeaderBlockCollector {
  #pending: { stream: number; flags: number; priority: Buffer; parts: Buffer[]; size: number } | null = null;
  readonly #maxBlock: number;

  constructor(maxBlock = Number.POSITIVE_INFINITY) {
    this.#maxBlock = maxBlock;
  }

  /** True while a block waits for its CONTINUATION frames. */
  get pending(): boolean { return this.#pending !== null; }

  /** True for a CONTINUATION frame of the block being collected. */
  continues(f: Frame): boolean {
    return f.type === T_CONTINUATION && this.#pending !== null && this.#pending.stream === f.stream;
  }

  /** Starts a block with a HEADERS frame (a block in progress is dropped); returns it when END_HEADERS is set. */
  headers(f: Frame): HeaderBlock | null {
    let p = unpad(f.flags, f.payload);
    let priority = Buffer.alloc(0);
    if (f.flags & F_PRIORITY) {
      if (p.length < 5) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'HEADERS frame too short for its priority');
      priority = Buffer.from(p.subarray(0, 5));
      p = p.subarray(5);
    }
    this.#pending = { stream: f.stream, flags: f.flags & (F_END_STREAM | F_PRIORITY), priority, parts: [], size: 0 };
    return this.#add(p, f.flags);
  }

  /** Adds a CONTINUATION frame (`continues(f)` must hold); returns the block when END_HEADERS is set. */
  continuation(f: Frame): HeaderBlock | null {
    if (!this.continues(f)) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'unexpected CONTINUATION');
    return this.#add(f.payload, f.flags);
  }

  #add(fragment: Buffer, flags: number): HeaderBlock | null {
    const p = this.#pending!;
    p.size += fragment.length;
    if (p.size > this.#maxBlock) {
      this.#pending = null;
      throw new H2ConnectionError(H2_ENHANCE_YOUR_CALM, `header block of stream ${p.stream} exceeds ${this.#maxBlock} bytes`);
    }
    // Copied: the frame's bytes belong to a reader buffer that moves on.
    p.parts.push(Buffer.from(fragment));
    if (!(flags & F_END_HEADERS)) return null;
    this.#pending = null;
    return { stream: p.stream, flags: p.flags, priority: p.priority, block: p.parts.length === 1 ? p.parts[0]! : Buffer.concat(p.parts, p.size) };
  }
}

/**
 * A header block as HEADERS (with `flags`' END_STREAM and PRIORITY, and `priority` in front) and
 * as many CONTINUATION frames as `maxFrame` needs; no padding.
 */
export function headerBlockFrames(stream: number, flags: number, priority: Buffer, block: Buffer, maxFrame: number = DEFAULT_MAX_FRAME): Buffer {
  const keep = flags & (F_END_STREAM | F_PRIORITY);
  const first = Math.min(block.length, maxFrame - priority.length);
  const frames = [encodeFrame(T_HEADERS, keep | (first === block.length ? F_END_HEADERS : 0), stream, Buffer.concat([priority, block.subarray(0, first)]))];
  for (let off = first; off < block.length; off += maxFrame) {
    const end = Math.min(off + maxFrame, block.length);
    frames.push(encodeFrame(T_CONTINUATION, end === block.length ? F_END_HEADERS : 0, stream, block.subarray(off, end)));
  }
  return frames.length === 1 ? frames[0]! : Buffer.concat(frames);
}

/** Follows a peer's frame boundaries without buffering (to know when a frame of one's own may be put in). */
export class FrameBoundary {
  #header = Buffer.alloc(FRAME_HEADER_LEN);
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
      const n = Math.min(FRAME_HEADER_LEN - this.#headerHave, chunk.length - pos);
      chunk.copy(this.#header, this.#headerHave, pos, pos + n);
      this.#headerHave += n;
      pos += n;
      if (this.#headerHave === FRAME_HEADER_LEN) {
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
