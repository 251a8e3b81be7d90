/**
 * HPACK (RFC 7541) for wire/h2.ts and wire/authority-relay.ts: an encoder that never touches the
 * dynamic table (every request header is a literal "without indexing", or a static-table index), a
 * walker that locates a block's representations without decoding them (the relay rewrites one value
 * in place with it), and a full decoder on top of the walker (static and dynamic table, table size
 * updates, Huffman-coded strings) for what a server sends. Header names and values are byte strings; they are handled as latin1 JS strings.
 */

/** The static table (RFC 7541 Appendix A); index 1 is the first entry. */
const STATIC: readonly (readonly [string, string])[] = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''], ['etag', ''],
  ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''],
  ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
  ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
  ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''],
  ['www-authenticate', ''],
];

const staticFull = new Map<string, number>();
const staticName = new Map<string, number>();
STATIC.forEach(([n, v], i) => {
  if (v !== '') staticFull.set(`${n}\0${v}`, i + 1);
  if (!staticName.has(n)) staticName.set(n, i + 1);
});

/**
 * The Huffman code's lengths in bits for symbols 0..256 (256 is EOS), one letter each: A = 5 bits
 * ... Z = 30 bits (RFC 7541 Appendix B). The code is canonical: codes are handed out in order of
 * (length, symbol), so the lengths determine every code.
 */
const HUFFMAN_LENGTHS =
  'ISXXXXXXXTZXXZXXXXXXXXZXXXXXXXXXBFFHIBDGFFDGDBBBAAABBBBBBBCDKBHFIBCCCCCCCCCCCCCCCCCCCCCCDCDIOIJBKABABABBBACCBBBABCBAABCCCCCKGJIXPRPPRRRSRSSSSSTSTTRSTSSSSQRSRSSTRQPRRSSQSRRTQRSSQQRQSRSSPRRRSRRSVVPORSRUVVVWWVTUOQVWWVWTQQVVXWWWPTPQRQQSRRUUTTVSVWVVWWWWWXWWWWWVZ';

const EOS = 256;

interface Canonical {
  /** Per bit length: the first code of that length, how many codes have it, where they start in `symbols`. */
  first: number[];
  count: number[];
  offset: number[];
  /** Symbols ordered by (length, symbol). */
  symbols: number[];
}

let canonical: Canonical | undefined;

function huffmanTable(): Canonical {
  if (canonical) return canonical;
  const lens = [...HUFFMAN_LENGTHS].map((c) => c.charCodeAt(0) - 65 + 5);
  const symbols = lens.map((_, s) => s).sort((a, b) => lens[a]! - lens[b]! || a - b);
  const first: number[] = new Array<number>(31).fill(0);
  const count: number[] = new Array<number>(31).fill(0);
  const offset: number[] = new Array<number>(31).fill(0);
  let code = 0;
  let prevLen = lens[symbols[0]!]!;
  symbols.forEach((s, i) => {
    const len = lens[s]!;
    if (i > 0) code = (code + 1) * 2 ** (len - prevLen);
    if (count[len] === 0) { first[len] = code; offset[len] = i; }
    count[len]!++;
    prevLen = len;
  });
  canonical = { first, count, offset, symbols };
  return canonical;
}

/** The Huffman code of one symbol as [code, bits] (for tests). */
export function huffmanCode(symbol: number): [number, number] {
  const t = huffmanTable();
  const i = t.symbols.indexOf(symbol);
  const len = HUFFMAN_LENGTHS.charCodeAt(symbol) - 65 + 5;
  return [t.first[len]! + (i - t.offset[len]!), len];
}

/** Decodes a Huffman-coded string (bytes as latin1). Throws on EOS inside, bad padding or a bad code. */
export function huffmanDecode(buf: Uint8Array): string {
  const t = huffmanTable();
  const out: number[] = [];
  let code = 0;
  let len = 0;
  let allOnes = true;
  for (const byte of buf) {
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >> bit) & 1;
      code = code * 2 + b;
      len++;
      allOnes &&= b === 1;
      if (len > 30) throw new HpackError('invalid Huffman code');
      const idx = code - t.first[len]!;
      if (t.count[len]! > 0 && idx >= 0 && idx < t.count[len]!) {
        const sym = t.symbols[t.offset[len]! + idx]!;
        if (sym === EOS) throw new HpackError('EOS in a Huffman string');
        out.push(sym);
        code = 0;
        len = 0;
        allOnes = true;
      }
    }
  }
  if (len > 7 || !allOnes) throw new HpackError('bad Huffman padding');
  return Buffer.from(out).toString('latin1');
}

function encodeInt(out: number[], prefixBits: number, flags: number, value: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) { out.push(flags | value); return; }
  out.push(flags | max);
  value -= max;
  while (value >= 128) { out.push((value % 128) | 128); value = Math.floor(value / 128); }
  out.push(value);
}

function encodeString(out: number[], s: string): void {
  const b = Buffer.from(s, 'latin1');
  encodeInt(out, 7, 0, b.length);
  for (const x of b) out.push(x);
}

/** A header block for `headers` (names lower-case), without touching the dynamic table. */
export function encodeHeaders(headers: readonly (readonly [string, string])[]): Buffer {
  const out: number[] = [];
  for (const [name, value] of headers) {
    const full = staticFull.get(`${name}\0${value}`);
    if (full !== undefined) { encodeInt(out, 7, 0x80, full); continue; }
    const idx = staticName.get(name);
    if (idx !== undefined) {
      encodeInt(out, 4, 0x00, idx);
    } else {
      out.push(0x00);
      encodeString(out, name);
    }
    encodeString(out, value);
  }
  return Buffer.from(out);
}

/** Where a string literal lies in a header block: its representation starts at `at` (H bit and length), its bytes are [start, end). */
export interface HpackString {
  at: number;
  start: number;
  end: number;
  huffman: boolean;
}

/** One representation in a header block (RFC 7541 §6), strings located but not decoded. */
export type HpackField =
  | { kind: 'indexed'; index: number }
  | { kind: 'size-update'; size: number }
  | {
    kind: 'literal';
    /** With incremental indexing: the field goes into the dynamic table. */
    indexed: boolean;
    /** A table index for the name, or 0 when the name is the literal `name`. */
    nameIndex: number;
    name: HpackString | null;
    value: HpackString;
  };

/** HPACK could not parse a header block (COMPRESSION_ERROR for the connection). */
export class HpackError extends Error {
  constructor(message: string) {
    super(`HPACK: ${message}`);
    this.name = 'HpackError';
  }
}

/**
 * The representations of one header block in order, without decoding a string or touching a table
 * (the decoder below and the `:authority` relay both walk blocks with it). Throws HpackError on a
 * truncated block or an integer past 2^31.
 */
export function* walkHeaderBlock(block: Uint8Array): Generator<HpackField> {
  let pos = 0;
  const int = (prefixBits: number): number => {
    if (pos >= block.length) throw new HpackError('truncated integer');
    const max = (1 << prefixBits) - 1;
    let v = block[pos++]! & max;
    if (v < max) return v;
    let m = 1;
    for (;;) {
      if (pos >= block.length) throw new HpackError('truncated integer');
      const b = block[pos++]!;
      v += (b & 127) * m;
      m *= 128;
      if (v > 2 ** 31) throw new HpackError('integer too large');
      if ((b & 128) === 0) return v;
    }
  };
  const str = (): HpackString => {
    if (pos >= block.length) throw new HpackError('truncated string');
    const at = pos;
    const huffman = (block[pos]! & 0x80) !== 0;
    const len = int(7);
    if (pos + len > block.length) throw new HpackError('truncated string');
    const s = { at, start: pos, end: pos + len, huffman };
    pos += len;
    return s;
  };
  while (pos < block.length) {
    const b = block[pos]!;
    if (b & 0x80) {
      yield { kind: 'indexed', index: int(7) };
    } else if ((b & 0xe0) === 0x20) {
      yield { kind: 'size-update', size: int(5) };
    } else {
      const indexed = (b & 0x40) !== 0; // else without indexing (0000) or never indexed (0001)
      const nameIndex = int(indexed ? 6 : 4);
      const name = nameIndex === 0 ? str() : null;
      yield { kind: 'literal', indexed, nameIndex, name, value: str() };
    }
  }
}

/** The text of a located string (Huffman decoded), as latin1. */
export function hpackString(block: Uint8Array, s: HpackString): string {
  const bytes = block.subarray(s.start, s.end);
  return s.huffman ? huffmanDecode(bytes) : Buffer.from(bytes).toString('latin1');
}

/** A string literal without Huffman coding (RFC 7541 §5.2). */
export function encodeStringLiteral(s: string): Buffer {
  const out: number[] = [];
  encodeString(out, s);
  return Buffer.from(out);
}

/** The decoder's state: the dynamic table, which must see every header block of the connection in order. */
export class HpackDecoder {
  /** Newest first. */
  #table: [string, string][] = [];
  #size = 0;
  #maxSize: number;
  readonly #limit: number;

  /** `limit`: the SETTINGS_HEADER_TABLE_SIZE this side advertised (4096 by default). */
  constructor(limit = 4096) {
    this.#limit = limit;
    this.#maxSize = limit;
  }

  /** The header list of one complete header block, in order. Throws on malformed input. */
  decode(block: Uint8Array): [string, string][] {
    const out: [string, string][] = [];
    const entry = (index: number): readonly [string, string] => {
      if (index >= 1 && index <= STATIC.length) return STATIC[index - 1]!;
      const e = this.#table[index - STATIC.length - 1];
      if (index === 0 || !e) throw new HpackError(`bad index ${index}`);
      return e;
    };
    for (const f of walkHeaderBlock(block)) {
      if (f.kind === 'indexed') {
        const [n, v] = entry(f.index);
        out.push([n, v]);
      } else if (f.kind === 'size-update') {
        if (f.size > this.#limit) throw new HpackError(`table size ${f.size} above ${this.#limit}`);
        this.#maxSize = f.size;
        this.#evict();
      } else {
        const name = f.name ? hpackString(block, f.name) : entry(f.nameIndex)[0];
        const value = hpackString(block, f.value);
        out.push([name, value]);
        if (f.indexed) this.#add(name, value);
      }
    }
    return out;
  }

  #add(name: string, value: string): void {
    const size = name.length + value.length + 32;
    if (size > this.#maxSize) { this.#table = []; this.#size = 0; return; }
    this.#table.unshift([name, value]);
    this.#size += size;
    this.#evict();
  }

  #evict(): void {
    while (this.#size > this.#maxSize) {
      const [n, v] = this.#table.pop()!;
      this.#size -= n.length + v.length + 32;
    }
  }
}
