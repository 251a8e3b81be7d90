/**
 * How the engine realises a pod on a backend: whether it starts an infra ("pause") container, and
 * as what each app container is created.
 *
 * ## gVisor: one sandbox per container, inside the pod's network namespace
 * runsc can run several containers in one sandbox (the pause as the root container, app containers
 * as sub-containers, chosen by the `io.kubernetes.cri.container-type` annotations). Under conmon
 * that model does not work with Debian's 2022 runsc, for three reasons found by running it:
 *  - `runsc create --pid-file` writes the *sandbox* pid for a sub-container. conmon waits on that
 *    pid, which is not its child and does not exit when the sub-container does; conmon then
 *    leaves as soon as it has no children and writes exit code -1 to its exit file. So the engine
 *    saw exit code -1, and a stop waiting for the exit file of a still-running container hung.
 *  - a sub-container's stdio is taken from the `runsc start` process, not from `runsc create`
 *    (which conmon runs with the log pipes), so conmon never sees the output: no CRI log.
 *  - `runsc wait ID` does return a sub-container's real status, but using it would need a shim
 *    between conmon and runsc (a waiter process whose pid goes in the pid file) in runtime/.
 * So the engine runs every gVisor container as its own sandbox (role 'sandbox' towards the
 * backend: a root container, the one model conmon monitors correctly), all of a pod's sandboxes in
 * the pod's network namespace, and starts no pause sandbox at all.
 *
 * What the pod keeps: the network namespace. The backend runs runsc with `--network=host` inside
 * the pod netns (Debian's runsc refuses its own netstack there), so containers of a pod share
 * 127.0.0.1, the pod IP and ports exactly as with runc, and port-forward enters the netns from the
 * host. Hostname, /etc/hosts and /etc/resolv.conf are the pod's (the same files are mounted into
 * every sandbox, and each sandbox gets the pod hostname).
 * What the pod loses: a shared IPC namespace (SysV IPC / POSIX message queues between containers)
 * and a shared PID namespace (`shareProcessNamespace`, TARGET) — the engine refuses PID POD/TARGET
 * on such a backend rather than silently not sharing. Each container also costs a sandbox
 * (sentry + gofer) instead of a sub-container: more memory per pod.
 * If a future runsc uses its own netstack in the pod netns (`--network=sandbox`), sandboxes no
 * longer share a network stack; then one sandbox per pod (with a conmon-compatible sub-container
 * shim) becomes necessary again.
 */
import type { Backend } from '../runtime/backend.ts';

export interface PodPlan {
  /** Create and start an infra (pause) container for the pod. */
  pause: boolean;
  /** The role app containers are created with: 'sandbox' = each container is its own sandbox. */
  appRole: 'sandbox' | 'container';
  /** Containers of the pod can share a PID namespace (PID POD / TARGET). */
  sharedPid: boolean;
}

/** The engine's plan for a pod on `backend` (see the file comment for gVisor). */
export function podPlan(backend: Pick<Backend, 'podModel'>): PodPlan {
  return { pause: backend.podModel.infraContainer, appRole: 'container', sharedPid: true };
}
