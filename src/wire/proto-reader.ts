/**
 * Protobuf wire-format reading for proto-codec.ts: a bounds-checked reader of varints, fixed widths
 * and length-delimited parts, and 64-bit values as JS numbers the way protobuf.js gives them.
 * Every read past the end throws RangeError; nesting deeper than MAX_DEPTH throws.
 */
import type { Field } from './proto-schema.ts';

/** Deepest nesting of messages (and groups skipped) accepted, as protobuf.js's recursion limit. */
export const MAX_DEPTH = 100;
const TWO_32 = 4294967296;

/** 64 bits as a JS number, as protobuf.js's LongBits.toNumber does. */
export function longToNumber(lo: number, hi: number, unsigned: boolean): number {
  if (!unsigned && hi >>> 31) {
    let l = (~lo + 1) >>> 0;
    let h = ~hi >>> 0;
    if (!l) h = (h + 1) >>> 0;
    return -(l + h * TWO_32);
  }
  return lo + hi * TWO_32;
}

export class Reader {
  readonly buf: Buffer;
  pos = 0;
  lo = 0;
  hi = 0;

  constructor(buf: Uint8Array) {
    this.buf = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  #byte(): number {
    if (this.pos >= this.buf.length) throw new RangeError('index out of range');
    return this.buf[this.pos++]!;
  }

  /** A varint's low 32 bits (the rest of a longer varint is skipped), as protobuf.js's uint32(). */
  varint32(): number {
    this.varint64();
    return this.lo;
  }

  /** Reads a varint of up to 10 bytes into lo/hi. */
  varint64(): void {
    let lo = 0;
    let hi = 0;
    let b = 0;
    for (let i = 0; i < 4; i++) {
      b = this.#byte();
      lo = (lo | ((b & 127) << (i * 7))) >>> 0;
      if (b < 128) { this.lo = lo; this.hi = 0; return; }
    }
    b = this.#byte();
    lo = (lo | ((b & 127) << 28)) >>> 0;
    hi = (b & 127) >> 4;
    if (b < 128) { this.lo = lo; this.hi = hi; return; }
    for (let i = 0; i < 5; i++) {
      b = this.#byte();
      hi = (hi | ((b & 127) << (i * 7 + 3))) >>> 0;
      if (b < 128) { this.lo = lo; this.hi = hi; return; }
    }
    throw new Error('invalid varint encoding');
  }

  fixed32(): number {
    if (this.pos + 4 > this.buf.length) throw new RangeError('index out of range');
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  float(): number {
    if (this.pos + 4 > this.buf.length) throw new RangeError('index out of range');
    const v = this.buf.readFloatLE(this.pos);
    this.pos += 4;
    return v;
  }

  double(): number {
    if (this.pos + 8 > this.buf.length) throw new RangeError('index out of range');
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  /** Reads a length prefix; returns where that part ends (checked against the buffer). */
  limit(): number {
    const len = this.varint32();
    const stop = this.pos + len;
    if (stop > this.buf.length) throw new RangeError('index out of range');
    return stop;
  }

  expect(got: number, want: number, f: Field): void {
    if (got !== want) throw new Error(`${f.fullName}: wire type ${got}, expected ${want}`);
  }

  skip(wt: number, depth: number): void {
    switch (wt) {
      case 0: this.varint64(); return;
      case 1: this.pos += 8; break;
      case 2: this.pos = this.limit(); return;
      case 3: {
        if (depth > MAX_DEPTH) throw new Error('maximum nesting depth exceeded');
        for (;;) {
          const t = this.varint32();
          if ((t & 7) === 4) return;
          this.skip(t & 7, depth + 1);
        }
      }
      case 5: this.pos += 4; break;
      default: throw new Error(`invalid wire type ${wt} at offset ${this.pos}`);
    }
    if (this.pos > this.buf.length) throw new RangeError('index out of range');
  }
}
