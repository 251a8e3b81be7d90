/**
 * The supervisor of one container (or one exec'd process) is `bulkhead-vm-shim`, a small static C
 * program (guest/vm-shim.c, built by setup into `<assets>/vm/bin/`): the host process whose pid
 * stands for the process in the guest, so conmon (or a shell) waits on it like on runc's container
 * init. It holds the stdio it was given (pipes, or a terminal from bulkhead-vm-console), relays them
 * to the guest session through the pod's supervisor (vmd.ts), relays window sizes, and exits with
 * the guest process's exit code; when the VM dies instead it records the reason and exits 255.
 * (It was a Node.js process: ~20 MiB PSS per container; the C one costs well under 1 MiB.)
 *
 * This module says how to start it: the session request goes in a file (sent as-is as the `Q`
 * frame), and the shim starts in the pod dir with the socket given relative to it, so the pod dir
 * is not on its command line (procs.ts finds a pod's VM processes by command line; a container's
 * shim is not one of them: it exits by itself when the VM goes, after recording why).
 */
import { join } from 'node:path';

/** The exit code of a session whose VM went away. */
export const VM_GONE_EXIT = 255;

export interface ShimLaunch {
  mode: 'container' | 'exec';
  /** The shim binary (GuestAssets.shim). */
  shim: string;
  /** The pod's directory (holds vmd.sock): the shim's cwd. */
  podDir: string;
  /** JSON request file ({op: 'create'|'exec', ...}). */
  request: string;
  /** Remove the request file once read (exec requests are one-shot). */
  removeRequest?: boolean;
  tty: boolean;
  /** container: where the exit record goes (<container dir>/exit.json). */
  exitFile?: string;
  /** exec: where our pid goes once the process started. */
  pidFile?: string;
  /** fd the ready line (ready.ts) is written on; absent = errors go to stderr. */
  readyFd?: number;
  /** The shim dies with this pid (a foreground exec's caller). */
  parent?: number;
}

/** argv (without the program) and cwd of a shim for `l`. */
export function shimArgv(l: ShimLaunch): { args: string[]; cwd: string } {
  const args: string[] = [];
  if (l.mode === 'exec') args.push('--exec');
  if (l.tty) args.push('--tty');
  if (l.removeRequest) args.push('--rm-request');
  if (l.exitFile) args.push('--exit-file', l.exitFile);
  if (l.pidFile) args.push('--pid-file', l.pidFile);
  if (l.readyFd !== undefined) args.push('--ready-fd', String(l.readyFd));
  if (l.parent !== undefined) args.push('--parent', String(l.parent));
  args.push('vmd.sock', l.request);
  return { args, cwd: l.podDir };
}

/** The container's exit record path for its shim. */
export function exitFile(containerDir: string): string { return join(containerDir, 'exit.json'); }
