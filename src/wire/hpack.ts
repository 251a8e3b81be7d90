/**
 * HPACK (RFC 7541) for the client side of wire/h2.ts: an encoder that never touches the dynamic
 * table (every request header is a literal "without indexing", or a static-table index), and a full
 * decoder (static and dynamic table, table size updates, Huffman-coded strings) for what the server
 * sends. Header names and values are byte strings; they are handled as latin1 JS strings.
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
      if (len > 30) throw new Error('HPACK: invalid Huffman code');
      const idx = code - t.first[len]!;
      if (t.count[len]! > 0 && idx >= 0 && idx < t.count[len]!) {
        const sym = t.symbols[t.offset[len]! + idx]!;
        if (sym === EOS) throw new Error('HPACK: EOS in a Huffman string');
        out.push(sym);
        code = 0;
        len = 0;
        allOnes = true;
      }
    }
  }
  if (len > 7 || !allOnes) throw new Error('HPACK: bad Huffman padding');
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
    let pos = 0;
    const int = (prefixBits: number): number => {
      if (pos >= block.length) throw new Error('HPACK: truncated integer');
      const max = (1 << prefixBits) - 1;
      let v = block[pos++]! & max;
      if (v < max) return v;
      let m = 1;
      for (;;) {
        if (pos >= block.length) throw new Error('HPACK: truncated integer');
        const b = block[pos++]!;
        v += (b & 127) * m;
        m *= 128;
        if (v > 2 ** 31) throw new Error('HPACK: integer too large');
        if ((b & 128) === 0) return v;
      }
    };
    const str = (): string => {
      if (pos >= block.length) throw new Error('HPACK: truncated string');
      const huffman = (block[pos]! & 0x80) !== 0;
      const len = int(7);
      if (pos + len > block.length) throw new Error('HPACK: truncated string');
      const bytes = block.subarray(pos, pos + len);
      pos += len;
      return huffman ? huffmanDecode(bytes) : Buffer.from(bytes).toString('latin1');
    };
    const entry = (index: number): readonly [string, string] => {
      if (index >= 1 && index <= STATIC.length) return STATIC[index - 1]!;
      const e = this.#table[index - STATIC.length - 1];
      if (index === 0 || !e) throw new Error(`HPACK: bad index ${index}`);
      return e;
    };
    while (pos < block.length) {
      const b = block[pos]!;
      if (b & 0x80) {
        const [n, v] = entry(int(7));
        out.push([n, v]);
      } else if (b & 0x40) {
        const idx = int(6);
        const name = idx === 0 ? str() : entry(idx)[0];
        const value = str();
        out.push([name, value]);
        this.#add(name, value);
      } else if (b & 0x20) {
        const size = int(5);
        if (size > this.#limit) throw new Error(`HPACK: table size ${size} above ${this.#limit}`);
        this.#maxSize = size;
        this.#evict();
      } else {
        const idx = int(4);
        const name = idx === 0 ? str() : entry(idx)[0];
        out.push([name, str()]);
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
