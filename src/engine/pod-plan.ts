/**
 * How the engine realises a pod on a backend: whether it starts an infra ("pause") container, and
 * as what each app container is created. Read from the backend's `podModel`; every backend today
 * gets a pause container where it asks for one and app containers of role 'container'.
 *
 * ## gVisor: one sandbox per pod, app containers as runsc sub-containers
 * The pause container is the runsc root container — the sandbox, in the pod's network namespace —
 * and every app container is a sub-container inside it (annotations
 * `io.kubernetes.cri.container-type` / `sandbox-id`, set by the backend), each under its own
 * conmon. Debian's 2022 runsc cannot be driven by conmon directly for sub-containers; found by
 * running it (runsc 0.0~20221219, ptrace):
 *  - `runsc create --pid-file` writes the *sandbox* pid for a sub-container. conmon waits on that
 *    pid, which is not its child and does not exit with the sub-container; conmon then leaves as
 *    soon as it has no children and records exit code -1.
 *  - a sub-container's stdio is taken from the `runsc start` process, not from `runsc create`
 *    (which conmon runs with the log pipes): conmon would never see the output.
 *  - `runsc wait ID` fails at once ("not started") before `runsc start`; after it, it returns the
 *    sub-container's real status (128+N for signal N), even when asked after the exit, and fails
 *    with an EOF from the sandbox when the whole sandbox died.
 * So conmon runs runsc through a shim (src/runtime/gvisor/subcontainer-shim.ts): for a
 * sub-container's `create` it leaves a waiter process in conmon's pid slot that keeps conmon's
 * stdio; the backend's `start` wakes it, it runs `runsc start` with that stdio (CRI log and
 * attach work) and exits with `runsc wait`'s status, which conmon records as the exit code. The
 * waiter outlives the daemon like conmon does, so a restarted daemon finds running
 * sub-containers as it finds any container. Everything else passes straight to runsc.
 *
 * What the pod gets: one Sentry for all its containers. The network is the pod netns (runsc runs
 * with `--network=host` inside it; Debian's runsc refuses its own netstack there), so 127.0.0.1,
 * the pod IP and ports are shared; port-forward execs `nc` in the pause container. The Sentry
 * makes those socket calls with the pause spec's capabilities, which therefore hold
 * CAP_NET_BIND_SERVICE (a container's own drop of it is not enforced by gVisor there). PID POD
 * (`shareProcessNamespace`) puts a container in the sandbox's root PID namespace, the pause's:
 * the engine names the pause's `/proc/<pid>/ns/pid` (`podModel.pidNamespaceByPath`) and the
 * backend maps it; TARGET joins the target's namespace (the backend maps the target's pid to its
 * spec). In one sandbox the pod's PID namespace is the parent of each container's own, so the
 * backend refuses to mix PID POD and private namespaces in a pod (Kubernetes never does; it sets
 * shareProcessNamespace per pod). Resource limits are pod-level: the
 * sub-containers' processes run in the Sentry, in the sandbox's cgroup, which the backend bounds
 * by the sum of their limits (going over it ends the whole sandbox).
 */
import type { Backend } from '../runtime/backend.ts';

export interface PodPlan {
  /** Create and start an infra (pause) container for the pod. */
  pause: boolean;
  /** The role app containers are created with ('sandbox' = each container would be its own sandbox; no backend needs it now). */
  appRole: 'sandbox' | 'container';
  /** Containers of the pod can share a PID namespace (PID POD / TARGET). */
  sharedPid: boolean;
}

/** The engine's plan for a pod on `backend` (see the file comment for gVisor). */
export function podPlan(backend: Pick<Backend, 'podModel'>): PodPlan {
  return { pause: backend.podModel.infraContainer, appRole: 'container', sharedPid: true };
}
