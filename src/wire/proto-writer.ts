/**
 * Protobuf wire-format writing for proto-codec.ts: a growable byte writer (varints, fixed widths,
 * length-delimited parts written in place), and the value conversions protobuf.js's `fromObject`
 * applies before writing a scalar (Long rules for 64-bit numbers, base64 text for bytes).
 */
import type { ScalarType } from './proto-schema.ts';

const TWO_32 = 4294967296;

export class Writer {
  buf = Buffer.allocUnsafe(512);
  pos = 0;

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  varint32(v: number): void {
    this.ensure(5);
    v >>>= 0;
    while (v > 127) { this.buf[this.pos++] = (v & 127) | 128; v >>>= 7; }
    this.buf[this.pos++] = v;
  }

  varint64(lo: number, hi: number): void {
    this.ensure(10);
    while (hi !== 0) {
      this.buf[this.pos++] = (lo & 127) | 128;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    this.varint32(lo);
  }

  fixed32(v: number): void { this.ensure(4); this.buf.writeUInt32LE(v >>> 0, this.pos); this.pos += 4; }
  fixed64(lo: number, hi: number): void { this.fixed32(lo); this.fixed32(hi); }
  float(v: number): void { this.ensure(4); this.buf.writeFloatLE(v, this.pos); this.pos += 4; }
  double(v: number): void { this.ensure(8); this.buf.writeDoubleLE(v, this.pos); this.pos += 8; }

  bytes(b: Uint8Array): void {
    this.varint32(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  string(s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    this.varint32(n);
    this.ensure(n);
    this.pos += this.buf.write(s, this.pos, n, 'utf8');
  }

  /** Writes a length-delimited part: `body` writes into this writer, the length goes in front. */
  delimited(body: () => void): void {
    const start = this.pos;
    this.ensure(1);
    this.pos += 1;
    body();
    const len = this.pos - start - 1;
    const size = varintSize(len);
    if (size > 1) {
      this.ensure(size - 1);
      this.buf.copyWithin(start + size, start + 1, this.pos);
      this.pos += size - 1;
    }
    const end = this.pos;
    this.pos = start;
    this.varint32(len);
    this.pos = end;
  }
}

function varintSize(v: number): number {
  return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : v < 268435456 ? 4 : 5;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return Boolean(v) && typeof v === 'object';
}

type LongBits = [lo: number, hi: number];

/** A number as 64 bits the way long.js's `Long.fromNumber` does it (truncate, saturate, NaN → 0). */
function longFromNumber(v: number, unsigned: boolean): LongBits {
  if (Number.isNaN(v)) return [0, 0];
  if (unsigned) {
    if (v < 0) return [0, 0];
    if (v >= TWO_32 * TWO_32) return [0xffffffff, 0xffffffff];
  } else {
    if (v <= -(2 ** 63)) return [0, 0x80000000];
    if (v + 1 >= 2 ** 63) return [0xffffffff, 0x7fffffff];
  }
  const a = Math.abs(v);
  let lo = (a % TWO_32) >>> 0;
  let hi = Math.floor(a / TWO_32) >>> 0;
  if (v < 0) {
    lo = (~lo + 1) >>> 0;
    hi = (~hi + (lo === 0 ? 1 : 0)) >>> 0;
  }
  return [lo, hi];
}

function longFromBigInt(v: bigint): LongBits {
  const u = BigInt.asUintN(64, v);
  return [Number(u & 0xffffffffn), Number(u >> 32n)];
}

/** Any value protobuf.js accepts for a 64-bit field: number, decimal string, Long-like {low, high}; also bigint. */
function toLong(v: unknown, unsigned: boolean): LongBits {
  if (typeof v === 'number') return longFromNumber(v, unsigned);
  if (typeof v === 'bigint') return longFromBigInt(v);
  if (typeof v === 'string') {
    const t = v.trim();
    if (/^[+-]?\d+$/.test(t)) return longFromBigInt(BigInt(t));
    return longFromNumber(parseInt(t, 10), unsigned);
  }
  if (isObject(v)) return [Number(v.low) >>> 0, Number(v.high) >>> 0];
  return [0, 0];
}

function toBytes(v: unknown): Uint8Array | undefined {
  if (typeof v === 'string') return Buffer.from(v, 'base64');
  if (v instanceof Uint8Array) return v;
  if (Array.isArray(v) || (isObject(v) && typeof v.length === 'number' && v.length >= 0)) return Buffer.from(v as ArrayLike<number>);
  return undefined;
}

/** Writes one scalar (already known not to be null) converted as protobuf.js's fromObject does. */
export function writeScalar(w: Writer, type: ScalarType, v: unknown): void {
  switch (type) {
    case 'double': w.double(Number(v)); return;
    case 'float': w.float(Number(v)); return;
    case 'int32': {
      const n = (v as number) | 0;
      if (n < 0) w.varint64(n >>> 0, 0xffffffff); else w.varint32(n);
      return;
    }
    case 'uint32': w.varint32((v as number) >>> 0); return;
    case 'sint32': { const n = (v as number) | 0; w.varint32(((n << 1) ^ (n >> 31)) >>> 0); return; }
    case 'fixed32': w.fixed32((v as number) >>> 0); return;
    case 'sfixed32': w.fixed32((v as number) | 0); return;
    case 'int64': case 'uint64': { const [lo, hi] = toLong(v, type === 'uint64'); w.varint64(lo, hi); return; }
    case 'sint64': {
      const [lo, hi] = toLong(v, false);
      const mask = hi >> 31;
      w.varint64(((lo << 1) ^ mask) >>> 0, (((hi << 1) | (lo >>> 31)) ^ mask) >>> 0);
      return;
    }
    case 'fixed64': case 'sfixed64': { const [lo, hi] = toLong(v, type === 'fixed64'); w.fixed64(lo, hi); return; }
    case 'bool': w.varint32(v ? 1 : 0); return;
    case 'string': w.string(String(v)); return;
    case 'bytes': w.bytes(toBytes(v) ?? new Uint8Array(0)); return;
  }
}

/** An enum number as protobuf.js writes it (negative numbers as 10-byte varints). */
export function writeEnum(w: Writer, n: number): void {
  const i = n | 0;
  if (i < 0) w.varint64(i >>> 0, 0xffffffff); else w.varint32(i);
}
