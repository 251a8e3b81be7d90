/**
 * The supervisor of one container (or one exec'd process): the host process whose pid stands
 * for the process in the guest, so conmon (or a shell) waits on it like on runc's container init.
 * It holds the stdio it was given (pipes, or a terminal from bulkhead-vm-console), forwards them
 * to the guest session, and exits with the guest process's exit code; when the VM dies instead,
 * it records the reason and exits 255.
 */
import { closeSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { VmdClient } from './client.ts';
import { readyErrorLine, readyOkLine } from './ready.ts';
import type { Frame } from './protocol.ts';
import { type ContainerRecord, containerDir, writeJsonAtomic } from './state.ts';
import { writeFile } from 'node:fs/promises';

export const VM_GONE_EXIT = 255;

export interface ShimSession {
  mode: 'container' | 'exec';
  root: string;
  rec: ContainerRecord;
  /** create: {image, kv}; exec: {kv}. */
  kv: [string, string][];
  image?: string;
  /** fd to report the ready line on (ready.ts) once the session exists (-1: none). */
  readyFd: number;
  /** exec: write our pid here once the process started. */
  pidFile?: string;
}

/** Reports readiness (no error) or the error on fd (ready.ts); without an fd the error goes to stderr. */
function ready(fd: number, err?: unknown): void {
  if (fd < 0) { if (err !== undefined) process.stderr.write(`bulkhead-vm: ${err instanceof Error ? err.message : String(err)}\n`); return; }
  try { writeSync(fd, err === undefined ? readyOkLine(process.pid) : readyErrorLine(err)); closeSync(fd); } catch { /* creator gone */ }
}

/** Runs the session to its end; resolves with the exit code for this process. */
export async function runShim(s: ShimSession): Promise<number> {
  let client: VmdClient;
  try {
    client = await VmdClient.connect(join(s.rec.podDir, 'vmd.sock'));
  } catch (e) {
    ready(s.readyFd, e);
    return 125;
  }
  const tty = s.kv.some(([k, v]) => k === 'tty' && v === '1');
  let gid = 0;
  let started = false;
  const pendingIn: Buffer[] = [];
  let stdinEnded = false;
  let exitCode: number | undefined;

  const stdin = process.stdin;
  const flushStdin = (): void => {
    for (const b of pendingIn.splice(0)) client.send('I', gid, b);
    if (stdinEnded && !tty) client.send('I', gid);
  };
  try {
    if (tty && stdin.isTTY) stdin.setRawMode(true);
    stdin.on('data', (b: Buffer) => { if (started) client.send('I', gid, b); else pendingIn.push(b); });
    stdin.on('end', () => { stdinEnded = true; if (started && !tty) client.send('I', gid); });
    stdin.on('error', () => { stdinEnded = true; });
  } catch { stdinEnded = true; }
  // The terminal may be resized before the guest session exists: send the size once it does, and on every change.
  const sendSize = (): void => {
    if (gid && tty && process.stdout.isTTY && process.stdout.rows > 0) client.send('W', gid, `${process.stdout.rows} ${process.stdout.columns}`);
  };
  if (tty && process.stdout.isTTY) process.stdout.on('resize', sendSize);

  const early: Frame[] = [];
  let handle: (f: Frame) => void = (f) => { early.push(f); };
  const done = new Promise<number>((resolve) => {
    handle = (f) => {
      if (!gid) { early.push(f); return; }
      if (f.id !== gid) return;
      if (f.type === 'O') { if (f.payload.length) process.stdout.write(f.payload); }
      else if (f.type === 'R') { if (f.payload.length) process.stderr.write(f.payload); }
      else if (f.type === 'B') { started = true; sendSize(); flushStdin(); }
      else if (f.type === 'X') { exitCode = Number(f.payload.toString()); resolve(exitCode); }
    };
    client.on('frame', (f) => handle(f));
    client.on('gone', (reason) => {
      if (exitCode !== undefined) return;
      process.stderr.write(`bulkhead-vm: ${reason}\n`);
      resolve(-1);
      void reason;
    });
  });

  try {
    if (s.mode === 'container') {
      const r = await client.request<{ id: number }>('create', { name: s.rec.id, image: s.image, kv: s.kv, sandbox: s.rec.sandbox });
      gid = r.id;
      for (const f of early.splice(0)) handle(f);
      ready(s.readyFd);
    } else {
      // exec: the reply and the started event arrive together; set gid before frames are read
      const r = await client.request<{ id: number; pid: number }>('exec', { name: s.rec.id, kv: s.kv });
      gid = r.id;
      started = true;
      sendSize();
      flushStdin();
      for (const f of early.splice(0)) handle(f);
      if (s.pidFile) await writeJsonPid(s.pidFile, process.pid);
      ready(s.readyFd);
    }
  } catch (e) {
    ready(s.readyFd, e);
    client.close();
    return s.mode === 'exec' ? 126 : 125;
  }

  let code = await done;
  const dir = containerDir(s.root, s.rec.id);
  if (code < 0) {
    code = VM_GONE_EXIT;
    if (s.mode === 'container') await writeJsonAtomic(join(dir, 'exit.json'), { code, reason: client.goneReason ?? 'VM gone', at: new Date().toISOString() }).catch(() => {});
  } else if (s.mode === 'container') {
    await writeJsonAtomic(join(dir, 'exit.json'), { code, at: new Date().toISOString() }).catch(() => {});
  }
  try { if (tty && stdin.isTTY) stdin.setRawMode(false); } catch { /* gone */ }
  client.close();
  await new Promise<void>((r) => process.stdout.write('', () => r()));
  await new Promise<void>((r) => process.stderr.write('', () => r()));
  return code;
}

async function writeJsonPid(path: string, pid: number): Promise<void> {
  await writeFile(path, String(pid));
}
