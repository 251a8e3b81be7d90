/**
 * The agent protocol (see guest/agent.c for the guest side): frames of
 *   type (1 byte ASCII) | id (u32 BE) | length (u32 BE) | payload
 * over one virtio-serial port. Requests carry a session id chosen by the host; every request is
 * answered by `A` (ok) or `F` (failure) with the same id. Process output (`O`, `R`) always
 * precedes that process's exit (`X`). Create/exec payloads are "key=value\0" lists.
 *
 * The same framing is used between the per-pod VM supervisor and its clients on the host, with
 * JSON payloads for control frames (see vmd.ts).
 */
import { InternalError } from '../errors.ts';

export type FrameType =
  | 'H' | 'A' | 'F' | 'O' | 'R' | 'X' // guest -> host
  | 'C' | 'S' | 'E' | 'I' | 'K' | 'W' | 'D' | 'T' | 'P' | 'U' | 'Y' // host -> guest
  | 'V' | 'Q' | 'B' | 'Z' | 'N'; // host-only (supervisor <-> clients)

export interface Frame {
  type: FrameType;
  id: number;
  payload: Buffer;
}

export const HEADER_SIZE = 9;
export const MAX_PAYLOAD = 1 << 20;
const KNOWN = new Set('HAFORXCSEIKWDTPUYVQBZN'.split(''));

export function encodeFrame(type: FrameType, id: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const p = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  if (p.length > MAX_PAYLOAD) throw new InternalError(`frame payload of ${p.length} bytes exceeds ${MAX_PAYLOAD}`);
  const h = Buffer.alloc(HEADER_SIZE);
  h.write(type, 0, 'ascii');
  h.writeUInt32BE(id >>> 0, 1);
  h.writeUInt32BE(p.length, 5);
  return Buffer.concat([h, p]);
}

/** Thrown by FrameDecoder when the peer breaks the protocol; the connection cannot be trusted after it. */
export class ProtocolViolation extends InternalError {}

/** Incremental decoder: push() bytes as they arrive, get whole frames back. */
export class FrameDecoder {
  #buf: Buffer = Buffer.alloc(0);
  readonly #peer: string;
  constructor(peer: string) { this.#peer = peer; }

  push(chunk: Buffer): Frame[] {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    const out: Frame[] = [];
    while (this.#buf.length >= HEADER_SIZE) {
      const type = String.fromCharCode(this.#buf[0]!);
      const id = this.#buf.readUInt32BE(1);
      const len = this.#buf.readUInt32BE(5);
      if (!KNOWN.has(type)) throw new ProtocolViolation(`${this.#peer} protocol violation: unknown frame type 0x${this.#buf[0]!.toString(16).padStart(2, '0')}`);
      if (len > MAX_PAYLOAD) throw new ProtocolViolation(`${this.#peer} protocol violation: frame of ${len} bytes exceeds ${MAX_PAYLOAD}`);
      if (this.#buf.length < HEADER_SIZE + len) break;
      out.push({ type: type as FrameType, id, payload: this.#buf.subarray(HEADER_SIZE, HEADER_SIZE + len) });
      this.#buf = this.#buf.subarray(HEADER_SIZE + len);
    }
    return out;
  }

  /** Bytes received but not yet part of a whole frame. */
  get pending(): number { return this.#buf.length; }
}

/** "key=value\0" list; array values repeat the key in order. Values must not contain NUL. */
export function encodeKv(entries: readonly (readonly [string, string | number])[]): Buffer {
  const parts: string[] = [];
  for (const [k, v] of entries) {
    const s = String(v);
    if (s.includes('\0') || k.includes('\0') || k.includes('=')) throw new InternalError(`agent request field ${k} holds a NUL byte or bad key`);
    parts.push(`${k}=${s}\0`);
  }
  return Buffer.from(parts.join(''), 'utf8');
}
