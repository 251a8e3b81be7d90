/**
 * From an OCI bundle to what the VM needs: which pod (VM) a container belongs to, how big that VM
 * is, and the agent's create/exec request (kv pairs, see guest/agent.c).
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { constants } from 'node:os';
import { InvalidArgumentError } from '../errors.ts';
import type { OciProcess, OciSpec } from '../oci/spec.ts';
import { compileSeccomp } from './seccomp-bpf.ts';

const TYPE_KEYS = ['io.kubernetes.cri.container-type', 'io.kubernetes.cri-o.ContainerType'];
const SANDBOX_KEYS = ['io.kubernetes.cri.sandbox-id', 'io.kubernetes.cri-o.SandboxID'];
/** Guest memory added to the containers' limits: kernel, agent, page tables (measured: ~75 MiB used after boot). */
export const GUEST_OVERHEAD_MIB = 128;
export const DEFAULT_GUEST_MIB = 512;

export interface PodIdentity {
  podId: string;
  /** This container is the pod's sandbox: its deletion stops the VM. */
  sandbox: boolean;
}

export async function readBundleSpec(bundle: string): Promise<OciSpec> {
  let text: string;
  try { text = await readFile(join(bundle, 'config.json'), 'utf8'); } catch (e) {
    throw new InvalidArgumentError(`cannot read ${join(bundle, 'config.json')}: ${(e as Error).message}`);
  }
  const spec = JSON.parse(text) as OciSpec;
  if (!spec.process?.args?.length) throw new InvalidArgumentError('config.json: process.args is empty');
  return spec;
}

export function podIdentity(id: string, spec: OciSpec): PodIdentity {
  const a = spec.annotations ?? {};
  const type = TYPE_KEYS.map((k) => a[k]).find((v) => v !== undefined);
  const sandboxId = SANDBOX_KEYS.map((k) => a[k]).find((v) => v !== undefined);
  if (type === 'container') {
    if (!sandboxId) throw new InvalidArgumentError(`container ${id}: container-type "container" without a sandbox-id annotation`);
    return { podId: sandboxId, sandbox: false };
  }
  return { podId: id, sandbox: true };
}

/**
 * The pod network namespace the sandbox's VM joins through a tap: linux.namespaces' network entry
 * with a path. No entry or no path = no network (the VM gets no NIC: `--network none`).
 */
export function podNetnsPath(spec: OciSpec): string | undefined {
  const ns = spec.linux?.namespaces?.find((n) => n.type === 'network');
  if (!ns?.path) return undefined;
  if (!isAbsolute(ns.path)) throw new InvalidArgumentError(`network namespace path must be absolute: ${ns.path}`);
  return ns.path;
}

export function rootfsPath(bundle: string, spec: OciSpec): string {
  const p = spec.root?.path ?? 'rootfs';
  return isAbsolute(p) ? p : join(bundle, p);
}

/** Most guest memory the annotation may ask for when the pod has no memory limit. */
export const MAX_ANNOTATED_GUEST_MIB = 16384;

/**
 * Guest size for a pod's VM: its first container's limits, plus overhead. The annotations
 * (`io.bulkhead.vm.memory-mib`, `io.bulkhead.vm.vcpus`) are pod-authored: memory-mib counts only
 * when the pod has no memory limit (it must never raise the VMM's cgroup limit past the pod's) and
 * is bounded; vCPUs are clamped to the host's (the CPU limit is enforced on the VMM's cgroup).
 */
export function vmSize(spec: OciSpec, hostCpus: number): { memoryMiB: number; vcpus: number } {
  const a = spec.annotations ?? {};
  const r = spec.linux?.resources;
  let mib = 0;
  if (r?.memory?.limit && r.memory.limit > 0) mib = Math.ceil(r.memory.limit / 1048576);
  else {
    const asked = Number(a['io.bulkhead.vm.memory-mib'] ?? 0);
    if (Number.isFinite(asked) && asked > 0) mib = Math.min(Math.floor(asked), MAX_ANNOTATED_GUEST_MIB);
  }
  if (!mib) mib = DEFAULT_GUEST_MIB;
  let vcpus = Number(a['io.bulkhead.vm.vcpus'] ?? 0);
  if (!Number.isFinite(vcpus) || vcpus < 0) vcpus = 0;
  if (!vcpus && r?.cpu?.quota && r.cpu.quota > 0) vcpus = Math.ceil(r.cpu.quota / (r.cpu.period || 100000));
  vcpus = Math.max(1, Math.min(Math.floor(vcpus) || 1, hostCpus));
  return { memoryMiB: Math.max(mib, 64) + GUEST_OVERHEAD_MIB, vcpus };
}

const CAP_NUMBERS: Record<string, number> = {
  CAP_CHOWN: 0, CAP_DAC_OVERRIDE: 1, CAP_DAC_READ_SEARCH: 2, CAP_FOWNER: 3, CAP_FSETID: 4, CAP_KILL: 5, CAP_SETGID: 6,
  CAP_SETUID: 7, CAP_SETPCAP: 8, CAP_LINUX_IMMUTABLE: 9, CAP_NET_BIND_SERVICE: 10, CAP_NET_BROADCAST: 11,
  CAP_NET_ADMIN: 12, CAP_NET_RAW: 13, CAP_IPC_LOCK: 14, CAP_IPC_OWNER: 15, CAP_SYS_MODULE: 16, CAP_SYS_RAWIO: 17,
  CAP_SYS_CHROOT: 18, CAP_SYS_PTRACE: 19, CAP_SYS_PACCT: 20, CAP_SYS_ADMIN: 21, CAP_SYS_BOOT: 22, CAP_SYS_NICE: 23,
  CAP_SYS_RESOURCE: 24, CAP_SYS_TIME: 25, CAP_SYS_TTY_CONFIG: 26, CAP_MKNOD: 27, CAP_LEASE: 28, CAP_AUDIT_WRITE: 29,
  CAP_AUDIT_CONTROL: 30, CAP_SETFCAP: 31, CAP_MAC_OVERRIDE: 32, CAP_MAC_ADMIN: 33, CAP_SYSLOG: 34, CAP_WAKE_ALARM: 35,
  CAP_BLOCK_SUSPEND: 36, CAP_AUDIT_READ: 37, CAP_PERFMON: 38, CAP_BPF: 39, CAP_CHECKPOINT_RESTORE: 40,
};

type Kv = [string, string | number][];

/** kv for the process part (create and exec). */
export function processKv(p: OciProcess, winsize?: { rows: number; cols: number }): Kv {
  const kv: Kv = [];
  for (const a of p.args) kv.push(['arg', a]);
  for (const e of p.env ?? []) kv.push(['env', e]);
  kv.push(['cwd', p.cwd || '/'], ['uid', p.user?.uid ?? 0], ['gid', p.user?.gid ?? 0]);
  for (const g of p.user?.additionalGids ?? []) kv.push(['group', g]);
  if (p.user?.umask !== undefined) kv.push(['umask', p.user.umask.toString(8)]);
  if (p.terminal) kv.push(['tty', 1]);
  if (winsize) kv.push(['winsize', `${winsize.rows} ${winsize.cols}`]);
  else if (p.consoleSize) kv.push(['winsize', `${p.consoleSize.height} ${p.consoleSize.width}`]);
  if (p.noNewPrivileges) kv.push(['nnp', 1]);
  // Capability sets as 64-bit masks (decimal); the agent drops the bounding set, then capset()s
  // effective/permitted/inheritable after the user switch and raises the ambient ones.
  const caps = p.capabilities;
  if (caps) {
    for (const [key, set] of [['cap_bnd', caps.bounding], ['cap_eff', caps.effective], ['cap_prm', caps.permitted], ['cap_inh', caps.inheritable], ['cap_amb', caps.ambient]] as const) {
      kv.push([key, capMask(set ?? []).toString()]);
    }
  }
  return kv;
}

/** Capability names → bit mask; unknown names are dropped (a set only ever narrows, never widens). */
export function capMask(names: readonly string[]): bigint {
  let m = 0n;
  for (const n of names) {
    const bit = CAP_NUMBERS[n.toUpperCase().startsWith('CAP_') ? n.toUpperCase() : `CAP_${n.toUpperCase()}`];
    if (bit !== undefined) m |= 1n << BigInt(bit);
  }
  return m;
}

/** kv for a container: process + root + resources + hostname. `slot` is filled in by the VM supervisor. */
export function containerKv(spec: OciSpec): Kv {
  const kv = processKv(spec.process!);
  if (spec.root?.readonly) kv.push(['readonly', 1]);
  if (spec.hostname) kv.push(['hostname', spec.hostname]);
  const r = spec.linux?.resources;
  if (r?.memory?.limit && r.memory.limit > 0) kv.push(['memory', r.memory.limit]);
  if (r?.cpu?.quota && r.cpu.quota > 0) kv.push(['cpu_quota', r.cpu.quota], ['cpu_period', r.cpu.period || 100000]);
  if (r?.pids?.limit && r.pids.limit > 0) kv.push(['pids', r.pids.limit]);
  for (const m of spec.linux?.maskedPaths ?? []) kv.push(['mask', m]);
  for (const m of spec.linux?.readonlyPaths ?? []) kv.push(['ropath', m]);
  // the container's seccomp filter, compiled here (the guest has no libseccomp); the agent applies
  // it to the container's process and to every process exec'd into the container
  if (spec.linux?.seccomp) kv.push(['seccomp', compileSeccomp(spec.linux.seccomp).toString('hex')]);
  return kv;
}

/** Files from bind mounts the guest cannot see (resolv.conf, hosts, hostname): their contents travel in the request. */
export async function fileMountsKv(spec: OciSpec): Promise<Kv> {
  const kv: Kv = [];
  const want: Record<string, string> = { '/etc/resolv.conf': 'resolv', '/etc/hosts': 'hosts', '/etc/hostname': 'hostname_file' };
  for (const m of spec.mounts ?? []) {
    const key = want[m.destination];
    if (!key || !m.source) continue;
    try { kv.push([key, (await readFile(m.source, 'utf8')).slice(0, 64 * 1024).replace(/\0/g, '')]); } catch { /* missing source: skip */ }
  }
  return kv;
}

/**
 * Which namespaces an app container shares in the guest (kv `join_ipc` / `join_uts` / `join_pid`,
 * naming a container of the pod VM). A spec with a `linux.namespaces` list follows OCI: a type
 * left out is the pod's (its sandbox's: Kubernetes' shared IPC and hostname, PID POD); an entry
 * without a path is the container's own; an entry with a path `/proc/PID/ns/TYPE` joins the
 * container whose pid (as `state` reports it) is PID (`pidOwner`: PID TARGET). A spec without the
 * list (a bare OCI bundle) gets its own of each. A sandbox never joins.
 */
export function namespaceKv(spec: OciSpec, sandboxId: string, pidOwner: (pid: number) => string | undefined): Kv {
  const list = spec.linux?.namespaces;
  if (!Array.isArray(list)) return [];
  const kv: Kv = [];
  for (const type of ['ipc', 'uts', 'pid'] as const) {
    const e = list.find((n) => n.type === type);
    if (!e) { kv.push([`join_${type}`, sandboxId]); continue; }
    if (!e.path) continue;
    const m = /^\/proc\/(\d{1,10})\/ns\/(ipc|uts|pid)$/.exec(e.path);
    const owner = m && m[2] === type ? pidOwner(Number(m[1])) : undefined;
    if (!owner) throw new InvalidArgumentError(`${type} namespace path ${JSON.stringify(e.path.slice(0, 100))} does not name a container of this pod VM (/proc/PID/ns/${type} with the pid its state reports)`);
    kv.push([`join_${type}`, owner]);
  }
  return kv;
}

/** Most sysctls one container may carry into the guest. */
export const MAX_SYSCTLS = 256;

/**
 * kv for sysctls applied in the guest (the agent writes /proc/sys after the container's unshare):
 * the pod's (from its sandbox's spec, kept in the pod dir) overridden by the container's own
 * `linux.sysctl`. Names are dotted lower-case words; a value is one line of at most 4096 bytes.
 */
export function sysctlKv(pod: Record<string, string>, spec: OciSpec): Kv {
  const all = { ...pod, ...(spec.linux?.sysctl ?? {}) };
  const kv: Kv = [];
  if (Object.keys(all).length > MAX_SYSCTLS) throw new InvalidArgumentError(`${Object.keys(all).length} sysctls exceed ${MAX_SYSCTLS}`);
  for (const [k, v] of Object.entries(all)) {
    if (!/^[a-z0-9_-]+([./][a-z0-9_-]+)+$/.test(k) || k.length > 200) throw new InvalidArgumentError(`sysctl name ${JSON.stringify(k.slice(0, 64))} is not a plain dotted name`);
    if (typeof v !== 'string' || v.length > 4096 || /[\0\n]/.test(v)) throw new InvalidArgumentError(`sysctl ${k}: the value must be one line of at most 4096 bytes`);
    kv.push(['sysctl', `${k}=${v}`]);
  }
  return kv;
}

/** Signal name or number (runc style: "TERM", "SIGTERM", "15") → number. */
export function signalNumber(s: string): number {
  if (/^\d+$/.test(s)) return Number(s);
  const name = (s.toUpperCase().startsWith('SIG') ? s.toUpperCase() : `SIG${s.toUpperCase()}`) as keyof typeof constants.signals;
  const n = constants.signals[name];
  if (n === undefined) throw new InvalidArgumentError(`unknown signal ${s}`);
  return n;
}
