/**
 * Tolerant end of a layer's tar stream. Some image builders (umoci among them) write layers that
 * stop right after the last entry's data: no padding of that data to a 512-byte block and no
 * two zero blocks at the end. containerd and Docker accept such layers; the tar parser we use
 * (tar-stream) rejects a stream whose last block is incomplete ("Unexpected end of data").
 *
 * TarEnd sits between the diffID hasher and the tar parser. It follows the tar framing (headers,
 * long-name and pax headers, entry data, padding) with the same rules as the parser, passes every
 * byte through unchanged, and at the end of the stream:
 *  - ends cleanly at a header boundary (with or without end-of-archive blocks): nothing to do;
 *  - ends inside the padding after an entry's complete data: adds the missing zero bytes;
 *  - ends inside a zero (end-of-archive) block: completes it with zeros;
 *  - ends inside an entry's data or inside a header: fails, naming the entry (a truncated entry
 *    is never completed with zeros).
 * The added bytes are not hashed (the hasher is before this), so the diffID is still the
 * digest of exactly what the image's author published.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { InvalidArgumentError } from '../../errors.ts';

const BLOCK = 512;

/** Size field (12 bytes at 124): octal text, or base-256 when the first byte has its high bit set. */
function headerSize(h: Buffer): number | undefined {
  const f = h.subarray(124, 136);
  if ((f[0]! & 0x80) !== 0) {
    if (f[0] !== 0x80) return undefined; // negative
    let n = 0;
    for (let i = 1; i < f.length; i++) n = n * 256 + f[i]!;
    return Number.isSafeInteger(n) ? n : undefined;
  }
  const s = f.toString('latin1').replace(/\0.*$/s, '').trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) return undefined;
  return parseInt(s, 8);
}

function cString(b: Buffer): string {
  const z = b.indexOf(0);
  return b.subarray(0, z < 0 ? b.length : z).toString('utf8');
}

/** Pax records "len key=value\n"; only the ones that change framing matter here. */
function paxRecords(b: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let rest = b;
  while (rest.length > 0) {
    const sp = rest.indexOf(0x20);
    if (sp <= 0) break;
    const len = parseInt(rest.subarray(0, sp).toString('latin1'), 10);
    if (!(len > sp + 1) || len > rest.length) break;
    const rec = rest.subarray(sp + 1, len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq < 0) break;
    out.set(rec.slice(0, eq), rec.slice(eq + 1));
    rest = rest.subarray(len);
  }
  return out;
}

/** Long headers: their data belongs to the next entry's header (tar-stream keeps at most 4 MiB). */
const LONG_TYPES = new Set(['x', 'g', 'K', 'L', 'N']);
const MAX_LONG = 4 * 1024 * 1024;

export class TarEnd extends Transform {
  private readonly layer: string;
  /** Bytes of the current header block gathered so far. */
  private header = Buffer.alloc(BLOCK);
  private headerFill = 0;
  /** Data bytes of the current entry still to come, then its padding. */
  private dataLeft = 0;
  private padLeft = 0;
  private entryName = '';
  /** Long header data being gathered (pax 'x'/'g' records), or undefined when skipped. */
  private long: Buffer[] | undefined;
  private longType = '';
  private pax: Map<string, string> | undefined;
  private paxGlobal: Map<string, string> | undefined;
  /** Zero bytes added at the end (0 when the stream was complete). */
  added = 0;

  constructor(layer: string) {
    super({ highWaterMark: 1024 * 1024 });
    this.layer = layer;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.dataLeft > 0) {
        const n = Math.min(this.dataLeft, chunk.length - off);
        if (this.long) this.long.push(chunk.subarray(off, off + n));
        this.dataLeft -= n;
        off += n;
        if (this.dataLeft === 0) this.endLongData();
        continue;
      }
      if (this.padLeft > 0) {
        const n = Math.min(this.padLeft, chunk.length - off);
        this.padLeft -= n;
        off += n;
        continue;
      }
      const n = Math.min(BLOCK - this.headerFill, chunk.length - off);
      chunk.copy(this.header, this.headerFill, off, off + n);
      this.headerFill += n;
      off += n;
      if (this.headerFill === BLOCK) {
        this.headerFill = 0;
        this.onHeader(this.header);
      }
    }
    cb(null, chunk);
  }

  private onHeader(h: Buffer): void {
    if (h.every((b) => b === 0)) return; // end-of-archive block (the parser skips it and reads on)
    const flag = h[156] === 0 ? '0' : String.fromCharCode(h[156]!);
    const field = cString(h.subarray(0, 100));
    const prefix = h.subarray(257, 263).toString('latin1') === 'ustar\0' ? cString(h.subarray(345, 500)) : '';
    const name = prefix !== '' ? `${prefix}/${field}` : field;
    // A size the parser cannot read makes it fail on this header; framing stops mattering.
    let size = headerSize(h) ?? 0;
    if (LONG_TYPES.has(flag)) {
      this.longType = flag;
      this.long = (flag === 'x' || flag === 'g') && size <= MAX_LONG ? [] : undefined;
      this.entryName = `${name} (${flag === 'x' || flag === 'g' ? 'pax' : 'long name'} header)`;
      this.startData(size);
      return;
    }
    // The parser gives a pending pax header's size (merged over the global one) to this entry.
    if (this.pax) {
      const merged = new Map([...(this.paxGlobal ?? []), ...this.pax]);
      const s = merged.get('size');
      if (s !== undefined && s !== '') size = parseInt(s, 10) || 0;
      const p = merged.get('path');
      this.entryName = p !== undefined && p !== '' ? p : name;
      this.pax = undefined;
    } else {
      this.entryName = name;
    }
    // Directories carry no data for the parser (old tars mark them with a trailing slash on a file).
    const dir = flag === '5' || (flag === '0' && name.endsWith('/'));
    if (dir || size <= 0) return;
    this.startData(size);
  }

  private startData(size: number): void {
    this.dataLeft = size;
    this.padLeft = (BLOCK - (size % BLOCK)) % BLOCK;
    if (size === 0) this.endLongData();
  }

  private endLongData(): void {
    if (!this.long) return;
    const recs = paxRecords(Buffer.concat(this.long));
    if (this.longType === 'x') this.pax = recs;
    else this.paxGlobal = recs;
    this.long = undefined;
  }

  override _flush(cb: TransformCallback): void {
    if (this.dataLeft > 0) {
      cb(new InvalidArgumentError(`layer ${this.layer}: the tar stream ends inside entry "${this.entryName.slice(0, 300)}": ${this.dataLeft} bytes of its data are missing (truncated layer)`));
      return;
    }
    if (this.headerFill > 0) {
      if (!this.header.subarray(0, this.headerFill).every((b) => b === 0)) {
        cb(new InvalidArgumentError(`layer ${this.layer}: the tar stream ends inside an entry header (truncated layer)`));
        return;
      }
      this.padLeft = BLOCK - this.headerFill; // a cut end-of-archive block
    }
    if (this.padLeft > 0) {
      this.added = this.padLeft;
      this.push(Buffer.alloc(this.padLeft));
    }
    cb();
  }
}
