/**
 * Drives bulkhead-seccomp-agent (./seccomp-agent.c): one agent per strict container, started
 * before `runc create` (runc connects to its socket while creating the container), detached from
 * the daemon like conmon so it outlives a daemon restart, found again by its pid file and start
 * time, and ended when the container is deleted. Built with the host's gcc on first use, like
 * bulkhead-pinns (named by its source hash).
 *
 * Files of one container, under `<backend runDir>/s/<20 hex of sha256(id)>/`: `agent.sock` (runc's
 * listenerPath), `syscalls` (the agent's output), `agent.json` (pid + start time), `learn.json`
 * (what the training run needs to store its profile) and `rootfs-before.json` (the writable
 * layer as it was before the workload started).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DeadlineExceededError, UnavailableError } from '../../errors.ts';
import { liveStartTime } from '../../util/proc.ts';
import { ensureHelper, DEFAULT_HELPER_DIR } from '../helpers/pinns.ts';
import { parseAgentOutput, type AgentRecord } from './profile.ts';

const SOURCE = join(import.meta.dirname, 'seccomp-agent.c');
const READY_TIMEOUT_MS = 10_000;
/** sockaddr_un.sun_path holds 108 bytes with the NUL. */
const MAX_SOCKET_PATH = 107;

export function ensureAgent(helperDir: string = DEFAULT_HELPER_DIR): Promise<string> {
  return ensureHelper(SOURCE, 'bulkhead-seccomp-agent', helperDir);
}

export interface AgentFiles { dir: string; socket: string; out: string; pidFile: string }

/**
 * The agent directory of container `id` under a strict backend's run dir (`<runDir>/s/<20 hex of
 * sha256(id)>`: short, as the socket path must fit sockaddr_un).
 */
export function agentDirOf(backendRunDir: string, id: string): string {
  return join(backendRunDir, 's', createHash('sha256').update(id).digest('hex').slice(0, 20));
}

export function agentFiles(dir: string): AgentFiles {
  return { dir, socket: join(dir, 'agent.sock'), out: join(dir, 'syscalls'), pidFile: join(dir, 'agent.json') };
}

/** Starts an agent and waits until it listens; UnavailableError when it cannot. */
export async function startAgent(bin: string, mode: 'learn' | 'deny', files: AgentFiles, maxSeconds: number, signal?: AbortSignal): Promise<void> {
  if (Buffer.byteLength(files.socket) > MAX_SOCKET_PATH) {
    throw new UnavailableError(`strict: the agent socket path ${files.socket} is longer than ${MAX_SOCKET_PATH} bytes; use a shorter run dir (--run-dir)`);
  }
  const pid = await new Promise<number>((resolve, reject) => {
    const child = spawn(bin, ['--mode', mode, '--socket', files.socket, '--out', files.out, '--max-seconds', String(Math.max(1, Math.floor(maxSeconds)))], {
      stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    let out = '';
    let err = '';
    let done = false;
    const finish = (e: Error | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      child.stdout?.destroy();
      child.stderr?.destroy();
      if (e) { try { if (child.pid) process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } reject(e); } else resolve(child.pid!);
    };
    const timer = setTimeout(() => finish(new DeadlineExceededError(`strict: the seccomp agent did not start within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
    const onAbort = (): void => finish(new DeadlineExceededError('strict: starting the seccomp agent was aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (e) => finish(new UnavailableError(`strict: cannot start the seccomp agent: ${e.message}`)));
    child.stdout!.on('data', (b: Buffer) => { out += b.toString(); if (out.includes('ready\n')) finish(null); });
    child.stderr!.on('data', (b: Buffer) => { if (err.length < 4096) err += b.toString(); });
    child.on('exit', (code) => finish(new UnavailableError(`strict: the seccomp agent exited (${code}): ${err.trim().slice(0, 300) || 'no message'}`)));
    child.unref();
  });
  const startTime = liveStartTime(pid);
  await writeFile(files.pidFile, JSON.stringify({ pid, startTime }), { mode: 0o600 });
}

/** Ends the agent recorded in `files` (if it is still the same process); it writes its output on the way out. */
export async function stopAgent(files: AgentFiles): Promise<void> {
  let rec: { pid?: unknown; startTime?: unknown };
  try { rec = JSON.parse(await readFile(files.pidFile, 'utf8')) as typeof rec; } catch { return; }
  if (typeof rec.pid !== 'number' || typeof rec.startTime !== 'string') return;
  const pid = rec.pid;
  if (liveStartTime(pid) !== rec.startTime) return;
  try { process.kill(pid, 'SIGTERM'); } catch { return; }
  for (let i = 0; i < 100 && liveStartTime(pid) === rec.startTime; i++) await new Promise((r) => setTimeout(r, 20));
  if (liveStartTime(pid) === rec.startTime) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
}

/** Whether the recorded agent still runs. */
export async function agentAlive(files: AgentFiles): Promise<boolean> {
  try {
    const rec = JSON.parse(await readFile(files.pidFile, 'utf8')) as { pid?: unknown; startTime?: unknown };
    return typeof rec.pid === 'number' && typeof rec.startTime === 'string' && liveStartTime(rec.pid) === rec.startTime;
  } catch {
    return false;
  }
}

/** What the agent has recorded so far (empty when nothing yet). */
export async function readAgentOutput(files: AgentFiles): Promise<AgentRecord[]> {
  try { return parseAgentOutput(await readFile(files.out, 'utf8')); } catch { return []; }
}
