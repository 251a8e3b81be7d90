/**
 * Pods whose containers join namespaces by path (runc, crun): the host kernel provides every
 * namespace, and something must keep the pod's IPC and UTS (and, with PID POD, PID) namespaces
 * alive between containers.
 *
 *  - Pinned (the usual case): the namespace helper (../helpers/pinns.ts) creates IPC and UTS
 *    once, sets the hostname and the pod's sysctls in them, and bind-mounts them on files under
 *    <podDir>/ns. No process per pod; one ~2 ms process at creation and one at removal.
 *  - A pause container (`buildPauseSpec`): when the pod shares one PID namespace (that needs a
 *    process to own it), when pinning is off, or when the helper cannot be built. Containers join
 *    /proc/<pause pid>/ns/{ipc,uts,pid}.
 *  - Nothing, for a one-shot pod (`ownNamespaces`): its one container makes its own IPC and UTS.
 *
 * The network namespace is the pod's (network/), named by path in every container's spec.
 * Port-forward enters it with nsenter. Removal: containers, then the pause, then the pins.
 */
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { UnimplementedError } from '../../errors.ts';
import type { ContainerRuntime } from '../backend.ts';
import type { Logger } from '../../util/log.ts';
import type { NamespaceChoice } from '../spec.ts';
import { checkPinnableSysctls, ensurePinns, pinNamespaces, unpinNamespaces } from '../helpers/pinns.ts';
import { destroyInOrder, dialHost, dialNetns, stopSandbox } from './common.ts';
import {
  SINGLE_CONTAINER_ANNOTATION,
  type ContainerNamespaceRequest, type PodConnection, type PodSandbox, type PodSandboxPlan, type PodSandboxSpec, type PodSandboxState, type SandboxCreateOptions,
} from './pod-sandbox.ts';

interface PinPlan { bin: string; ipc?: string; uts?: string }

/** The plan of a one-shot pod whose one container makes its own IPC and UTS namespaces: nothing is held. */
const OWN_NAMESPACES = 'own-namespaces';

/**
 * A one-shot pod (SINGLE_CONTAINER_ANNOTATION, `bulkhead run --rm`) has no second container to
 * share IPC and UTS with: its container makes them itself (runc sets the pod's hostname in its
 * new UTS namespace), as podman's container does, and nothing is pinned at creation or unpinned at
 * removal (two helper processes less on every run). On the loopback-only network it makes its
 * network namespace too (runc brings lo up in a namespace it creates): two more. Not with sysctls
 * (the pinning helper sets those) nor with a pod-wide PID namespace (a pause process holds that).
 */
function ownNamespaces(pod: PodSandboxSpec): boolean {
  return pod.annotations?.[SINGLE_CONTAINER_ANNOTATION] === 'true' && pod.pid !== 'POD' && Object.keys(pod.sysctls).length === 0;
}

export class NamespacesJoined implements PodSandbox {
  readonly kind = 'namespaces-joined' as const;
  readonly #rt: ContainerRuntime;
  readonly #log: Logger;
  #helperWarned = false;

  constructor(rt: ContainerRuntime, logger: Logger) {
    this.#rt = rt;
    this.#log = logger;
  }

  async plan(pod: PodSandboxSpec): Promise<PodSandboxPlan> {
    if (ownNamespaces(pod)) return { sandboxContainer: false, detail: OWN_NAMESPACES, ownNetwork: true };
    const pins = await this.#pinPlan(pod);
    return pins ? { sandboxContainer: false, detail: pins } : { sandboxContainer: true };
  }

  /** Which namespaces are pinned to files, or undefined for a pause container. */
  async #pinPlan(pod: PodSandboxSpec): Promise<PinPlan | undefined> {
    if (!pod.pinNamespaces) return undefined;
    if (pod.pid === 'POD') return undefined; // the pod's PID namespace needs a process
    let bin: string;
    try {
      bin = await ensurePinns(pod.helperDir);
    } catch (err) {
      if (!this.#helperWarned) this.#log.warn('the namespace helper (bulkhead-pinns) is unavailable; pods use a pause container', { err });
      this.#helperWarned = true;
      return undefined;
    }
    const ipc = pod.ipc !== 'NODE';
    const uts = !(pod.hostNetwork && !pod.hostname);
    checkPinnableSysctls(pod.sysctls, { ipc, uts, net: !pod.hostNetwork });
    return {
      bin,
      ...(ipc ? { ipc: join(pod.podDir, 'ns', 'ipc') } : {}),
      ...(uts ? { uts: join(pod.podDir, 'ns', 'uts') } : {}),
    };
  }

  async create(pod: PodSandboxSpec, plan: PodSandboxPlan, opts: SandboxCreateOptions): Promise<PodSandboxState> {
    if (plan.detail === OWN_NAMESPACES) return { sandboxId: '', namespacePaths: {} };
    const pins = plan.detail as PinPlan | undefined;
    if (pins && !plan.sandboxContainer) {
      await mkdir(join(pod.podDir, 'ns'), { mode: 0o700 });
      const netSysctls = Object.keys(pod.sysctls).some((k) => k.replaceAll('/', '.').startsWith('net.'));
      await pinNamespaces(pins.bin, {
        ...(pins.ipc ? { ipc: pins.ipc } : {}),
        ...(pins.uts ? { uts: pins.uts } : {}),
        ...(pins.uts && pod.hostname ? { hostname: pod.hostname } : {}),
        ...(pod.netnsPath && netSysctls ? { joinNet: pod.netnsPath } : {}),
        sysctls: pod.sysctls, signal: opts.signal,
      });
      return { sandboxId: '', namespacePaths: { ...(pins.ipc ? { ipc: pins.ipc } : {}), ...(pins.uts ? { uts: pins.uts } : {}) } };
    }
    const spec = await opts.sandboxSpec();
    const { pid } = await this.#rt.createContainer({
      id: opts.sandboxId, name: opts.name, spec, logPath: opts.logPath, signal: opts.signal,
      pod: { podId: pod.podId, role: 'sandbox', ...(pod.netnsPath ? { netnsPath: pod.netnsPath } : {}) },
    });
    opts.signal.throwIfAborted();
    await this.#rt.start(opts.sandboxId, opts.signal);
    return {
      sandboxId: opts.sandboxId,
      namespacePaths: pid > 0 ? { ipc: `/proc/${pid}/ns/ipc`, uts: `/proc/${pid}/ns/uts`, pid: `/proc/${pid}/ns/pid` } : {},
    };
  }

  containerNamespaces(req: ContainerNamespaceRequest): { network: NamespaceChoice; ipc: NamespaceChoice; uts: NamespaceChoice; pid: NamespaceChoice } {
    const { pod, state } = req;
    const paths = state.namespacePaths;
    let pid: NamespaceChoice;
    switch (req.pid) {
      case 'NODE': pid = 'host'; break;
      case 'POD': pid = paths.pid ? { path: paths.pid } : 'private'; break;
      case 'TARGET': pid = { path: `/proc/${req.target!.pid}/ns/pid` }; break;
      default: pid = 'private';
    }
    return {
      network: pod.hostNetwork ? 'host' : pod.netnsPath ? { path: pod.netnsPath } : 'private',
      ipc: pod.ipc === 'NODE' ? 'host' : paths.ipc ? { path: paths.ipc } : 'private',
      uts: pod.hostNetwork && !pod.hostname ? 'host' : paths.uts ? { path: paths.uts } : 'private',
      pid,
    };
  }

  async dial(pod: PodSandboxSpec, _state: PodSandboxState, port: number, signal: AbortSignal): Promise<PodConnection> {
    // a one-shot pod's container made its own netns (ownNetwork): nothing of the pod's reaches it,
    // and the host's loopback is not the pod's
    if (!pod.hostNetwork && !pod.netnsPath) throw new UnimplementedError(`pod ${pod.podId} is a one-shot pod (${SINGLE_CONTAINER_ANNOTATION}) whose container has a network of its own: port-forward does not reach it; run it without --rm`);
    return pod.hostNetwork || !pod.netnsPath ? dialHost(port) : dialNetns(pod.netnsPath, port, signal);
  }

  async stop(state: PodSandboxState, signal: AbortSignal): Promise<void> {
    await stopSandbox(this.#rt, state, signal);
  }

  async destroy(pod: { podDir: string; helperDir?: string }, state: PodSandboxState, removeContainers: () => Promise<void>, signal: AbortSignal): Promise<void> {
    await destroyInOrder(this.#rt, state, removeContainers, () => unpinUnder(pod.podDir, pod.helperDir, signal), signal);
  }
}

/** Releases the namespace files of a pod (whatever is under <podDir>/ns, record or not). */
async function unpinUnder(podDir: string, helperDir: string | undefined, signal: AbortSignal): Promise<void> {
  let names: string[];
  try { names = await readdir(join(podDir, 'ns')); } catch { return; }
  if (names.length === 0) return;
  await unpinNamespaces(await ensurePinns(helperDir), names.map((n) => join(podDir, 'ns', n)), signal);
}
