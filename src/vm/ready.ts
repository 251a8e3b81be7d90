/**
 * The ready line: how a supervisor bulkhead-vm starts (`_vmd`, the C shim guest/vm-shim.c) tells its creator, on
 * fd 3, that it is ready or why it is not — one line, `ok <pid>` or `error <json>` where the JSON is
 * the error as {code, reason, message} (errors.ts WireError), so the class and reason cross the
 * process boundary as they were thrown.
 */
import { fromWire, toWire, type BulkheadError } from '../errors.ts';

export function readyOkLine(pid: number): string {
  return `ok ${pid}\n`;
}

export function readyErrorLine(err: unknown): string {
  return `error ${JSON.stringify(toWire(err))}\n`;
}

/** `{ok: pid}` or the error the line carries, with `what` ("pod VM") in front of its message. */
export function parseReadyLine(line: string, what: string): { pid: number } | { error: BulkheadError } {
  const ok = /^ok (\d+)$/.exec(line.trim());
  if (ok) return { pid: Number(ok[1]) };
  let v: unknown;
  if (line.startsWith('error ')) { try { v = JSON.parse(line.slice(6)); } catch { v = undefined; } }
  const e = fromWire(v, `sent ${JSON.stringify(line.slice(0, 300))} instead of a ready line`);
  return { error: fromWire({ code: e.code, ...(e.reason ? { reason: e.reason } : {}), message: `${what}: ${e.message}` }) };
}
