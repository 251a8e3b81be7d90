/**
 * How runsc is started where it builds a sandbox's network (`--network=sandbox`: gVisor's own
 * netstack, which copies the pod netns's interfaces, addresses and routes at sandbox creation and
 * takes the addresses off the host side).
 *
 * Debian's runsc 0.0~20221219 refuses that in every network namespace of a recent kernel ("cannot
 * run with network enabled in root network namespace"): after joining the target netns it takes
 * "/proc/sys/net/core/rmem_default exists" for "this is the root netns", and Linux has made that
 * sysctl per-netns, so it exists in every netns. The workaround, 'hide-proc-sys-net': the runsc
 * that creates the sandbox runs in a mount namespace of its own (unshare, propagation slave: host
 * mounts still reach it, none of its own reach the host, and it ends with the processes in it)
 * where an empty read-only tmpfs covers /proc/sys/net. A tmpfs over /proc/sys/net/core does not
 * work (the per-netns sysctl dentries are looked up past it).
 *
 * That test was runsc's only guard against taking the *host's* interfaces over (it removes their
 * addresses from the kernel). With it hidden, the caller must never start a sandbox this way in
 * the node's own network namespace: the backend runs host-network pods with `--network=host`
 * (see GvisorBackend.adjustSpec, `sandboxNetworkOf`).
 *
 * Cost, measured on this 2-core host under load: ~3 ms per wrapped call (unshare + sh + mount),
 * paid once per sandbox (its create); every other runsc call goes straight to runsc.
 */
import { statSync } from 'node:fs';
import type { OciSpec } from '../../oci/spec.ts';

/** How the runsc that creates a sandbox with `--network=sandbox` is started. */
export type SandboxLaunch = 'plain' | 'hide-proc-sys-net';

/**
 * Constant shell text run by `sh -c` with runsc's argv as "$@": no value of a pod, path or id is
 * ever part of it. The mount is inside the fresh mount namespace of `unshare`.
 */
export const HIDE_PROC_SYS_NET = 'mount -t tmpfs -o size=4k,mode=0555,nosuid,nodev,noexec bulkhead-hide-net /proc/sys/net && exec "$@"';

/** The prefix that starts `cmd args...` with /proc/sys/net hidden (each element one argv entry). */
export const HIDE_PREFIX: readonly string[] = ['unshare', '--mount', '--propagation', 'slave', '--', 'sh', '-c', HIDE_PROC_SYS_NET, 'sh'];

/** The command and argv that run `bin args...` as `launch` says. */
export function launchArgv(launch: SandboxLaunch, bin: string, args: readonly string[]): { cmd: string; args: string[] } {
  if (launch === 'plain') return { cmd: bin, args: [...args] };
  return { cmd: HIDE_PREFIX[0]!, args: [...HIDE_PREFIX.slice(1), bin, ...args] };
}

/** Annotation of a sandbox (root container) spec: the network mode its runsc runs with, set by the backend. */
export const SANDBOX_NETWORK_ANNOTATION = 'dev.bulkhead.gvisor.network';

/**
 * The network mode a sandbox with `spec` can have when the node's runsc runs `--network=sandbox`:
 * 'host' when the spec names no network namespace path (a host-network pod) or names the one
 * this daemon runs in (runsc must never be given the node's interfaces, least of all with its
 * root-netns test hidden), 'sandbox' otherwise. `selfNetns` is for tests.
 */
export function sandboxNetworkOf(spec: OciSpec, selfNetns = '/proc/self/ns/net'): 'sandbox' | 'host' {
  const ns = spec.linux?.namespaces?.find((n) => n.type === 'network');
  if (!ns) return 'host';
  if (!ns.path) return 'sandbox'; // a fresh, empty one runsc makes
  try {
    const a = statSync(ns.path);
    const b = statSync(selfNetns);
    return a.dev === b.dev && a.ino === b.ino ? 'host' : 'sandbox';
  } catch {
    return 'host'; // unreadable: runsc would fail on it anyway; never hide the test for it
  }
}
