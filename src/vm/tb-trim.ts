/**
 * Idle translation trim: gives an idle TCG guest's translation buffer back to the host.
 *
 * Under TCG each QEMU keeps every block of guest code it translated since its last flush in its
 * code buffer (`-accel tcg,tb-size=`), and QEMU 7.2 never returns that memory: a flush only resets
 * its write pointer. A pod VM's start translates ~18 MiB of guest kernel paths (container create,
 * mounts, exec) that its idle guest never runs again, so an idle pod's QEMU holds them for its whole
 * life: ~40% of its PSS (bench/density.ts --breakdown).
 *
 * With `split-wx=on` QEMU keeps the buffer in a memfd (mapped twice: written through one mapping,
 * run from the other), which the host can punch holes in. A trim, on a VM quiet for a while:
 *  1. asks `info jit` how much of the buffer is in use, and stops if that is little;
 *  2. starts QEMU's gdbstub on a socket in the pod dir and connects: the VM stops;
 *  3. single-steps one instruction: QEMU stops the VM for a debug event, and on that it flushes
 *     every translation (gdbstub's stop handler; a loadvm does the same);
 *  4. with the VM still stopped, checks that `info jit` now reports (almost) nothing in use — the
 *     proof the flush happened, else nothing is punched —, then punches the memfd from past what
 *     is in use to its end (`fallocate --punch-hole` on /proc/PID/map_files/…);
 *  5. detaches (the VM runs again) and closes the gdbstub; whatever fails, the VM is left running.
 * QEMU writes new translations from the buffer's start after the flush: what the guest runs next
 * is translated again (a later exec costs what it cost on a fresh clone), in pages it touches anew.
 *
 * Only for a single-vCPU VM: QEMU gives a single vCPU one region from the buffer's start; with more
 * vCPUs the buffer is split into regions whose layout is QEMU's internal affair.
 */
import { readFile, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Qmp } from './qmp.ts';
import { run } from '../util/exec.ts';

/**
 * Quiet time before a pod VM's translations are trimmed (ms); $BULKHEAD_VM_TB_TRIM_IDLE_MS sets
 * another, 0 turns trimming off. Quiet: no request or output through the pod's agent channel (stats
 * polls do not count) and QEMU under TRIM_BUSY_PERMILLE of a CPU over the window.
 */
export const TRIM_IDLE_MS = 10_000;
/** A buffer with less than this in use is left alone (a trim costs the next exec its translations). */
export const TRIM_MIN_BYTES = 4 << 20;
/** QEMU busier than this (CPU time per wall time, ‰) over the quiet window: the guest is working, not trimmed. */
export const TRIM_BUSY_PERMILLE = 50;
/** After the flush, `info jit` must report at most this in use before anything is punched. */
const FLUSHED_MAX_BYTES = 256 << 10;
/** Kept unpunched past what is in use (covers QEMU's prologue ahead of its first region). */
const KEEP_BYTES = 1 << 20;
const PAGE = 4096;

export function trimIdleMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.BULKHEAD_VM_TB_TRIM_IDLE_MS;
  return v !== undefined && /^\d{1,7}$/.test(v) ? Number(v) : TRIM_IDLE_MS;
}

export interface TrimResult {
  trimmed: boolean;
  /** Why not, when not trimmed. */
  reason?: string;
  /** Bytes of the buffer in use before, and the bytes punched out of the memfd. */
  usedBytes: number;
  punchedBytes?: number;
  /** How long the VM was stopped (connect to detach), ms. */
  stoppedMs?: number;
}

/** `info jit`'s "gen code size USED/SIZE". */
export function parseJitUsed(text: string): { used: number; size: number } | undefined {
  const m = /gen code size\s+(\d+)\/(\d+)/.exec(text);
  return m ? { used: Number(m[1]), size: Number(m[2]) } : undefined;
}

/** The writable mapping of QEMU's split-wx code buffer in /proc/PID/maps: its address range. */
export function jitMapping(maps: string): { range: string; bytes: number } | undefined {
  for (const line of maps.split('\n')) {
    const f = line.trim().split(/\s+/);
    // start-end perms offset dev inode path…: the rw- shared mapping at offset 0 of the memfd
    if (f.length < 6 || f[1] !== 'rw-s' || Number.parseInt(f[2]!, 16) !== 0 || !f.slice(5).join(' ').startsWith('/memfd:tcg-jit')) continue;
    const [a, b] = f[0]!.split('-').map((x) => Number.parseInt(x, 16));
    if (a === undefined || b === undefined || !(b > a)) continue;
    return { range: f[0]!, bytes: b - a };
  }
  return undefined;
}

/** A GDB remote-protocol packet: `$body#checksum`. */
export function gdbPacket(body: string): string {
  let sum = 0;
  for (const c of body) sum = (sum + c.charCodeAt(0)) & 0xff;
  return `$${body}#${sum.toString(16).padStart(2, '0')}`;
}

/** A connection to QEMU's gdbstub: what it sent, searched for a stop reply or an OK. */
class GdbLink {
  readonly #sock: Socket;
  #buf = '';
  private constructor(sock: Socket) {
    this.#sock = sock;
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => { this.#buf = (this.#buf + d).slice(-4096); });
    sock.on('error', () => {});
  }
  static async open(path: string, timeoutMs: number): Promise<GdbLink> {
    const sock = connect(path);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => { sock.destroy(); reject(new Error('gdbstub did not accept the connection')); }, timeoutMs);
      sock.once('connect', () => { clearTimeout(t); resolve(); });
      sock.once('error', (e) => { clearTimeout(t); reject(e); });
    });
    return new GdbLink(sock);
  }
  send(s: string): void { this.#sock.write(s); }
  /** Waits for `re` in what came since the last take; true if seen in time. */
  async take(re: RegExp, timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (re.test(this.#buf)) { this.#buf = ''; return true; }
      if (Date.now() > until || this.#sock.destroyed) return false;
      await sleep(2);
    }
  }
  close(): void { this.#sock.destroy(); }
}

export interface TrimTarget {
  /** QEMU's pid (its /proc/PID/maps and map_files). */
  pid: number;
  /** QEMU's QMP socket. */
  qmpPath: string;
  /** Where the gdbstub listens for the trim (a root-only dir; removed after). */
  gdbPath: string;
  minBytes?: number;
  /** How long the single step may wait for the guest to run an instruction (an idle guest waits for its next interrupt). */
  stepTimeoutMs?: number;
  /**
   * Called as the step is sent: gives an idle guest an interrupt (the supervisor writes a frame the
   * agent ignores), so the step runs at once instead of at the guest's next timer (~0.05-1 s stopped).
   */
  wake?: () => void;
}

/**
 * Trims `t`'s translation buffer (module comment). Never throws for a VM that keeps running: a
 * refused or failed trim is `trimmed: false` with the reason; the VM is resumed whatever happened.
 */
export async function trimTranslations(t: TrimTarget): Promise<TrimResult> {
  const qmp = await Qmp.connect(t.qmpPath, 2000);
  const hmp = async (line: string): Promise<string> => String(await qmp.cmd('human-monitor-command', { 'command-line': line }, 5000));
  let gdb: GdbLink | undefined;
  let stubOn = false;
  let stoppedAt = 0;
  let stoppedMs: number | undefined;
  let wasRunning = false;
  const attempt = async (): Promise<TrimResult> => {
      // a VM stopped by someone else stays stopped: the detach below would run it
      const status = await qmp.cmd('query-status', undefined, 2000) as { status?: string };
      if (status.status !== 'running') return { trimmed: false, reason: `the VM is ${String(status.status)}, not running`, usedBytes: 0 };
      wasRunning = true;
      const before = parseJitUsed(await hmp('info jit'));
      if (!before) return { trimmed: false, reason: 'QEMU reports no translation buffer (not TCG?)', usedBytes: 0 };
      if (before.used < (t.minBytes ?? TRIM_MIN_BYTES)) return { trimmed: false, reason: 'little in use', usedBytes: before.used };
      const map = jitMapping(await readFile(`/proc/${t.pid}/maps`, 'utf8'));
      if (!map) return { trimmed: false, reason: 'the translation buffer is not in a memfd (QEMU without split-wx)', usedBytes: before.used };
      await rm(t.gdbPath, { force: true });
      const reply = await hmp(`gdbserver unix:${t.gdbPath},server=on,wait=off`);
      stubOn = true;
      if (!/waiting for gdb/i.test(reply)) return { trimmed: false, reason: `gdbstub not started: ${reply.trim().slice(0, 200)}`, usedBytes: before.used };
      gdb = await GdbLink.open(t.gdbPath, 2000);
      stoppedAt = performance.now();
      // the connect stops the VM (stop reply T02); a step runs one instruction and stops it for debug: flushed
      if (!await gdb.take(/\$T[0-9a-f]{2}/, 2000)) return { trimmed: false, reason: 'gdbstub sent no stop reply', usedBytes: before.used };
      gdb.send(gdbPacket('s'));
      t.wake?.();
      if (!await gdb.take(/\$T05/, t.stepTimeoutMs ?? 3000)) {
        gdb.send('\x03'); // interrupt: a plain stop, no flush
        await gdb.take(/\$T[0-9a-f]{2}/, 1000);
        return { trimmed: false, reason: 'the guest ran no instruction in time', usedBytes: before.used };
      }
      // QEMU queues the flush to the vCPU thread, which runs it while stopped: wait for it
      let after: { used: number; size: number } | undefined;
      for (let i = 0; i < 50; i++) {
        after = parseJitUsed(await hmp('info jit'));
        if (after && after.used <= FLUSHED_MAX_BYTES) break;
        await sleep(2);
      }
      if (!after || after.used > FLUSHED_MAX_BYTES) return { trimmed: false, reason: `no flush seen (${after?.used ?? '?'} bytes still in use)`, usedBytes: before.used };
      const from = Math.ceil((after.used + KEEP_BYTES) / PAGE) * PAGE;
      if (from >= map.bytes) return { trimmed: false, reason: 'buffer too small to trim', usedBytes: before.used };
      const r = await run('fallocate', ['--punch-hole', '--offset', String(from), '--length', String(map.bytes - from), `/proc/${t.pid}/map_files/${map.range}`], { timeoutMs: 5000 });
      if (r.code !== 0) return { trimmed: false, reason: `punch refused: ${r.stderr.trim().slice(0, 200)}`, usedBytes: before.used };
      return { trimmed: true, usedBytes: before.used, punchedBytes: map.bytes - from };
  };
  let result: TrimResult;
  try {
    result = await attempt();
  } finally {
    // detach: the VM runs again (also after a failure above); then the stub goes
    if (gdb) {
      gdb.send('+' + gdbPacket('D'));
      await gdb.take(/\$OK/, 1000);
      stoppedMs = performance.now() - stoppedAt;
      gdb.close();
    }
    if (stubOn) await hmp('gdbserver none').catch(() => '');
    await rm(t.gdbPath, { force: true }).catch(() => {});
    // a VM this trim found running and left stopped (any failure above) runs again
    if (wasRunning) {
      const s = await qmp.cmd('query-status', undefined, 2000).catch(() => undefined) as { status?: string } | undefined;
      if (s?.status === 'paused' || s?.status === 'debug') await qmp.cmd('cont', undefined, 2000).catch(() => undefined);
    }
    qmp.close();
  }
  return stoppedMs !== undefined ? { ...result, stoppedMs: Math.round(stoppedMs) } : result;
}
