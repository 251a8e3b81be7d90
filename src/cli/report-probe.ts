/**
 * The in-sandbox probe of `bulkhead report`: a busybox `sh` script (the demo image has every
 * busybox applet) that prints one `key=value` line per finding, and the parser that turns its
 * output into a typed record. What it looks at: the kernel it sees, its capabilities, seccomp
 * mode and filter count, no_new_privs, the processes and devices it sees, host paths in its
 * mountinfo, container-runtime sockets it can reach, /proc and /sys exposure, a list of privileged
 * operations tried (each harmless if it succeeds: it acts only on the sandbox's own namespaces or
 * files) with the errno it got, and TCP reachability of the node's own addresses that the report
 * passes in (PROBE_TARGETS="ip:port ..."; only this machine's addresses are ever given).
 */

/** Operations tried, as shell commands: none can harm the node if the sandbox lets it through. */
export const PRIVILEGED_OPS: readonly { name: string; what: string; cmd: string }[] = [
  { name: 'mount', what: 'mount a tmpfs (CAP_SYS_ADMIN)', cmd: 'mount -t tmpfs probe /mnt' },
  { name: 'mknod', what: 'create a device node (CAP_MKNOD)', cmd: 'mknod /tmp/.probe-null c 1 3' },
  { name: 'devmem', what: 'read /dev/mem (physical memory)', cmd: 'dd if=/dev/mem of=/dev/null bs=1 count=1' },
  { name: 'unshare-user', what: 'create a user namespace', cmd: 'unshare -U true' },
  { name: 'unshare-mount', what: 'create a mount namespace (CAP_SYS_ADMIN)', cmd: 'unshare -m true' },
  { name: 'hostname', what: 'set the (pod\'s) hostname (CAP_SYS_ADMIN)', cmd: 'hostname "$(hostname)"' },
  { name: 'link-add', what: 'add a network link (CAP_NET_ADMIN)', cmd: 'ip link add probe0 type dummy && ip link del probe0' },
  { name: 'raw-socket', what: 'open a raw socket (CAP_NET_RAW)', cmd: 'ping -c 1 -W 1 127.0.0.1' },
  { name: 'renice', what: 'raise its own priority (CAP_SYS_NICE)', cmd: 'renice -n -5 -p $$' },
  { name: 'chroot', what: 'chroot (CAP_SYS_CHROOT)', cmd: 'chroot / true' },
  { name: 'modules', what: 'list kernel modules (/proc/modules)', cmd: 'cat /proc/modules >/dev/null && [ -s /proc/modules ]' },
  { name: 'dmesg', what: 'read the kernel log', cmd: 'dmesg >/dev/null' },
  { name: 'kcore', what: 'read /proc/kcore', cmd: '[ ! -c /proc/kcore ] && dd if=/proc/kcore of=/dev/null bs=1 count=1' },
];

/** Container-runtime sockets whose presence in a sandbox is a breakout path. */
export const RUNTIME_SOCKETS: readonly string[] = [
  '/run/containerd/containerd.sock', '/var/run/docker.sock', '/run/docker.sock', '/run/crio/crio.sock',
  '/run/podman/podman.sock', '/run/bulkhead/cri.sock', '/var/run/bulkhead/cri.sock', '/run/dbus/system_bus_socket',
];

const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** The script, run as `sh -c PROBE_SCRIPT`; every line of its output is `key=value`. */
export const PROBE_SCRIPT = [
  'st=/proc/self/status',
  'f() { grep "^$1:" $st | awk \'{print $2}\'; }',
  'echo "kernel=$(uname -r)"',
  'echo "uid=$(id -u)"',
  'echo "cap_eff=$(f CapEff)"',
  'echo "cap_bnd=$(f CapBnd)"',
  'echo "seccomp=$(f Seccomp)"',
  'echo "seccomp_filters=$(f Seccomp_filters)"',
  'echo "no_new_privs=$(f NoNewPrivs)"',
  'echo "processes=$(ls -d /proc/[0-9]* 2>/dev/null | wc -l)"',
  'echo "devices=$(ls /dev 2>/dev/null | tr "\\n" " ")"',
  // mountinfo field 4 is the path inside the source filesystem: anything but / (or a kubelet-style file) is a host path shown to the sandbox
  'echo "host_paths=$(awk \'$4 != "/" {print $4}\' /proc/self/mountinfo | sort -u | head -32 | tr "\\n" " ")"',
  'echo "proc_sys=$(awk \'$5 == "/proc/sys" {print $6}\' /proc/self/mountinfo | head -1)"',
  'echo "sys=$(awk \'$5 == "/sys" {print $6}\' /proc/self/mountinfo | head -1)"',
  'if [ -c /proc/kcore ]; then echo "kcore=masked"; elif [ -r /proc/kcore ]; then echo "kcore=readable"; else echo "kcore=absent"; fi',
  'if ls /sys/firmware/* >/dev/null 2>&1; then echo "sys_firmware=visible"; else echo "sys_firmware=hidden"; fi',
  `s=""; for p in ${RUNTIME_SOCKETS.map(q).join(' ')}; do [ -S "$p" ] && s="$s $p"; done; echo "runtime_sockets=$s"`,
  // each operation: its exit code and the last line it printed on stderr (busybox ends it with strerror)
  ...PRIVILEGED_OPS.map((op) => `o=$( { ${op.cmd} ; } 2>&1 >/dev/null; echo "#rc=$?" ); m=$(printf "%s\\n" "$o" | grep -v "^#rc=" | tail -1); echo "op.${op.name}=\${o##*#rc=}|$m"`),
  // open = connected; refused = the node answered (reachable, nothing there); unreachable = an ICMP error; timeout = dropped
  'for t in $PROBE_TARGETS; do m=$(nc -w 2 "${t%:*}" "${t##*:}" </dev/null 2>&1 >/dev/null); if [ $? = 0 ]; then r=open; else case "$m" in *efused*) r=refused;; *nreachable*|*rohibited*) r=unreachable;; *) r=timeout;; esac; fi; echo "reach.$t=$r"; done',
  // syscall-heavy work: dd with 1-byte blocks makes a read and a write per byte (SYSCALL_LOOP_BYTES × 2 syscalls)
  `o=$(time sh -c "dd if=/dev/zero of=/dev/null bs=1 count=${'$'}{SYSCALL_LOOP_BYTES:-200000} 2>/dev/null" 2>&1 | grep real); echo "syscall_loop=${'$'}{o#real}"`,
  'echo "end=ok"',
].join('\n');

export type Reach = 'open' | 'refused' | 'unreachable' | 'timeout';
const REACH: readonly string[] = ['open', 'refused', 'unreachable', 'timeout'];

export interface OpResult { name: string; what: string; allowed: boolean; errno: string; message: string }

export interface ProbeReport {
  kernel: string;
  uid: number;
  /** Effective capabilities (hex mask) and their names. */
  capEff: string;
  capabilities: string[];
  /** 0 disabled, 1 strict, 2 filter (Seccomp: in /proc/self/status); -1 = not reported. */
  seccompMode: number;
  seccompFilters: number;
  noNewPrivs: boolean;
  processes: number;
  devices: string[];
  hostPaths: string[];
  procSysMount: string;
  sysMount: string;
  kcore: string;
  sysFirmware: string;
  runtimeSockets: string[];
  ops: OpResult[];
  /** TCP reachability of the targets given: open (connected), refused (the node answered), unreachable (ICMP error), timeout (dropped). */
  reach: Record<string, Reach>;
  /** Seconds the syscall loop took (busybox `time`, 10 ms resolution); -1 = not measured. */
  syscallLoopSeconds: number;
  /** The script ran to its end. */
  complete: boolean;
}

const CAPS = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP', 'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER', 'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT',
  'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE', 'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE',
  'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP', 'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ',
  'PERFMON', 'BPF', 'CHECKPOINT_RESTORE',
];

/** A capability mask ("00000000a80425fb") → names; bits past the known list are CAP_<bit>. */
export function capabilityNames(hex: string): string[] {
  if (!/^[0-9a-fA-F]{1,16}$/.test(hex)) return [];
  const mask = BigInt(`0x${hex}`);
  const out: string[] = [];
  for (let bit = 0; bit < 64; bit++) if ((mask >> BigInt(bit)) & 1n) out.push(CAPS[bit] ?? `CAP_${bit}`);
  return out;
}

/** strerror text (what busybox prints last) → errno name; "" when none is recognised. */
const ERRNO: [RegExp, string][] = [
  [/operation not permitted/i, 'EPERM'], [/permission denied/i, 'EACCES'], [/function not implemented/i, 'ENOSYS'],
  [/invalid argument/i, 'EINVAL'], [/no such file or directory/i, 'ENOENT'], [/no such device/i, 'ENODEV'],
  [/read-only file system/i, 'EROFS'], [/operation not supported/i, 'EOPNOTSUPP'], [/bad address/i, 'EFAULT'],
  [/address family not supported/i, 'EAFNOSUPPORT'], [/protocol not supported/i, 'EPROTONOSUPPORT'],
  [/file exists/i, 'EEXIST'], [/not a directory/i, 'ENOTDIR'], [/input\/output error/i, 'EIO'],
];

export function errnoOf(message: string): string {
  for (const [re, name] of ERRNO) if (re.test(message)) return name;
  return '';
}

/** The bytes the probe's dd copies one at a time (a read and a write each). */
export const SYSCALL_LOOP_BYTES = 200_000;

/** busybox `time`'s "0m 0.18s" / "1m 2.50s" → seconds; -1 when it is not that. */
export function loopSeconds(v: string): number {
  const m = /^\s*(\d{1,4})m\s*(\d{1,3}(?:\.\d{1,3})?)s\s*$/.exec(v);
  return m ? Number(m[1]) * 60 + Number(m[2]) : -1;
}

const MAX_VALUE = 4096;
const MAX_LIST = 64;

/** Parses the probe's output; unknown keys are ignored, values are bounded (the sandbox writes them). */
export function parseProbe(text: string): ProbeReport {
  const kv = new Map<string, string>();
  for (const line of text.split('\n').slice(0, 512)) {
    const i = line.indexOf('=');
    if (i <= 0 || i > 128) continue;
    kv.set(line.slice(0, i), line.slice(i + 1, i + 1 + MAX_VALUE).trim());
  }
  const str = (k: string): string => kv.get(k) ?? '';
  const int = (k: string, dflt = -1): number => (/^\d{1,12}$/.test(str(k)) ? Number(str(k)) : dflt);
  const list = (k: string): string[] => str(k).split(/\s+/).filter(Boolean).slice(0, MAX_LIST);
  const ops: OpResult[] = PRIVILEGED_OPS.map((op) => {
    const v = str(`op.${op.name}`);
    const bar = v.indexOf('|');
    const code = bar > 0 ? Number(v.slice(0, bar)) : NaN;
    const message = bar >= 0 ? v.slice(bar + 1, bar + 1 + 256) : '';
    const allowed = code === 0;
    return { name: op.name, what: op.what, allowed, errno: allowed ? '' : errnoOf(message), message: allowed ? '' : message };
  });
  const reach: Record<string, Reach> = {};
  for (const [k, v] of kv) {
    if (!k.startsWith('reach.') || Object.keys(reach).length >= MAX_LIST) continue;
    const target = k.slice(6);
    if (/^[0-9a-fA-F.:[\]]{3,64}:\d{1,5}$/.test(target) && REACH.includes(v)) reach[target] = v as Reach;
  }
  const capEff = /^[0-9a-fA-F]{1,16}$/.test(str('cap_eff')) ? str('cap_eff') : '';
  return {
    kernel: str('kernel').slice(0, 256),
    uid: int('uid'),
    capEff,
    capabilities: capabilityNames(capEff),
    seccompMode: int('seccomp'),
    seccompFilters: int('seccomp_filters', 0),
    noNewPrivs: str('no_new_privs') === '1',
    processes: int('processes'),
    devices: list('devices'),
    hostPaths: list('host_paths'),
    procSysMount: str('proc_sys').slice(0, 256),
    sysMount: str('sys').slice(0, 256),
    kcore: str('kcore').slice(0, 32),
    sysFirmware: str('sys_firmware').slice(0, 32),
    runtimeSockets: list('runtime_sockets'),
    ops,
    reach,
    syscallLoopSeconds: loopSeconds(str('syscall_loop')),
    complete: str('end') === 'ok',
  };
}
