/**
 * Bulkhead's default seccomp profile ("RuntimeDefault"): deny by default with EPERM, allow the
 * system calls ordinary containerised programs use. Left out on purpose: kernel modules, kexec,
 * reboot, swap, clock setting, mount/namespace creation (mount, umount2, pivot_root, unshare,
 * setns, the new mount API), keyrings (add_key, keyctl, request_key), bpf, perf_event_open,
 * ptrace and cross-process memory access, userfaultfd, handle-based opens, NUMA policy,
 * quotactl, acct, iopl/ioperm, personality changes other than the harmless ones, and clone
 * with namespace flags. clone3 answers ENOSYS so libc falls back to clone, whose flags can be
 * checked (clone3 passes them in memory, out of seccomp's reach).
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { InvalidArgumentError } from '../errors.ts';
import { partsBeneath, walkDirsBeneath } from '../util/beneath.ts';
import type { OciSeccomp, OciSeccompSyscall } from '../oci/spec.ts';

const ALLOWED: readonly string[] = [
  // files and descriptors
  'access', 'faccessat', 'faccessat2', 'chdir', 'fchdir', 'chmod', 'fchmod', 'fchmodat', 'chown', 'fchown',
  'fchownat', 'lchown', 'chown32', 'fchown32', 'lchown32', 'close', 'close_range', 'creat', 'dup', 'dup2', 'dup3',
  'fadvise64', 'fadvise64_64', 'fallocate', 'fcntl', 'fcntl64', 'fdatasync', 'flock', 'fsync', 'ftruncate',
  'ftruncate64', 'getcwd', 'getdents', 'getdents64', 'link', 'linkat', 'lseek', '_llseek', 'mkdir', 'mkdirat',
  'mknod', 'mknodat', 'open', 'openat', 'openat2', 'pipe', 'pipe2', 'pread64', 'preadv', 'preadv2', 'pwrite64',
  'pwritev', 'pwritev2', 'read', 'readahead', 'readlink', 'readlinkat', 'readv', 'rename', 'renameat',
  'renameat2', 'rmdir', 'sendfile', 'sendfile64', 'splice', 'stat', 'stat64', 'fstat', 'fstat64', 'lstat',
  'lstat64', 'newfstatat', 'fstatat64', 'statx', 'statfs', 'statfs64', 'fstatfs', 'fstatfs64', 'symlink',
  'symlinkat', 'sync', 'syncfs', 'sync_file_range', 'tee', 'truncate', 'truncate64', 'umask', 'unlink',
  'unlinkat', 'utime', 'utimes', 'utimensat', 'utimensat_time64', 'futimesat', 'vmsplice', 'write', 'writev',
  'copy_file_range', 'ioctl', 'getxattr', 'lgetxattr', 'fgetxattr', 'listxattr', 'llistxattr', 'flistxattr',
  'setxattr', 'lsetxattr', 'fsetxattr', 'removexattr', 'lremovexattr', 'fremovexattr', 'chroot',
  'memfd_create', 'eventfd', 'eventfd2', 'signalfd', 'signalfd4', 'timerfd_create', 'timerfd_settime',
  'timerfd_gettime', 'timerfd_settime64', 'timerfd_gettime64', 'inotify_init', 'inotify_init1',
  'inotify_add_watch', 'inotify_rm_watch', 'fanotify_mark',
  // polling and async io
  'select', '_newselect', 'pselect6', 'pselect6_time64', 'poll', 'ppoll', 'ppoll_time64', 'epoll_create',
  'epoll_create1', 'epoll_ctl', 'epoll_wait', 'epoll_pwait', 'epoll_pwait2', 'io_setup', 'io_destroy',
  'io_getevents', 'io_pgetevents', 'io_pgetevents_time64', 'io_submit', 'io_cancel',
  // memory
  'brk', 'mmap', 'mmap2', 'munmap', 'mremap', 'mprotect', 'madvise', 'mincore', 'mlock', 'mlock2', 'mlockall',
  'munlock', 'munlockall', 'msync', 'remap_file_pages', 'membarrier', 'pkey_alloc', 'pkey_free', 'pkey_mprotect',
  // processes, threads, signals
  'arch_prctl', 'prctl', 'capget', 'capset', 'clone', 'fork', 'vfork', 'execve', 'execveat', 'exit', 'exit_group',
  'wait4', 'waitid', 'waitpid', 'kill', 'tkill', 'tgkill', 'rt_sigaction', 'rt_sigpending', 'rt_sigprocmask',
  'rt_sigqueueinfo', 'rt_tgsigqueueinfo', 'rt_sigreturn', 'rt_sigsuspend', 'rt_sigtimedwait',
  'rt_sigtimedwait_time64', 'sigaction', 'sigaltstack', 'signal', 'sigpending', 'sigprocmask', 'sigreturn',
  'sigsuspend', 'pause', 'set_tid_address', 'set_robust_list', 'get_robust_list', 'futex', 'futex_time64',
  'futex_waitv', 'rseq', 'restart_syscall', 'sched_yield', 'sched_getaffinity', 'sched_setaffinity',
  'sched_getattr', 'sched_setattr', 'sched_getparam', 'sched_setparam', 'sched_getscheduler',
  'sched_setscheduler', 'sched_get_priority_max', 'sched_get_priority_min', 'sched_rr_get_interval',
  'sched_rr_get_interval_time64', 'getpriority', 'setpriority', 'ioprio_get', 'ioprio_set', 'pidfd_open',
  'pidfd_send_signal', 'pidfd_getfd', 'set_thread_area', 'get_thread_area', 'alarm', 'getitimer', 'setitimer',
  'timer_create', 'timer_delete', 'timer_getoverrun', 'timer_gettime', 'timer_settime', 'timer_gettime64',
  'timer_settime64', 'nanosleep', 'clock_nanosleep', 'clock_nanosleep_time64', 'clock_gettime',
  'clock_gettime64', 'clock_getres', 'clock_getres_time64', 'gettimeofday', 'time', 'times', 'getrusage',
  'getrlimit', 'setrlimit', 'prlimit64', 'ugetrlimit', 'sysinfo', 'uname', 'getrandom', 'getcpu',
  // identity
  'getpid', 'getppid', 'gettid', 'getpgid', 'setpgid', 'getpgrp', 'getsid', 'setsid', 'getuid', 'geteuid',
  'getgid', 'getegid', 'getuid32', 'geteuid32', 'getgid32', 'getegid32', 'setuid', 'setgid', 'setuid32',
  'setgid32', 'setreuid', 'setregid', 'setreuid32', 'setregid32', 'setresuid', 'setresgid', 'setresuid32',
  'setresgid32', 'getresuid', 'getresgid', 'getresuid32', 'getresgid32', 'getgroups', 'setgroups',
  'getgroups32', 'setgroups32', 'setfsuid', 'setfsgid', 'setfsuid32', 'setfsgid32',
  // sockets
  'socket', 'socketpair', 'socketcall', 'bind', 'connect', 'listen', 'accept', 'accept4', 'getsockname',
  'getpeername', 'getsockopt', 'setsockopt', 'send', 'sendto', 'sendmsg', 'sendmmsg', 'recv', 'recvfrom',
  'recvmsg', 'recvmmsg', 'recvmmsg_time64', 'shutdown',
  // System V / POSIX IPC (namespaced)
  'shmget', 'shmat', 'shmdt', 'shmctl', 'semget', 'semop', 'semctl', 'semtimedop', 'semtimedop_time64',
  'msgget', 'msgsnd', 'msgrcv', 'msgctl', 'ipc', 'mq_open', 'mq_unlink', 'mq_timedsend', 'mq_timedreceive',
  'mq_timedsend_time64', 'mq_timedreceive_time64', 'mq_notify', 'mq_getsetattr',
  // misc
  'sethostname', 'setdomainname', 'syslog', 'vhangup', 'landlock_create_ruleset', 'landlock_add_rule',
  'landlock_restrict_self', 'process_mrelease',
];

/** Namespace-creating clone flags (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET). */
const CLONE_NS_FLAGS = 0x7e020000;

/** Harmless personality(2) values: PER_LINUX, PER_LINUX32, UNAME26 variants, and the query 0xffffffff. */
const PERSONALITY_VALUES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];

const ENOSYS = 38;

/** A fresh copy of the default profile (callers may extend it). */
export function defaultSeccompProfile(): OciSeccomp {
  const allowed = ALLOWED.filter((n) => n !== 'clone');
  const syscalls: OciSeccompSyscall[] = [
    { names: allowed, action: 'SCMP_ACT_ALLOW' },
    { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: CLONE_NS_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
    ...PERSONALITY_VALUES.map((v): OciSeccompSyscall => ({ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: v, op: 'SCMP_CMP_EQ' }] })),
  ];
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: 1,
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    syscalls,
  };
}

// ---------------------------------------------------------------------------------------------
// Localhost profiles (a file the pod names): where they may be, how they are read, what they may allow.

/** Largest localhost profile read (real profiles are a few KiB). */
export const MAX_PROFILE_BYTES = 1024 * 1024;
const PROFILE_READ_TIMEOUT_MS = 2000;
const RULE = 'seccomp localhost profiles are regular files under the seccomp profile root';

/**
 * Reads a localhost seccomp profile: `ref` must be an absolute path strictly under `root` with no
 * symlink below the root (each component lstat'ed, the file opened O_NOFOLLOW|O_NONBLOCK), a
 * regular file (fstat before any read: FIFOs, devices and sockets are refused without reading) of
 * at most MAX_PROFILE_BYTES, read within a timeout. Errors name the rule, never the content.
 */
export async function readLocalhostProfile(ref: string, root: string, maxBytes = MAX_PROFILE_BYTES): Promise<OciSeccomp> {
  const parts = partsBeneath(root, ref, `seccomp localhost profile ${JSON.stringify(ref.slice(0, 200))}`, `${RULE} (${root})`);
  const what = `seccomp localhost profile ${ref}`;
  await walkDirsBeneath(root, parts.slice(0, -1), { create: false, what, rule: RULE });
  let fh: FileHandle;
  try {
    fh = await open(ref, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new InvalidArgumentError(`${what} is a symlink; symlinks are not followed (${RULE})`);
    if (code === 'ENOENT') throw new InvalidArgumentError(`${what} does not exist (${RULE})`);
    throw new InvalidArgumentError(`${what} cannot be opened: ${code ?? 'error'} (${RULE})`);
  }
  let text: string;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new InvalidArgumentError(`${what} is not a regular file (${RULE})`);
    if (st.size > maxBytes) throw new InvalidArgumentError(`${what} is larger than ${maxBytes} bytes (${RULE})`);
    const buf = Buffer.alloc(Math.min(st.size, maxBytes) + 1);
    let n = 0;
    const deadline = Date.now() + PROFILE_READ_TIMEOUT_MS;
    while (n < buf.length) {
      if (Date.now() > deadline) throw new InvalidArgumentError(`${what} could not be read within ${PROFILE_READ_TIMEOUT_MS} ms (${RULE})`);
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    if (n > maxBytes) throw new InvalidArgumentError(`${what} is larger than ${maxBytes} bytes (${RULE})`);
    text = buf.subarray(0, n).toString('utf8');
  } finally {
    await fh.close();
  }
  let profile: unknown;
  // JSON.parse's message quotes the text: never pass it on
  try { profile = JSON.parse(text); } catch { throw new InvalidArgumentError(`${what} is not valid JSON`); }
  if (typeof profile !== 'object' || profile === null || Array.isArray(profile)) throw new InvalidArgumentError(`${what} is not a seccomp profile (a JSON object)`);
  const p = profile as Record<string, unknown>;
  if (typeof p.defaultAction !== 'string') throw new InvalidArgumentError(`${what} has no defaultAction`);
  if (p.syscalls !== undefined && p.syscalls !== null) {
    if (!Array.isArray(p.syscalls)) throw new InvalidArgumentError(`${what}: syscalls must be a list`);
    for (const s of p.syscalls as unknown[]) {
      const r = s as Record<string, unknown> | null;
      if (typeof r !== 'object' || r === null || typeof r.action !== 'string' || !Array.isArray(r.names) || !r.names.every((x) => typeof x === 'string')) {
        throw new InvalidArgumentError(`${what}: every syscalls entry needs names (strings) and an action`);
      }
      if (r.args !== undefined && r.args !== null && !Array.isArray(r.args)) throw new InvalidArgumentError(`${what}: syscalls args must be a list`);
    }
  }
  return profile as OciSeccomp;
}

const ALLOWING = new Set(['SCMP_ACT_ALLOW', 'SCMP_ACT_LOG']);

function sameArgs(a: OciSeccompSyscall['args'], b: OciSeccompSyscall['args']): boolean {
  const norm = (x: OciSeccompSyscall['args']): string => JSON.stringify((x ?? []).map((r) => [r.index, r.value, r.valueTwo ?? 0, r.op]));
  return norm(a) === norm(b);
}

/**
 * For a pod whose level does not allow unconfined seccomp: a localhost profile may not allow by
 * default, nor allow a system call the built-in profile denies (or allow one the built-in
 * profile only allows with argument checks — clone, personality — without the same checks).
 * Returns the first problem, or undefined.
 */
export function profileLooserThanDefault(profile: OciSeccomp): string | undefined {
  if (ALLOWING.has(profile.defaultAction)) return `its default action ${profile.defaultAction} allows every system call`;
  const dflt = defaultSeccompProfile().syscalls ?? [];
  const plain = new Set(dflt.filter((r) => ALLOWING.has(r.action) && !r.args?.length).flatMap((r) => r.names));
  for (const r of profile.syscalls ?? []) {
    if (!ALLOWING.has(r.action)) continue;
    for (const name of r.names) {
      if (plain.has(name)) continue;
      const conditional = dflt.filter((d) => ALLOWING.has(d.action) && d.args?.length && d.names.includes(name));
      if (conditional.length > 0 && r.args?.length && conditional.some((d) => sameArgs(d.args, r.args))) continue;
      return `it allows ${name}, which the built-in profile ${conditional.length > 0 ? 'only allows with argument checks' : 'denies'}`;
    }
  }
  return undefined;
}
