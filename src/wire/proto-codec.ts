/**
 * A proto3 encoder/decoder driven by proto-schema.ts (bytes written by proto-writer.ts, read by
 * proto-reader.ts), producing and accepting exactly the plain objects that @grpc/proto-loader does
 * with the options in src/cri/proto.ts (keepCase false, longs Number, enums String, defaults true,
 * oneofs true), so the client needs neither protobuf.js nor grpc-js.
 * src/cri/codec.test.ts proves the shapes equal protobuf.js's in both directions.
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
import { longToNumber, MAX_DEPTH, Reader } from './proto-reader.ts';
import { isObject, writeEnum, writeScalar, Writer } from './proto-writer.ts';

function wireTypeOf(t: ScalarType | MessageType | EnumType): number {
  if (typeof t !== 'string') return t.kind === 'enum' ? 0 : 2;
  switch (t) {
    case 'double': case 'fixed64': case 'sfixed64': return 1;
    case 'float': case 'fixed32': case 'sfixed32': return 5;
    case 'string': case 'bytes': return 2;
    default: return 0;
  }
}

/** protobuf.js's enum conversion: a known name or any number; otherwise undefined (not set). */
function enumNumber(e: EnumType, v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return e.values.get(v);
  return undefined;
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
