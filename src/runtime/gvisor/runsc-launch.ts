/**
 * How runsc is started where it builds a sandbox's network (`--network=sandbox`: gVisor's own
 * netstack, which copies the pod netns's interfaces, addresses and routes at sandbox creation and
 * takes the addresses off the host side).
 *
 * Debian's runsc 0.0~20221219 refuses that in every network namespace of a recent kernel ("cannot
 * run with network enabled in root network namespace"): after joining the target netns it takes
 * "/proc/sys/net/core/rmem_default exists" for "this is the root netns", and Linux has made that
 * sysctl per-netns, so it exists in every netns. The workaround, 'hide-proc-sys-net': the runsc
 * that starts the sandbox (where runsc 2022 sets its network up) runs in a mount namespace of its
 * own (unshare; propagation slave: host mounts still reach it, none of its own reach the host, and
 * it ends with that short-lived process) where /proc/sys/net is covered by a fresh procfs
 * (`unshare --mount-proc=/proc/sys/net`: unshare's own mount, so no shell and no mount(8); a
 * procfs root has no `core/`). A cover over /proc/sys/net/core does not work (the per-netns sysctl
 * dentries are looked up past it); an empty tmpfs over /proc/sys/net works as well but needs
 * sh and mount(8), three execs instead of one.
 *
 * That test was runsc's only guard against taking the *host's* interfaces over (it removes their
 * addresses from the kernel). With it hidden, the caller must never start a sandbox this way in
 * the node's own network namespace: the backend runs host-network pods with `--network=host`
 * (see GvisorBackend.adjustSpec, `sandboxNetworkOf`).
 *
 * Cost, measured on this 2-core host: one extra exec (unshare), ~1-3 ms per wrapped call by the
 * load, paid once per sandbox (its start); every other runsc call goes straight to runsc.
 */
import { statSync } from 'node:fs';
import type { OciSpec } from '../../oci/spec.ts';

/** How the runsc that creates a sandbox with `--network=sandbox` is started. */
export type SandboxLaunch = 'plain' | 'hide-proc-sys-net';

/**
 * The prefix that starts `cmd args...` with /proc/sys/net hidden (each element one argv entry;
 * runsc's own argv follows `--` as given, never through a shell). The mount is made inside the
 * fresh mount namespace of `unshare` and goes with it.
 */
export const HIDE_PREFIX: readonly string[] = ['unshare', '--mount', '--propagation', 'slave', '--mount-proc=/proc/sys/net', '--'];

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
