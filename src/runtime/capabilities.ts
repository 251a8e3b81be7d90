/**
 * Linux capability names and the host's bounding set (what "ALL" means here).
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '../errors.ts';

/** Index = capability number (linux/capability.h). */
export const CAPABILITY_NAMES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL',
  'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT',
  'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE',
  'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG',
  'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

/** CRI-O's default set: what a container gets unless the request adds or drops. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE', 'CAP_KILL',
];

/** Decodes a hex capability mask (as in /proc/PID/status CapEff) into names. */
export function capabilityNames(hexMask: string): string[] {
  const mask = BigInt('0x' + hexMask.trim());
  const out: string[] = [];
  for (let i = 0; i < CAPABILITY_NAMES.length; i++) {
    if ((mask >> BigInt(i)) & 1n) out.push(CAPABILITY_NAMES[i]!);
  }
  return out;
}

let bounding: string[] | undefined;
/** The bounding set of this process: the most a container can be given. */
export function hostBoundingSet(): string[] {
  if (bounding === undefined) {
    const status = readFileSync('/proc/self/status', 'utf8');
    const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status);
    bounding = m ? capabilityNames(m[1]!) : [...CAPABILITY_NAMES];
  }
  return [...bounding];
}

/** "net_admin", "NET_ADMIN", "CAP_NET_ADMIN" → "CAP_NET_ADMIN"; unknown names are InvalidArgument. */
export function normalizeCapability(name: string): string {
  const up = name.trim().toUpperCase();
  const full = up.startsWith('CAP_') ? up : `CAP_${up}`;
  if (!CAPABILITY_NAMES.includes(full)) throw new InvalidArgumentError(`unknown capability ${JSON.stringify(name)}`);
  return full;
}

/**
 * Default set, plus `add`, minus `drop`; "ALL" in add means the host bounding set, "ALL" in drop
 * removes everything (then `add` is applied on top, as the kubelet expects). Result ⊆ bounding set.
 */
export function resolveCapabilities(add: readonly string[] = [], drop: readonly string[] = [], base: readonly string[] = DEFAULT_CAPABILITIES): string[] {
  const bnd = new Set(hostBoundingSet());
  const dropAll = drop.some((d) => d.toUpperCase() === 'ALL');
  const set = new Set<string>(dropAll ? [] : base);
  if (!dropAll) for (const d of drop) set.delete(normalizeCapability(d));
  for (const a of add) {
    if (a.toUpperCase() === 'ALL') for (const c of bnd) set.add(c);
    else set.add(normalizeCapability(a));
  }
  return CAPABILITY_NAMES.filter((c) => set.has(c) && bnd.has(c));
}
