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
import {
  DEFAULT_MAX_FRAME, FrameBoundary, FrameReader, goawayFrame, H2_ENHANCE_YOUR_CALM, H2_PROTOCOL_ERROR, H2ConnectionError,
  HeaderBlockCollector, headerBlockFrames, PREFACE, T_HEADERS, type HeaderBlock,
} from './h2-frame.ts';
import { encodeStringLiteral, HpackError, walkHeaderBlock } from './hpack.ts';

/** Largest header block (HEADERS + CONTINUATION payloads) the relay collects for one request. */
export const MAX_HEADER_BLOCK = 64 * 1024;

/** Shortest decoded length a Huffman string of `n` bytes can have (codes are 5..30 bits, padding < 8). */
function minHuffmanDecoded(n: number): number {
  return n === 0 ? 0 : Math.ceil((8 * n - 7) / 30);
}

/**
 * Rewrites one complete header block: every literal `:authority` (static name index 1, or a
 * plain-text name) gets the value "localhost", or "l" when the original might be shorter than
 * that. Returns the block unchanged when it cannot be parsed.
 */
export function rewriteAuthority(block: Buffer): Buffer {
  const out: Buffer[] = [];
  let copied = 0;
  try {
    for (const f of walkHeaderBlock(block)) {
      if (f.kind !== 'literal') continue;
      const isAuthority = f.name
        ? !f.name.huffman && block.toString('latin1', f.name.start, f.name.end) === ':authority'
        : f.nameIndex === 1;
      if (!isAuthority) continue;
      const value = f.value;
      const len = value.end - value.start;
      const decodedAtLeast = value.huffman ? minHuffmanDecoded(len) : len;
      const original = value.huffman ? '' : block.toString('latin1', value.start, value.end);
      const needsFix = value.huffman || /[^A-Za-z0-9._~!$&'()*+,;=:%[\]-]/.test(original);
      if (needsFix && decodedAtLeast >= 1) {
        out.push(block.subarray(copied, value.at), encodeStringLiteral(decodedAtLeast >= 9 ? 'localhost' : 'l'));
        copied = value.end;
      }
    }
  } catch (err) {
    if (err instanceof HpackError) return block;
    throw err;
  }
  if (copied === 0) return block;
  out.push(block.subarray(copied));
  return Buffer.concat(out);
}

/** Client→server byte transformer: whole frames out, header blocks rewritten. */
export class AuthorityRewriter {
  #prefaceLeft = PREFACE.length;
  readonly #frames = new FrameReader(DEFAULT_MAX_FRAME);
  readonly #blocks: HeaderBlockCollector;
  #broken = false;
  #failed = false;
  /** Highest stream id of a request header block passed on (for the GOAWAY's last-stream-id). */
  lastStreamId = 0;

  constructor(opts: { maxHeaderBlock?: number } = {}) {
    this.#blocks = new HeaderBlockCollector(opts.maxHeaderBlock ?? MAX_HEADER_BLOCK);
  }

  /**
   * Feeds client bytes; returns the bytes to send to the server now. Throws H2ConnectionError (and
   * drops everything it held) when the client sends a frame or header block past the bounds;
   * after that every push throws.
   */
  push(chunk: Buffer): Buffer {
    if (this.#failed) throw new H2ConnectionError(H2_ENHANCE_YOUR_CALM, 'connection already refused');
    if (this.#broken) return chunk;
    const out: Buffer[] = [];
    if (this.#prefaceLeft > 0) {
      const n = Math.min(this.#prefaceLeft, chunk.length);
      out.push(chunk.subarray(0, n));
      chunk = chunk.subarray(n);
      this.#prefaceLeft -= n;
    }
    this.#frames.push(chunk);
    try {
      for (let f = this.#frames.next(); f; f = this.#frames.next()) {
        let done: HeaderBlock | null = null;
        if (f.type === T_HEADERS) {
          try {
            done = this.#blocks.headers(f);
          } catch (err) {
            // Malformed padding or priority: the server will refuse it; from here on bytes pass as they are.
            if (!(err instanceof H2ConnectionError) || err.h2Code !== H2_PROTOCOL_ERROR) throw err;
            this.#broken = true;
            out.push(f.raw, this.#frames.drain());
            break;
          }
        } else if (this.#blocks.continues(f)) {
          done = this.#blocks.continuation(f);
        } else {
          out.push(f.raw);
          continue;
        }
        if (done) {
          if (done.stream > this.lastStreamId) this.lastStreamId = done.stream;
          out.push(headerBlockFrames(done.stream, done.flags, done.priority, rewriteAuthority(done.block)));
        }
      }
    } catch (err) {
      if (err instanceof H2ConnectionError) {
        this.#failed = true;
        this.#frames.drain();
      }
      throw err;
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }
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
        if (!(err instanceof H2ConnectionError)) throw err;
        // Nothing more from the server reaches this client; a GOAWAY goes in only between frames.
        refused = true;
        logger.warn('relay: connection refused for exceeding a bound', { error: err.message });
        if (down.atBoundary) client.end(goawayFrame(rw.lastStreamId, err.h2Code, err.message));
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
