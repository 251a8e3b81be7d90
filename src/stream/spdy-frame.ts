/**
 * SPDY/3.1 framing: the frame layout, the header block format and its zlib compression with the
 * protocol's fixed dictionary. Pure functions plus two small stateful codecs (one per direction of
 * a session, because SPDY keeps one compression context per direction for the whole connection).
 */
import { createInflate, constants as zc, type Inflate } from 'node:zlib';
import { InvalidArgumentError, ResourceExhaustedError } from '../errors.ts';

export const SPDY_VERSION = 3;

/** Control frame types. */
export const FrameType = {
  SynStream: 1,
  SynReply: 2,
  RstStream: 3,
  Settings: 4,
  Ping: 6,
  GoAway: 7,
  Headers: 8,
  WindowUpdate: 9,
} as const;

export const FLAG_FIN = 0x01;
export const FLAG_UNIDIRECTIONAL = 0x02;

/** RST_STREAM status codes. */
export const RstStatus = {
  ProtocolError: 1,
  InvalidStream: 2,
  RefusedStream: 3,
  UnsupportedVersion: 4,
  Cancel: 5,
  InternalError: 6,
  FlowControlError: 7,
  StreamInUse: 8,
  StreamAlreadyClosed: 9,
  FrameTooLarge: 11,
} as const;

/** GOAWAY status codes. */
export const GoAwayStatus = { Ok: 0, ProtocolError: 1, InternalError: 2 } as const;

export const SETTINGS_INITIAL_WINDOW_SIZE = 7;
export const DEFAULT_WINDOW = 64 * 1024;
const FRAME_HEADER = 8;

/** Header names and values of one block; names are lower case, repeated values kept in order. */
export type HeaderBlock = Map<string, string[]>;

export type ControlFrame = { control: true; type: number; flags: number; payload: Buffer };
export type DataFrame = { control: false; streamId: number; flags: number; payload: Buffer };
export type Frame = ControlFrame | DataFrame;

/**
 * Takes the next whole frame off the front of `buf`. Returns null when more bytes are needed, or
 * throws InvalidArgument for a frame that can never be valid (bad version, oversized).
 */
export function parseFrame(buf: Buffer, maxPayload: number): { frame: Frame; rest: Buffer } | null {
  if (buf.length < FRAME_HEADER) return null;
  const first = buf.readUInt32BE(0);
  const flags = buf[4]!;
  const length = buf.readUIntBE(5, 3);
  if (length > maxPayload) throw new ResourceExhaustedError(`SPDY frame of ${length} bytes exceeds the limit of ${maxPayload}`);
  if (buf.length < FRAME_HEADER + length) return null;
  const payload = buf.subarray(FRAME_HEADER, FRAME_HEADER + length);
  const rest = buf.subarray(FRAME_HEADER + length);
  if (first & 0x80000000) {
    const version = (first >>> 16) & 0x7fff;
    if (version !== SPDY_VERSION) throw new InvalidArgumentError(`unsupported SPDY version ${version}`);
    return { frame: { control: true, type: first & 0xffff, flags, payload }, rest };
  }
  return { frame: { control: false, streamId: first & 0x7fffffff, flags, payload }, rest };
}

export function encodeControl(type: number, flags: number, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER + payload.length);
  out.writeUInt32BE((((0x8000 | SPDY_VERSION) << 16) | type) >>> 0, 0);
  out[4] = flags;
  out.writeUIntBE(payload.length, 5, 3);
  payload.copy(out, FRAME_HEADER);
  return out;
}

export function encodeData(streamId: number, flags: number, data: Buffer): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER + data.length);
  out.writeUInt32BE(streamId & 0x7fffffff, 0);
  out[4] = flags;
  out.writeUIntBE(data.length, 5, 3);
  data.copy(out, FRAME_HEADER);
  return out;
}

function u32pair(a: number, b: number): Buffer {
  const p = Buffer.allocUnsafe(8);
  p.writeUInt32BE(a >>> 0, 0);
  p.writeUInt32BE(b >>> 0, 4);
  return p;
}

export const encodeRst = (streamId: number, status: number): Buffer => encodeControl(FrameType.RstStream, 0, u32pair(streamId & 0x7fffffff, status));
export const encodeGoAway = (lastStreamId: number, status: number): Buffer => encodeControl(FrameType.GoAway, 0, u32pair(lastStreamId & 0x7fffffff, status));
export const encodeWindowUpdate = (streamId: number, delta: number): Buffer => encodeControl(FrameType.WindowUpdate, 0, u32pair(streamId & 0x7fffffff, delta & 0x7fffffff));
export function encodePing(id: number): Buffer {
  const p = Buffer.allocUnsafe(4);
  p.writeUInt32BE(id >>> 0, 0);
  return encodeControl(FrameType.Ping, 0, p);
}
export function encodeSettings(entries: Array<{ id: number; value: number; flags?: number }>): Buffer {
  const p = Buffer.allocUnsafe(4 + 8 * entries.length);
  p.writeUInt32BE(entries.length, 0);
  entries.forEach((e, i) => {
    p.writeUInt32BE(((e.flags ?? 0) << 24 | e.id) >>> 0, 4 + 8 * i);
    p.writeUInt32BE(e.value >>> 0, 8 + 8 * i);
  });
  return encodeControl(FrameType.Settings, 0, p);
}

/** Serialises a header block (before compression): count, then length-prefixed names and values. */
export function serializeHeaders(headers: HeaderBlock): Buffer {
  const parts: Buffer[] = [];
  const count = Buffer.allocUnsafe(4);
  count.writeUInt32BE(headers.size, 0);
  parts.push(count);
  for (const [name, values] of headers) {
    for (const s of [name.toLowerCase(), values.join('\0')]) {
      const b = Buffer.from(s, 'utf8');
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32BE(b.length, 0);
      parts.push(len, b);
    }
  }
  return Buffer.concat(parts);
}

/** Parses an uncompressed header block; throws InvalidArgument when it is malformed. */
export function parseHeaders(buf: Buffer, maxPairs = 100): HeaderBlock {
  const bad = (why: string): never => { throw new InvalidArgumentError(`malformed SPDY header block: ${why}`); };
  if (buf.length < 4) bad('too short');
  const n = buf.readUInt32BE(0);
  if (n > maxPairs) bad(`${n} headers (limit ${maxPairs})`);
  let off = 4;
  const readString = (): string => {
    if (off + 4 > buf.length) bad('truncated length');
    const len = buf.readUInt32BE(off);
    off += 4;
    if (off + len > buf.length) bad('truncated string');
    const s = buf.toString('utf8', off, off + len);
    off += len;
    return s;
  };
  const out: HeaderBlock = new Map();
  for (let i = 0; i < n; i++) {
    const name = readString();
    const value = readString();
    if (name.length === 0) bad('empty header name');
    if (name !== name.toLowerCase()) bad(`header name ${JSON.stringify(name)} is not lower case`);
    if (out.has(name)) bad(`duplicate header ${JSON.stringify(name)}`);
    out.set(name, value.split('\0'));
  }
  return out;
}

/** First value of a header, or undefined. */
export function header(h: HeaderBlock, name: string): string | undefined {
  return h.get(name.toLowerCase())?.[0];
}

// The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1): length-prefixed common
// header names and tokens, followed by a run of common values.
const DICT_WORDS = [
  'options', 'head', 'post', 'put', 'delete', 'trace', 'accept', 'accept-charset', 'accept-encoding',
  'accept-language', 'accept-ranges', 'age', 'allow', 'authorization', 'cache-control', 'connection',
  'content-base', 'content-encoding', 'content-language', 'content-length', 'content-location',
  'content-md5', 'content-range', 'content-type', 'date', 'etag', 'expect', 'expires', 'from', 'host',
  'if-match', 'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since', 'last-modified',
  'location', 'max-forwards', 'pragma', 'proxy-authenticate', 'proxy-authorization', 'range', 'referer',
  'retry-after', 'server', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'vary', 'via',
  'warning', 'www-authenticate', 'method', 'get', 'status', '200 OK', 'version', 'HTTP/1.1', 'url',
  'public', 'set-cookie', 'keep-alive', 'origin',
];
const DICT_TAIL =
  '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
  '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized' +
  '403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable' +
  'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT' +
  'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,' +
  'text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';

export const SPDY_DICTIONARY: Buffer = Buffer.concat([
  ...DICT_WORDS.map((w) => {
    const b = Buffer.alloc(4 + w.length);
    b.writeUInt32BE(w.length, 0);
    b.write(w, 4, 'latin1');
    return b;
  }),
  Buffer.from(DICT_TAIL, 'latin1'),
]);

function adler32(buf: Buffer): number {
  let a = 1;
  let b = 0;
  for (const byte of buf) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

/**
 * Compresses outgoing header blocks. The server sends few and small header blocks (SYN_REPLY
 * with no headers), so it emits them as deflate "stored" blocks inside one zlib stream that names
 * the SPDY dictionary, each block ended by a sync-flush marker: valid for every zlib reader,
 * synchronous, and it keeps the per-direction stream continuous as the protocol requires.
 */
export class HeaderEncoder {
  #started = false;

  encode(headers: HeaderBlock): Buffer {
    const raw = serializeHeaders(headers);
    const parts: Buffer[] = [];
    if (!this.#started) {
      this.#started = true;
      const zh = Buffer.alloc(6);
      zh[0] = 0x78; // deflate, 32K window
      zh[1] = 0x20; // FDICT set, FLEVEL 0; 0x7820 % 31 === 0
      zh.writeUInt32BE(adler32(SPDY_DICTIONARY), 2);
      parts.push(zh);
    }
    for (let off = 0; off === 0 || off < raw.length; off += 0xffff) {
      const chunk = raw.subarray(off, Math.min(raw.length, off + 0xffff));
      const hdr = Buffer.alloc(5);
      hdr[0] = 0x00; // BFINAL=0, BTYPE=00 (stored)
      hdr.writeUInt16LE(chunk.length, 1);
      hdr.writeUInt16LE(~chunk.length & 0xffff, 3);
      parts.push(hdr, chunk);
    }
    // End with an empty stored block, as Z_SYNC_FLUSH does: decoders such as Go's compress/flate
    // only hand out buffered output without reading ahead at such a marker, and reading ahead
    // into the next frame's bytes would break them.
    parts.push(Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff]));
    return Buffer.concat(parts);
  }
}

/**
 * Decompresses incoming header blocks with one zlib context for the whole session. Asynchronous:
 * callers must decode blocks strictly in arrival order (the session handles frames serially).
 */
export class HeaderDecoder {
  readonly #inflate: Inflate;
  readonly #maxBytes: number;
  #failed: Error | null = null;

  constructor(maxBytes = 64 * 1024) {
    this.#maxBytes = maxBytes;
    this.#inflate = createInflate({ dictionary: SPDY_DICTIONARY, maxOutputLength: maxBytes * 4 });
    this.#inflate.on('error', (e) => { this.#failed = e; });
  }

  async decode(block: Buffer): Promise<HeaderBlock> {
    if (this.#failed) throw new InvalidArgumentError('SPDY header decompression failed earlier', { cause: this.#failed });
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (b: Buffer): void => { chunks.push(b); size += b.length; };
    this.#inflate.on('data', onData);
    try {
      await new Promise<void>((resolve, reject) => {
        const onError = (e: Error): void => { reject(new InvalidArgumentError(`bad SPDY header compression: ${e.message}`, { cause: e })); };
        this.#inflate.once('error', onError);
        this.#inflate.write(block);
        this.#inflate.flush(zc.Z_SYNC_FLUSH, () => { this.#inflate.off('error', onError); resolve(); });
      });
    } finally {
      this.#inflate.off('data', onData);
    }
    if (size > this.#maxBytes) throw new ResourceExhaustedError(`SPDY header block of ${size} bytes exceeds ${this.#maxBytes}`);
    return parseHeaders(Buffer.concat(chunks));
  }

  close(): void {
    this.#inflate.destroy();
  }
}
