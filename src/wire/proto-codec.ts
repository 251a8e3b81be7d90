/**
 * A proto3 encoder/decoder driven by schema.ts, producing and accepting exactly the plain objects
 * that @grpc/proto-loader does with the options in src/cri/proto.ts (keepCase false, longs Number,
 * enums String, defaults true, oneofs true), so the client needs neither protobuf.js nor grpc-js.
 * codec.test.ts proves the shapes equal protobuf.js's in both directions.
 *
 * Decoding (protobuf.js `toObject`): every field present in the result; unset scalars are their zero
 * value, unset enums the name of their first value, unset messages null, unset repeated fields [],
 * unset maps {}; int64 becomes a number; bytes a Buffer; an enum number without a name stays a
 * number; an unset oneof member is absent, a set one is there along with `<oneof>: '<member>'`.
 *
 * Encoding (protobuf.js `fromObject` then `encode`): null and undefined fields are not sent, every
 * other value is converted as protobuf.js converts it (String(), Boolean(), `|0`, `>>>0`, Long
 * rules for 64-bit numbers, base64 text for bytes, enum names or numbers); a wrong kind of value
 * for a message, repeated or map field throws TypeError with protobuf.js's message. Repeated
 * numbers are written packed (proto3); decoding accepts packed and unpacked.
 */
import type { EnumType, Field, MessageType, ScalarType, Schema } from './proto-schema.ts';

const MAX_DEPTH = 100;
const TWO_32 = 4294967296;

// ---- encoding ----

class Writer {
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

function isObject(v: unknown): v is Record<string, unknown> {
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

function wireTypeOf(t: ScalarType | MessageType | EnumType): number {
  if (typeof t !== 'string') return t.kind === 'enum' ? 0 : 2;
  switch (t) {
    case 'double': case 'fixed64': case 'sfixed64': return 1;
    case 'float': case 'fixed32': case 'sfixed32': return 5;
    case 'string': case 'bytes': return 2;
    default: return 0;
  }
}

/** Writes one scalar (already known not to be null) converted as protobuf.js's fromObject does. */
function writeScalar(w: Writer, type: ScalarType, v: unknown): void {
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

/** protobuf.js's enum conversion: a known name or any number; otherwise undefined (not set). */
function enumNumber(e: EnumType, v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return e.values.get(v);
  return undefined;
}

function writeEnum(w: Writer, n: number): void {
  const i = n | 0;
  if (i < 0) w.varint64(i >>> 0, 0xffffffff); else w.varint32(i);
}

function packable(t: ScalarType | MessageType | EnumType): boolean {
  return typeof t === 'string' ? t !== 'string' && t !== 'bytes' : t.kind === 'enum';
}

export class Codec {
  readonly schema: Schema;

  constructor(schema: Schema) {
    this.schema = schema;
  }

  /** The wire bytes of `obj` as a `type` message. Throws TypeError for values protobuf.js refuses. */
  encode(type: MessageType, obj: unknown): Buffer {
    const w = new Writer();
    if (!isObject(obj) && this.schema.fieldsOf(type).length > 0) throw new TypeError(`${type.fullName}: object expected`);
    this.#writeMessage(w, type, isObject(obj) ? obj : {}, 0);
    return w.buf.subarray(0, w.pos);
  }

  /** The plain object of a `type` message, in proto-loader's shape. Throws RangeError/Error on bad input. */
  decode(type: MessageType, buf: Uint8Array): Record<string, unknown> {
    const r = new Reader(buf);
    return this.#readMessage(r, type, buf.length, 0);
  }

  #writeMessage(w: Writer, type: MessageType, obj: Record<string, unknown>, depth: number): void {
    if (depth > MAX_DEPTH) throw new Error('maximum nesting depth exceeded');
    for (const f of this.schema.fieldsOf(type)) {
      const v = obj[f.name];
      if (f.keyType) this.#writeMap(w, f, f.keyType, v, depth);
      else if (f.repeated) this.#writeRepeated(w, f, v, depth);
      else this.#writeSingle(w, f, v, depth);
    }
  }

  #writeSingle(w: Writer, f: Field, v: unknown, depth: number): void {
    const t = f.type;
    if (typeof t !== 'string' && t.kind === 'enum') {
      const n = enumNumber(t, v);
      if (n === undefined) return;
      w.varint32((f.id << 3) | 0);
      writeEnum(w, n);
      return;
    }
    if (v === null || v === undefined) return;
    if (typeof t === 'string') {
      w.varint32((f.id << 3) | wireTypeOf(t));
      writeScalar(w, t, v);
      return;
    }
    if (!isObject(v)) throw new TypeError(`${f.fullName}: object expected`);
    w.varint32((f.id << 3) | 2);
    w.delimited(() => this.#writeMessage(w, t, v, depth + 1));
  }

  #writeRepeated(w: Writer, f: Field, v: unknown, depth: number): void {
    if (!v) return;
    if (!Array.isArray(v)) throw new TypeError(`${f.fullName}: array expected`);
    if (v.length === 0) return;
    const t = f.type;
    if (typeof t !== 'string' && t.kind === 'message') {
      for (const item of v) if (!isObject(item)) throw new TypeError(`${f.fullName}: object expected`);
      for (const item of v as Record<string, unknown>[]) {
        w.varint32((f.id << 3) | 2);
        w.delimited(() => this.#writeMessage(w, t, item, depth + 1));
      }
      return;
    }
    if (!packable(t)) {
      for (const item of v) { w.varint32((f.id << 3) | 2); writeScalar(w, t as ScalarType, item); }
      return;
    }
    w.varint32((f.id << 3) | 2);
    w.delimited(() => {
      for (const item of v) {
        // An unknown enum value in a list becomes the default, so the list keeps its length.
        if (typeof t === 'string') writeScalar(w, t, item); else writeEnum(w, enumNumber(t as EnumType, item) ?? (t as EnumType).defaultValue);
      }
    });
  }

  #writeMap(w: Writer, f: Field, keyType: ScalarType, v: unknown, depth: number): void {
    if (!v) return;
    if (!isObject(v)) throw new TypeError(`${f.fullName}: object expected`);
    const t = f.type;
    for (const k of Object.keys(v)) {
      const val = v[k];
      let writeValue: () => void;
      if (typeof t === 'string') {
        writeValue = () => { w.varint32((2 << 3) | wireTypeOf(t)); writeScalar(w, t, val); };
      } else if (t.kind === 'enum') {
        const n = enumNumber(t, val);
        if (n === undefined) continue;
        writeValue = () => { w.varint32(2 << 3); writeEnum(w, n); };
      } else {
        if (!isObject(val)) throw new TypeError(`${f.fullName}: object expected`);
        writeValue = () => { w.varint32((2 << 3) | 2); w.delimited(() => this.#writeMessage(w, t, val, depth + 1)); };
      }
      w.varint32((f.id << 3) | 2);
      w.delimited(() => {
        w.varint32((1 << 3) | wireTypeOf(keyType));
        writeScalar(w, keyType, keyType === 'bool' ? k === 'true' : k);
        writeValue();
      });
    }
  }

  // ---- decoding ----

  #readMessage(r: Reader, type: MessageType, end: number, depth: number): Record<string, unknown> {
    if (depth > MAX_DEPTH) throw new Error('maximum nesting depth exceeded');
    const fields = this.schema.fieldsOf(type);
    const byId = type.byId!;
    const vals = new Map<Field, unknown>();
    while (r.pos < end) {
      const tag = r.varint32();
      const id = tag >>> 3;
      const wt = tag & 7;
      const f = byId.get(id);
      if (!f) { r.skip(wt, depth); continue; }
      if (f.keyType) {
        let m = vals.get(f) as Record<string, unknown> | undefined;
        if (!m) { m = {}; vals.set(f, m); }
        this.#readMapEntry(r, f, f.keyType, m, depth);
      } else if (f.repeated) {
        let list = vals.get(f) as unknown[] | undefined;
        if (!list) { list = []; vals.set(f, list); }
        if (wt === 2 && packable(f.type)) {
          const stop = r.limit();
          while (r.pos < stop) list.push(this.#readValue(r, f.type, depth));
          if (r.pos !== stop) throw new RangeError('index out of range');
        } else {
          r.expect(wt, wireTypeOf(f.type), f);
          list.push(this.#readValue(r, f.type, depth));
        }
      } else {
        r.expect(wt, wireTypeOf(f.type), f);
        vals.set(f, this.#readValue(r, f.type, depth));
      }
    }
    if (r.pos !== end) throw new RangeError('index out of range');

    // Keys in protobuf.js's order: defaults of lists, maps, then other fields; then values by number.
    const d: Record<string, unknown> = {};
    for (const f of fields) if (f.repeated && !f.oneof) d[f.name] = [];
    for (const f of fields) if (f.keyType && !f.oneof) d[f.name] = {};
    for (const f of fields) if (!f.repeated && !f.keyType && !f.oneof) d[f.name] = this.#default(f.type);
    for (const f of fields) {
      const v = vals.get(f);
      if (v === undefined) continue;
      if (f.keyType) { if (Object.keys(v as object).length > 0) d[f.name] = v; continue; }
      if (f.repeated) { if ((v as unknown[]).length > 0) d[f.name] = v; continue; }
      d[f.name] = v;
      if (f.oneof) d[f.oneof] = f.name;
    }
    return d;
  }

  #default(t: ScalarType | MessageType | EnumType): unknown {
    if (typeof t !== 'string') return t.kind === 'enum' ? (t.names.get(t.defaultValue) ?? t.defaultValue) : null;
    switch (t) {
      case 'string': return '';
      case 'bool': return false;
      case 'bytes': return Buffer.alloc(0);
      default: return 0;
    }
  }

  #readValue(r: Reader, t: ScalarType | MessageType | EnumType, depth: number): unknown {
    if (typeof t !== 'string') {
      if (t.kind === 'enum') { const n = r.varint32() | 0; return t.names.get(n) ?? n; }
      const stop = r.limit();
      const m = this.#readMessage(r, t, stop, depth + 1);
      return m;
    }
    switch (t) {
      case 'double': return r.double();
      case 'float': return r.float();
      case 'int32': return r.varint32() | 0;
      case 'uint32': return r.varint32();
      case 'sint32': { const n = r.varint32(); return ((n >>> 1) ^ -(n & 1)) | 0; }
      case 'fixed32': return r.fixed32();
      case 'sfixed32': return r.fixed32() | 0;
      case 'int64': r.varint64(); return longToNumber(r.lo, r.hi, false);
      case 'uint64': r.varint64(); return longToNumber(r.lo, r.hi, true);
      case 'sint64': {
        r.varint64();
        const mask = -(r.lo & 1);
        const lo = (((r.lo >>> 1) | (r.hi << 31)) ^ mask) >>> 0;
        const hi = ((r.hi >>> 1) ^ mask) >>> 0;
        return longToNumber(lo, hi, false);
      }
      case 'fixed64': case 'sfixed64': { const lo = r.fixed32(); const hi = r.fixed32(); return longToNumber(lo, hi, t === 'fixed64'); }
      case 'bool': return r.varint32() !== 0;
      case 'string': { const stop = r.limit(); const s = r.buf.toString('utf8', r.pos, stop); r.pos = stop; return s; }
      case 'bytes': { const stop = r.limit(); const b = Buffer.from(r.buf.subarray(r.pos, stop)); r.pos = stop; return b; }
    }
  }

  #readMapEntry(r: Reader, f: Field, keyType: ScalarType, into: Record<string, unknown>, depth: number): void {
    const stop = r.limit();
    const t = f.type;
    let key: unknown = this.#default(keyType);
    let value: unknown;
    while (r.pos < stop) {
      const tag = r.varint32();
      if (tag >>> 3 === 1) { r.expect(tag & 7, wireTypeOf(keyType), f); key = this.#readValue(r, keyType, depth); } else if (tag >>> 3 === 2) { r.expect(tag & 7, wireTypeOf(t), f); value = this.#readValue(r, t, depth); } else r.skip(tag & 7, depth);
    }
    if (r.pos !== stop) throw new RangeError('index out of range');
    if (value === undefined) value = typeof t !== 'string' && t.kind === 'message' ? this.#readMessage(new Reader(new Uint8Array(0)), t, 0, depth + 1) : this.#default(t);
    const k = String(key);
    if (k === '__proto__') Object.defineProperty(into, k, { value, enumerable: true, writable: true, configurable: true });
    else into[k] = value;
  }
}

/** 64 bits as a JS number, as protobuf.js's LongBits.toNumber does. */
function longToNumber(lo: number, hi: number, unsigned: boolean): number {
  if (!unsigned && hi >>> 31) {
    let l = (~lo + 1) >>> 0;
    let h = ~hi >>> 0;
    if (!l) h = (h + 1) >>> 0;
    return -(l + h * TWO_32);
  }
  return lo + hi * TWO_32;
}

class Reader {
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
