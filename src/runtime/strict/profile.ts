/**
 * A strict profile: what one image needs from the host kernel, learned by a training run
 * (`bulkhead profile learn`) and enforced by the `strict` handler.
 *
 * Glossary:
 * - the allow-list: system call names the training run made (recorded by the seccomp
 *   user-notification agent, ./seccomp-agent.c) plus RUNC_INIT_FLOOR (below);
 * - capabilities: the container's capabilities that the training run's system calls could have
 *   needed (a conservative reading: a capability is dropped only when none of the system calls
 *   that can exercise it was made — the kernel's capability checks themselves are not observable
 *   from seccomp);
 * - wroteRootfs: the training run changed its writable layer (outside volumes); when false the
 *   strict handler mounts the root filesystem read-only.
 *
 * A profile file is hostile input when it comes from an annotation: `parseProfile` checks every
 * field, bounds sizes, and only names from the x86_64 table are kept.
 */
import { InvalidArgumentError } from '../../errors.ts';
import { CAPABILITY_NAMES } from '../capabilities.ts';
import { defaultSeccompProfile } from '../seccomp.ts';
import { X86_64_SYSCALLS } from '../../vm/syscalls-x86-64.ts';
import type { OciSeccomp, OciSeccompSyscall } from '../../oci/spec.ts';

export const PROFILE_VERSION = 1;

export interface StrictProfile {
  version: 1;
  /** The image's manifest digest ("sha256:<hex>"): the key of the store. */
  manifestDigest: string;
  /** The image's id (config digest) and names at training time (for people). */
  imageId?: string;
  imageNames?: string[];
  learnedAt: string;
  arch: 'x86_64';
  /** The allow-list, sorted. */
  syscalls: string[];
  /** How often each system call was made during training (the floor's additions are absent). */
  counts: Record<string, number>;
  /** Capabilities kept (CAP_* names, sorted). */
  capabilities: string[];
  /** Training changed the writable layer: the root filesystem stays writable. */
  wroteRootfs: boolean;
  training: { command: string[]; probe?: string; durationMs: number; exitCode?: number; handler: string };
}

/**
 * System calls runc's init (Go) may make on its filter-carrying thread between installing the
 * filter and execve, depending on timing (preemption signals, the scheduler, the netpoller):
 * seen in some training runs and not in others (docs/design-notes.md, "strict"). Always allowed,
 * so a profile does not fail to start the container by chance. They are allowed outright in
 * training too, never notified: runc hands the listener to the agent only after the init has
 * reported it over its sync pipe, so a notified call before that (a Go preemption signal's
 * rt_sigreturn) would wait for an agent that has no listener yet — a hung `runc create`/`exec`.
 * `write` cannot be notified at all (runc refuses SCMP_ACT_NOTIFY for it).
 */
export const RUNC_INIT_FLOOR: readonly string[] = [
  'write', 'read', 'close', 'futex', 'nanosleep', 'sched_yield', 'tgkill', 'getpid', 'gettid', 'rt_sigreturn',
  'rt_sigprocmask', 'restart_syscall', 'epoll_pwait', 'epoll_ctl', 'execve', 'exit', 'exit_group',
];

const NAME_BY_NR: ReadonlyMap<number, string> = new Map(Object.entries(X86_64_SYSCALLS).map(([k, v]) => [v, k]));
/** Every x86_64 system call name this build knows. */
export const ALL_SYSCALLS: readonly string[] = Object.keys(X86_64_SYSCALLS);

/** Rules of the default profile that allow only with argument checks (clone, personality). */
const CONDITIONAL = new Set(['clone', 'personality']);

/** One line of the agent's output: "ARCH NR COUNT". */
export interface AgentRecord { arch: 'x86_64' | 'x32' | 'i386'; nr: number; count: number }

export function parseAgentOutput(text: string): AgentRecord[] {
  const out: AgentRecord[] = [];
  for (const line of text.split('\n')) {
    const m = /^(x86_64|x32|i386) (\d{1,4}) (\d{1,20})$/.exec(line.trim());
    if (m) out.push({ arch: m[1] as AgentRecord['arch'], nr: Number(m[2]), count: Number(m[3]) });
  }
  return out;
}

/** x86_64 (and x32, the same names) records → {name: count}; i386 calls are reported apart. */
export function namedCounts(records: readonly AgentRecord[]): { counts: Record<string, number>; foreign: string[] } {
  const counts: Record<string, number> = {};
  const foreign: string[] = [];
  for (const r of records) {
    const name = r.arch === 'i386' ? undefined : NAME_BY_NR.get(r.nr);
    if (name === undefined) { foreign.push(`${r.arch}:${r.nr}`); continue; }
    counts[name] = (counts[name] ?? 0) + r.count;
  }
  return { counts, foreign };
}

/** Capability → system calls that may exercise it (if none was made, it is dropped). */
const CAPABILITY_SYSCALLS: Readonly<Record<string, readonly string[]>> = {
  CAP_CHOWN: ['chown', 'fchown', 'fchownat', 'lchown'],
  CAP_DAC_OVERRIDE: ['open', 'openat', 'openat2', 'creat', 'execve', 'execveat', 'access', 'faccessat', 'faccessat2', 'mkdir', 'mkdirat', 'unlink', 'unlinkat', 'rename', 'renameat', 'renameat2', 'rmdir', 'link', 'linkat', 'symlink', 'symlinkat', 'truncate', 'chdir', 'mknod', 'mknodat', 'utimensat', 'utimes', 'utime', 'setxattr', 'lsetxattr', 'removexattr', 'lremovexattr'],
  CAP_FOWNER: ['chmod', 'fchmod', 'fchmodat', 'utimensat', 'utimes', 'utime', 'futimesat', 'setxattr', 'lsetxattr', 'fsetxattr', 'removexattr', 'lremovexattr', 'fremovexattr', 'unlink', 'unlinkat', 'rename', 'renameat', 'renameat2', 'rmdir', 'open', 'openat', 'openat2', 'fcntl'],
  CAP_FSETID: ['chmod', 'fchmod', 'fchmodat', 'chown', 'fchown', 'fchownat', 'lchown', 'write', 'writev', 'pwrite64', 'truncate', 'ftruncate'],
  CAP_SETGID: ['setgid', 'setregid', 'setresgid', 'setfsgid', 'setgroups'],
  CAP_SETUID: ['setuid', 'setreuid', 'setresuid', 'setfsuid'],
  CAP_SETPCAP: ['capset', 'prctl'],
  CAP_NET_BIND_SERVICE: ['bind'],
  CAP_KILL: ['kill', 'tkill', 'rt_sigqueueinfo', 'rt_tgsigqueueinfo', 'pidfd_send_signal'],
  CAP_NET_RAW: ['socket'],
  CAP_SYS_CHROOT: ['chroot'],
  CAP_MKNOD: ['mknod', 'mknodat'],
  CAP_AUDIT_WRITE: ['sendto', 'sendmsg'],
  CAP_SETFCAP: ['setxattr', 'lsetxattr', 'fsetxattr'],
};

/**
 * The capabilities of `granted` that the system calls made may have used. A capability without an
 * entry above is kept (unknown: conservative). The floor is never observed in training (it is not
 * notified), so it counts as made.
 */
export function usedCapabilities(granted: readonly string[], made: Iterable<string>): string[] {
  const seen = new Set([...made, ...RUNC_INIT_FLOOR]);
  return granted.filter((c) => {
    const calls = CAPABILITY_SYSCALLS[c];
    return calls === undefined || calls.some((s) => seen.has(s));
  }).sort();
}

/** The allow-list from a training run's counts: the names made, plus the runc-init floor. */
export function allowList(counts: Record<string, number>): string[] {
  return [...new Set([...Object.keys(counts), ...RUNC_INIT_FLOOR])].filter((n) => n in X86_64_SYSCALLS).sort();
}

/**
 * The training profile: Bulkhead's default profile with every allowing rule turned into
 * SCMP_ACT_NOTIFY to the agent at `listenerPath` (argument checks kept), the floor
 * (RUNC_INIT_FLOOR, every strict profile allows it anyway) left allowed. So training never allows
 * more than the runc handler does, and the learned list is a subset of the default profile.
 */
export function trainingSeccomp(listenerPath: string): OciSeccomp {
  const p = defaultSeccompProfile();
  const floor = new Set(RUNC_INIT_FLOOR);
  const syscalls: OciSeccompSyscall[] = [];
  const allowed: string[] = [];
  for (const r of p.syscalls ?? []) {
    if (r.action !== 'SCMP_ACT_ALLOW') { syscalls.push(r); continue; }
    if (!r.args?.length) allowed.push(...r.names.filter((n) => floor.has(n)));
    const names = r.args?.length ? r.names : r.names.filter((n) => !floor.has(n));
    if (names.length > 0) syscalls.push({ ...r, names, action: 'SCMP_ACT_NOTIFY' });
  }
  syscalls.push({ names: allowed, action: 'SCMP_ACT_ALLOW' });
  return { ...p, listenerPath, syscalls };
}

export type DenyAction = 'eperm' | 'kill';

/**
 * The enforcing profile. Allowed: the allow-list (clone and personality only with the default
 * profile's argument checks; clone3 answers ENOSYS so libc falls back to clone). Everything else:
 * with 'eperm', every other known system call is SCMP_ACT_NOTIFY to the deny agent (which answers
 * EPERM and counts it: the denial is an event) and unknown ones EPERM; with 'kill', the process is
 * killed (SIGSYS). Native x86_64 only: 32-bit entry points get the default action.
 */
export function enforcingSeccomp(profile: Pick<StrictProfile, 'syscalls'>, action: DenyAction, listenerPath?: string): OciSeccomp {
  const allowed = new Set(profile.syscalls.filter((n) => n in X86_64_SYSCALLS && n !== 'clone3'));
  for (const n of RUNC_INIT_FLOOR) allowed.add(n);
  const dflt = defaultSeccompProfile().syscalls ?? [];
  const syscalls: OciSeccompSyscall[] = [{ names: [...allowed].filter((n) => !CONDITIONAL.has(n)).sort(), action: 'SCMP_ACT_ALLOW' }];
  for (const r of dflt) {
    if (r.action === 'SCMP_ACT_ALLOW' && r.args?.length && r.names.some((n) => allowed.has(n))) syscalls.push(structuredClone(r));
  }
  syscalls.push({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 });
  if (action === 'eperm' && listenerPath) {
    const denied = ALL_SYSCALLS.filter((n) => !allowed.has(n) && n !== 'clone3' && n !== 'write');
    // clone/personality outside their argument checks get the default action (EPERM, not counted)
    syscalls.push({ names: denied, action: 'SCMP_ACT_NOTIFY' });
    return { defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 1, architectures: ['SCMP_ARCH_X86_64'], listenerPath, syscalls };
  }
  return {
    defaultAction: action === 'kill' ? 'SCMP_ACT_KILL_PROCESS' : 'SCMP_ACT_ERRNO',
    ...(action === 'kill' ? {} : { defaultErrnoRet: 1 }),
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls,
  };
}

const MAX_SYSCALLS = 600;
const DIGEST = /^sha256:[a-f0-9]{64}$/;

/** Checks a profile read from disk (the store or an annotation's file); errors name the field, never the content. */
export function parseProfile(value: unknown, what: string): StrictProfile {
  const bad = (field: string, why: string): never => { throw new InvalidArgumentError(`${what}: ${field} ${why} (a strict profile as written by \`bulkhead profile learn\`)`); };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) bad('the file', 'is not a JSON object');
  const v = value as Record<string, unknown>;
  if (v.version !== PROFILE_VERSION) bad('version', `must be ${PROFILE_VERSION}`);
  if (typeof v.manifestDigest !== 'string' || !DIGEST.test(v.manifestDigest)) bad('manifestDigest', 'must be sha256:<64 hex>');
  if (v.arch !== 'x86_64') bad('arch', 'must be x86_64');
  if (!Array.isArray(v.syscalls) || v.syscalls.length > MAX_SYSCALLS || !v.syscalls.every((s) => typeof s === 'string' && s in X86_64_SYSCALLS)) bad('syscalls', `must be a list of at most ${MAX_SYSCALLS} known x86_64 system call names`);
  if (!Array.isArray(v.capabilities) || !v.capabilities.every((c) => typeof c === 'string' && CAPABILITY_NAMES.includes(c))) bad('capabilities', 'must be a list of CAP_* names');
  if (typeof v.wroteRootfs !== 'boolean') bad('wroteRootfs', 'must be true or false');
  const counts: Record<string, number> = {};
  if (typeof v.counts === 'object' && v.counts !== null && !Array.isArray(v.counts)) {
    for (const [k, n] of Object.entries(v.counts as Record<string, unknown>).slice(0, MAX_SYSCALLS)) {
      if (k in X86_64_SYSCALLS && typeof n === 'number' && Number.isSafeInteger(n) && n >= 0) counts[k] = n;
    }
  }
  const t = (typeof v.training === 'object' && v.training !== null ? v.training : {}) as Record<string, unknown>;
  const training: StrictProfile['training'] = {
    command: Array.isArray(t.command) ? t.command.filter((s): s is string => typeof s === 'string').slice(0, 64).map((s) => s.slice(0, 4096)) : [],
    durationMs: typeof t.durationMs === 'number' && Number.isFinite(t.durationMs) ? t.durationMs : 0,
    handler: typeof t.handler === 'string' ? t.handler.slice(0, 64) : '',
  };
  if (typeof t.probe === 'string') training.probe = t.probe.slice(0, 4096);
  if (typeof t.exitCode === 'number' && Number.isInteger(t.exitCode)) training.exitCode = t.exitCode;
  const p: StrictProfile = {
    version: 1,
    manifestDigest: v.manifestDigest as string,
    learnedAt: typeof v.learnedAt === 'string' ? v.learnedAt.slice(0, 64) : '',
    arch: 'x86_64',
    syscalls: [...new Set(v.syscalls as string[])].sort(),
    counts,
    capabilities: [...new Set(v.capabilities as string[])].sort(),
    wroteRootfs: v.wroteRootfs as boolean,
    training,
  };
  if (typeof v.imageId === 'string' && DIGEST.test(v.imageId)) p.imageId = v.imageId;
  if (Array.isArray(v.imageNames)) p.imageNames = v.imageNames.filter((s): s is string => typeof s === 'string').slice(0, 32).map((s) => s.slice(0, 512));
  return p;
}
