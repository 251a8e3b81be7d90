/**
 * A VM template with the pod's sandbox (pause) container already created and started in it
 * (template.ts, vmd.ts): a clone whose sandbox request matches adopts that container instead of
 * creating and starting one (under TCG a fresh clone's cold translation cache makes those ~200 ms).
 *
 * `create` of a sandbox (cmd/create.ts prepareCreate) writes the container's create request
 * (`{image, kv}`, the kv exactly as the agent's create gets it) before the pod VM starts and names
 * it to the supervisor (`_vmd --sandbox-request FILE`). The request splits in two:
 * - the generic part: every kv but the pod's own names and files below, with the `HOSTNAME=`
 *   variable left out of the environment (as warm-pool-member.ts comparablePauseSpec leaves it
 *   out). Its hash, with the root image's identity (path, size, inode, superblock), is part of the
 *   template key: a template's sandbox was made from exactly that request (with that generic part
 *   only: nothing of the pod that built it stays in the template);
 * - the pod's part (`hostname`, `hostname_file`, `resolv`, `hosts`): applied after the restore
 *   with the clone's identity (agent protocol 7, `U` with `sb=` and `sb_*` keys): the hostname in the
 *   sandbox's UTS namespace (which its app containers join), the files on its writable layer.
 * The one difference from a sandbox made for the pod: its process's environment has no HOSTNAME
 * (the pause never reads it; app containers get their own environment).
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { InvalidArgumentError } from '../errors.ts';

/** A sandbox container's create request, as the agent would get it (slot left out). */
export interface SandboxRequest { image: string; kv: [string, string][] }

/** Session id of a template's sandbox container in the agent (the template's first and only container). */
export const TEMPLATE_SANDBOX_GID = 1;
/** The kv the pod sets on its own sandbox, applied after a restore. */
const POD_KEYS = new Set(['hostname', 'hostname_file', 'resolv', 'hosts']);
/** Largest request file read (a seccomp filter in hex and the files' contents fit well below). */
const MAX_REQUEST_BYTES = 4 << 20;

/** The request without the pod's own names and files (and without HOSTNAME in the environment). */
export function genericSandboxKv(kv: readonly [string, string][]): [string, string][] {
  return kv.filter(([k, v]) => !POD_KEYS.has(k) && !(k === 'env' && v.startsWith('HOSTNAME=')));
}

/**
 * The sandbox's kv a warm-up's throwaway container leaves out: the pod's names and files (its own root
 * would get them, but the hostname would be set in the sandbox's UTS namespace, which it joins), the
 * sandbox's sysctls (applied once, by the sandbox) and a template's `ahead` directories (the first app
 * container's).
 */
const WARMUP_DROP = new Set(['hostname', 'hostname_file', 'ahead', 'sysctl']);

/**
 * The create request of a warm-up's throwaway container (vmd.ts `#warmUp`, standby-vmm.ts): the
 * sandbox's own process and settings, in the sandbox's IPC and UTS namespaces as an app container, in
 * `slot`; it can do nothing the sandbox could not.
 */
export function warmUpKv(sandboxKv: readonly [string, string][], sandboxGid: number, slot: number, startWaitMs: number): [string, string][] {
  const kv = sandboxKv.filter(([k]) => !WARMUP_DROP.has(k));
  kv.push(['join_ipc', String(sandboxGid)], ['join_uts', String(sandboxGid)], ['slot', `slot${slot}`], ['start_wait_ms', String(startWaitMs)]);
  return kv;
}

/**
 * The warm-up's sequence (vmd.ts `#warmUp`, standby-vmm.ts `#warm`): one throwaway container created
 * with `kv`, started and deleted (also when its start fails). `ask` sends one request of the
 * container's session and waits for the agent's answer.
 */
export async function runThrowaway(ask: (type: 'C' | 'S' | 'D', payload?: [string, string][]) => Promise<unknown>, kv: [string, string][]): Promise<void> {
  await ask('C', kv);
  try { await ask('S'); } finally { await ask('D'); }
}

/** The pod's part of the request, as the identity request `U` carries it (`sb_<key>`). */
export function podSandboxKv(kv: readonly [string, string][]): [string, string][] {
  return kv.filter(([k]) => POD_KEYS.has(k)).map(([k, v]) => [`sb_${k}`, v]);
}

/**
 * A root image's identity: path, size, inode and its superblock (mkfs gives each image a fresh
 * UUID): a rebuilt image is another template. Not its mtime: each use of a cached image renews it.
 */
function imageId(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const st = fstatSync(fd);
    const sb = Buffer.alloc(1024);
    const n = readSync(fd, sb, 0, sb.length, 1024);
    return `${path}|${st.size}|${st.ino}|${createHash('sha256').update(sb.subarray(0, n)).digest('hex').slice(0, 16)}`;
  } finally {
    closeSync(fd);
  }
}

/** Hash of the generic part and the image's identity: the template key's sandbox input. */
export function sandboxHash(req: SandboxRequest): string {
  return createHash('sha256').update(JSON.stringify({ kv: genericSandboxKv(req.kv), image: imageId(req.image) })).digest('hex').slice(0, 32);
}

/** Whether the image a template's sandbox was made from is still the same file. */
export function sameImage(path: string, id: string): boolean {
  try { return imageId(path) === id; } catch { return false; }
}
export { imageId as sandboxImageId };

/** Reads and checks a request file written by prepareCreate. */
export async function readSandboxRequest(path: string): Promise<SandboxRequest> {
  const text = await readFile(path, 'utf8');
  if (text.length > MAX_REQUEST_BYTES) throw new InvalidArgumentError(`sandbox request ${path} exceeds ${MAX_REQUEST_BYTES} bytes`);
  const r = JSON.parse(text) as { image?: unknown; kv?: unknown };
  const kvOk = Array.isArray(r.kv) && r.kv.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === 'string' && typeof e[1] === 'string');
  if (typeof r.image !== 'string' || !isAbsolute(r.image) || !kvOk) throw new InvalidArgumentError(`sandbox request ${path} is malformed`);
  return { image: r.image, kv: r.kv as [string, string][] };
}
