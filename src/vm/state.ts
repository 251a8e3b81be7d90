/**
 * Per-container state of bulkhead-vm under its `--root` (default /run/bulkhead-vm):
 *   <root>/<id>/state.json   written once by create (bundle, pod, supervisor pid, ...)
 *   <root>/<id>/started      written by start
 *   <root>/<id>/exit.json    written by the container's supervisor when the process ended ({code, reason})
 *   <root>/pods/<key>/       the pod VM: vmd.sock, vmd.pid, vmm.pid, console.log, slot files
 * Status is derived from these files and process liveness, never stored, so concurrent
 * writers cannot race: exit.json → stopped; supervisor dead → stopped (reason recorded);
 * started → running; else created.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { InvalidArgumentError, NotFoundError } from '../errors.ts';

export const DEFAULT_ROOT = '/run/bulkhead-vm';
const INDEX = join(DEFAULT_ROOT, 'by-id');

/**
 * Records `id` → its state dir in the default root's index (for callers that omit --root), once
 * the dir exists. Entries whose state dir is gone go first: a root deleted with containers in it
 * (a daemon killed, its temporary root removed) left them, and only the index names them.
 */
export async function indexAdd(id: string, dir: string, index = INDEX): Promise<void> {
  await mkdir(index, { recursive: true, mode: 0o700 });
  for (const n of await readdir(index).catch(() => [] as string[])) {
    if (!existsSync(join(index, n))) await rm(join(index, n), { force: true }); // (followed: a link to nothing)
  }
  await rm(join(index, checkId(id)), { force: true });
  await symlink(dir, join(index, id));
}

/** Removes the index entry if it still points at `dir`. */
export async function indexRemove(id: string, dir: string): Promise<void> {
  try { if (readlinkSync(join(INDEX, checkId(id))) === dir) await rm(join(INDEX, id), { force: true }); } catch { /* none */ }
}

export function rootFromIndex(id: string): string | undefined {
  try { return dirname(readlinkSync(join(INDEX, checkId(id)))); } catch { return undefined; }
}

export interface ContainerRecord {
  id: string;
  bundle: string;
  podId: string;
  podDir: string;
  sandbox: boolean;
  /** Supervisor (shim) pid: the pid conmon waits on. */
  pid: number;
  /** Its start time (/proc/PID/stat field 22): a reused pid is never signalled. */
  pidStart?: string;
  annotations: Record<string, string>;
  created: string;
}

export interface ExitRecord { code: number; reason?: string; at: string }

export type Status = 'creating' | 'created' | 'running' | 'stopped';

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$/;

export function checkId(id: string | undefined): string {
  if (!id || !ID_RE.test(id)) throw new InvalidArgumentError(`invalid container id ${JSON.stringify(id ?? '')}`);
  return id;
}

export function containerDir(root: string, id: string): string { return join(root, checkId(id)); }

export function podDir(root: string, podId: string): string {
  return join(root, 'pods', createHash('sha256').update(podId).digest('hex').slice(0, 16));
}

export async function writeJsonAtomic(path: string, v: unknown): Promise<void> {
  await writeFile(`${path}.tmp`, JSON.stringify(v), { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}

export async function readRecord(root: string, id: string): Promise<ContainerRecord> {
  try {
    return JSON.parse(await readFile(join(containerDir(root, id), 'state.json'), 'utf8')) as ContainerRecord;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`container "${id}" does not exist`, { reason: 'BH_CONTAINER_NOT_FOUND' });
    throw e;
  }
}

export async function readExit(root: string, id: string): Promise<ExitRecord | undefined> {
  try { return JSON.parse(await readFile(join(containerDir(root, id), 'exit.json'), 'utf8')) as ExitRecord; } catch { return undefined; }
}

export function alive(pid: number): boolean {
  if (!pid) return false;
  try { process.kill(pid, 0); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false; }
  try { return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
}

export async function status(root: string, rec: ContainerRecord): Promise<{ status: Status; exit?: ExitRecord }> {
  const exit = await readExit(root, rec.id);
  if (exit) return { status: 'stopped', exit };
  if (!rec.pid) return { status: 'creating' };
  if (!alive(rec.pid)) return { status: 'stopped', exit: { code: 255, reason: 'the container supervisor died', at: new Date().toISOString() } };
  return { status: existsSync(join(containerDir(root, rec.id), 'started')) ? 'running' : 'created' };
}
