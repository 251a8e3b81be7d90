/**
 * What the conmon driver's parts share: the on-disk layout under `<runDir>/containers/<id>/`, the
 * record (meta.json), small file and process helpers, and the context exec and attach are given
 * by the driver (so neither imports the driver).
 */
import { constants, statSync } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { AbortedError, DeadlineExceededError, FailedPreconditionError, InvalidArgumentError } from '../../errors.ts';
import type { Logger } from '../../util/log.ts';
import { liveStartTime, procStat } from '../../util/proc.ts';
import type { ContainerState, RuntimeCommand } from '../backend.ts';
import type { OciSpec } from '../../oci/spec.ts';
import { findOnPath } from '../../util/which.ts';

export const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
export const MAX_OUTPUT = 16 * 1024 * 1024;
export const RUNTIME_TIMEOUT = 60_000;

/**
 * How long the driver lets one runtime call take, and what sets that. A runtime with limits of its
 * own (bulkhead-vm's boot timeout) gets limits derived from them plus a margin, so its own error,
 * which names the real cause, comes first; a limit that is hit names `setting` (what to change).
 */
export interface RuntimeLimits {
  /** A create: conmon spawned until it reports the container's pid (the runtime's whole create). */
  createMs: number;
  /** A call given no limit of its own (start, kill, update). */
  callMs: number;
  /** What sets the limits, said with a DeadlineExceeded error. */
  setting: string;
}

export const DEFAULT_RUNTIME_LIMITS: RuntimeLimits = {
  createMs: RUNTIME_TIMEOUT, callMs: RUNTIME_TIMEOUT,
  setting: `Bulkhead's limit of one runtime call, ${RUNTIME_TIMEOUT} ms: a runtime that slow is stuck or the node overloaded`,
};

/** `err` with the limit's setting said, when it is a timeout that does not say it yet. */
export function namingLimit(err: unknown, limits: RuntimeLimits): unknown {
  if (!(err instanceof DeadlineExceededError) || err.message.includes(limits.setting)) return err;
  return new DeadlineExceededError(`${err.message} (${limits.setting})`, { cause: err, ...(err.reason ? { reason: err.reason } : {}) });
}

/** What meta.json records about a container, enough to find it again after a restart. */
export interface Meta {
  id: string;
  podId: string;
  role: 'sandbox' | 'container';
  logPath: string;
  tty: boolean;
  stdin: boolean;
  createdAt: string;
  cgroupsPath: string;
}

/** What exec and attach need of the driver. */
export interface ConmonContext {
  readonly runDir: string;
  readonly runtime: RuntimeCommand;
  readonly conmon: string;
  readonly execRuntimePath: string;
  readonly log: Logger;
  readonly limits: RuntimeLimits;
  killExecProcess(id: string, pid: number, pidFile: string): Promise<void>;
  bundleDir(id: string): string;
  meta(id: string): Promise<Meta>;
  spec(id: string): Promise<OciSpec>;
  state(id: string): Promise<ContainerState>;
}

/** A process named by pid and start time (field 22 of /proc/<pid>/stat), so a reused pid is not mistaken for it. */
export interface ProcessIdentity { pid: number; startTime: string }

/** The process still runs (not a zombie) and is the one recorded (same start time). */
export function identityAlive(p: ProcessIdentity): boolean {
  return liveStartTime(p.pid) === p.startTime;
}

/** Why a container's exit code is unknown when conmon died before recording it. */
export const MONITOR_DIED = 'monitor (conmon) died';

export function validateId(id: string): void {
  if (!ID_RE.test(id)) throw new InvalidArgumentError(`invalid container id ${JSON.stringify(id)}`);
}

export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie has exited. conmon is reparented to whatever reaps orphans (pid 1 or a subreaper),
  // which may take seconds to do so; waiting for the pid to vanish cost delete ~1.5 s here.
  const st = procStat(pid);
  return st !== undefined && st.state !== 'Z';
}

export async function readInt(path: string): Promise<number | undefined> {
  try {
    const t = (await readFile(path, 'utf8')).trim();
    if (!/^-?\d+$/.test(t)) return undefined;
    return Number(t);
  } catch {
    return undefined;
  }
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export function existsSyncCheck(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

export const sleep = (ms: number, signal?: AbortSignal): Promise<void> => new Promise((resolve, reject) => {
  const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
  const onAbort = (): void => { clearTimeout(t); reject(new AbortedError('aborted')); };
  signal?.addEventListener('abort', onAbort, { once: true });
});

export function signalsNumber(sig: NodeJS.Signals): number {
  return osConstants.signals[sig] ?? 9;
}

/** Absolute path of a binary named without a slash, looked up on PATH (as the shell would). */
export function resolveBinary(bin: string): string {
  if (bin.includes('/')) return bin;
  return findOnPath(bin) ?? bin;
}

/** Writes one control line to conmon's ctl fifo (non-blocking: no reader means conmon is gone). */
export async function writeCtl(dir: string, line: string): Promise<void> {
  let fh;
  try {
    fh = await open(join(dir, 'ctl'), constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENXIO' || code === 'ENOENT') throw new FailedPreconditionError('conmon is not running for this container');
    throw err;
  }
  try {
    await fh.write(line);
  } finally {
    await fh.close();
  }
}
