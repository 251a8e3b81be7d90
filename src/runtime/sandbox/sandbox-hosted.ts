/**
 * Pods whose containers run inside one sandbox (gVisor: one Sentry per pod; microvm: one VM per
 * pod; later Kata): the sandbox container is created and started first, with the pod's network
 * namespace, and every app container is created inside it (the backend sets the CRI container-type
 * and sandbox-id annotations from its PodRef). The sandbox's kernel provides the namespaces; how
 * a container's spec names them is the backend's business (`namespaces` below), as is how a port
 * inside the pod is reached (`dialVia`). Removal: containers, then the sandbox.
 *
 * A backend may run a pod's one container as the sandbox itself (`rootApp`): the plan then has no
 * sandbox container, create() makes nothing, and the pod's container is created with the
 * namespaces of `rootNamespaces` and no sandboxContainerId (the backend makes it a sandbox). On
 * the loopback-only network that container's network is its own (`rootNamespaces` says
 * 'private'): the plan says ownNetwork, and the engine makes no pod netns for it.
 */
import { FailedPreconditionError, UnimplementedError } from '../../errors.ts';
import type { ContainerRuntime } from '../backend.ts';
import type { NamespaceChoice } from '../spec.ts';
import { destroyInOrder, dialHost, dialInside, dialNetns, stopSandbox } from './common.ts';
import { SINGLE_CONTAINER_ANNOTATION } from './pod-sandbox.ts';
import type {
  ContainerNamespaceRequest, PodConnection, PodSandbox, PodSandboxPlan, PodSandboxSpec, PodSandboxState, SandboxCreateOptions,
} from './pod-sandbox.ts';

export interface SandboxHostedHooks {
  /** The namespaces an app container's spec names, in the backend's own terms. */
  namespaces(req: ContainerNamespaceRequest): { network: NamespaceChoice; ipc: NamespaceChoice; uts: NamespaceChoice; pid: NamespaceChoice };
  /**
   * How to reach a port inside the pod: 'netns' where the pod's sockets are host sockets in the
   * pod's network namespace (gVisor with --network=host), 'sandbox' where only the sandbox can
   * (its own network stack: a VM, gVisor's netstack).
   */
  dialVia(): 'netns' | 'sandbox';
  /** Refuses (throws) a pod this sandbox cannot run, before anything is made (RunPodSandbox). */
  check?(pod: PodSandboxSpec): void;
  /**
   * Sets the hostname of a running sandbox (its kernel's UTS namespace, which every container of
   * the pod shares); '' = none (nothing to set). Present = the backend's sandboxes can be pooled
   * (PodSandbox.adopt).
   */
  setHostname?(sandboxId: string, hostname: string, signal: AbortSignal): Promise<void>;
  /** A pooled sandbox runs: get ready for setHostname (which is then called, with '' for no hostname). */
  armHostname?(sandboxId: string): void | Promise<void>;
  /** The engine moved a running sandbox's processes to cgroup `path`: record it where the backend reads the sandbox's cgroup. */
  setCgroupsPath?(sandboxId: string, path: string): Promise<void>;
  /**
   * The pod's container will be the sandbox itself (no sandbox container is made for the pod);
   * decided once, at plan time, from the stored pod. Needs rootNamespaces.
   */
  rootApp?(pod: PodSandboxSpec): boolean;
  /** The namespaces of a pod's container that is its sandbox (rootApp); refuses a second one while one exists. */
  rootNamespaces?(req: ContainerNamespaceRequest): { network: NamespaceChoice; ipc: NamespaceChoice; uts: NamespaceChoice; pid: NamespaceChoice };
}

/** PodSandboxPlan.detail of a pod whose container is its sandbox (SandboxHostedHooks.rootApp). */
const ROOT_APP = 'root-app';

export class SandboxHosted implements PodSandbox {
  readonly kind = 'sandbox-hosted' as const;
  readonly #rt: ContainerRuntime;
  readonly #hooks: SandboxHostedHooks;

  /** Present only where the backend can set a running sandbox's hostname (see SandboxHostedHooks.setHostname). */
  readonly adopt?: (pod: PodSandboxSpec, state: PodSandboxState, signal: AbortSignal, moved?: { cgroupsPath: string }) => Promise<void>;
  readonly prepareAdoption?: (state: PodSandboxState) => void | Promise<void>;

  constructor(rt: ContainerRuntime, hooks: SandboxHostedHooks) {
    this.#rt = rt;
    this.#hooks = hooks;
    const setHostname = hooks.setHostname;
    if (setHostname) {
      // called with '' too: an armed sandbox's waiting process ends either way
      this.adopt = async (pod, state, signal, moved) => {
        if (moved && !hooks.setCgroupsPath) throw new UnimplementedError('this backend cannot take a pooled sandbox into another cgroup');
        // independent: the records of the moved cgroup are written while the hostname travels to the sandbox
        const done = await Promise.allSettled([
          setHostname(state.sandboxId, pod.hostname, signal),
          moved && hooks.setCgroupsPath ? hooks.setCgroupsPath(state.sandboxId, moved.cgroupsPath) : Promise.resolve(),
        ]);
        for (const r of done) if (r.status === 'rejected') throw r.reason;
      };
      const arm = hooks.armHostname;
      if (arm) this.prepareAdoption = (state) => arm(state.sandboxId);
    }
  }

  async plan(pod: PodSandboxSpec): Promise<PodSandboxPlan> {
    this.#hooks.check?.(pod);
    // on the loopback-only network its sandbox has its own loopback (gVisor's --network=none):
    // the engine makes no pod netns (ownNetwork)
    if (this.#hooks.rootNamespaces && this.#hooks.rootApp?.(pod)) return { sandboxContainer: false, detail: ROOT_APP, ownNetwork: pod.networkMode === 'none' };
    return { sandboxContainer: true };
  }

  async create(pod: PodSandboxSpec, plan: PodSandboxPlan, opts: SandboxCreateOptions): Promise<PodSandboxState> {
    // the pod's container will be the sandbox: nothing to make now
    if (!plan.sandboxContainer) return { sandboxId: '', namespacePaths: {} };
    const spec = await opts.sandboxSpec();
    await this.#rt.createContainer({
      id: opts.sandboxId, name: opts.name, spec, logPath: opts.logPath, signal: opts.signal,
      pod: {
        podId: pod.podId, role: 'sandbox', ...(pod.netnsPath ? { netnsPath: pod.netnsPath } : {}),
        ...(pod.trustLevel !== undefined ? { trustLevel: pod.trustLevel } : {}), ...(pod.annotations ? { podAnnotations: pod.annotations } : {}),
      },
    });
    opts.signal.throwIfAborted();
    await this.#rt.start(opts.sandboxId, opts.signal);
    // containers name the sandbox by id (PodRef.sandboxContainerId), not namespaces by path
    return { sandboxId: opts.sandboxId, namespacePaths: {} };
  }

  containerNamespaces(req: ContainerNamespaceRequest): { network: NamespaceChoice; ipc: NamespaceChoice; uts: NamespaceChoice; pid: NamespaceChoice } {
    if (!req.state.sandboxId) {
      if (!this.#hooks.rootNamespaces) throw new FailedPreconditionError(`pod ${req.pod.podId} has no sandbox container to create a container in`);
      return this.#hooks.rootNamespaces(req);
    }
    return this.#hooks.namespaces(req);
  }

  async dial(pod: PodSandboxSpec, state: PodSandboxState, port: number, signal: AbortSignal): Promise<PodConnection> {
    if (!state.sandboxId) throw new UnimplementedError(`pod ${pod.podId} runs its one container as its sandbox (${SINGLE_CONTAINER_ANNOTATION}), with a network of its own: port-forward does not reach it; run it without --rm`);
    if (this.#hooks.dialVia() === 'netns') return pod.hostNetwork || !pod.netnsPath ? dialHost(port) : dialNetns(pod.netnsPath, port, signal);
    return await dialInside(this.#rt, state.sandboxId, port, signal);
  }

  async stop(state: PodSandboxState, signal: AbortSignal): Promise<void> {
    await stopSandbox(this.#rt, state, signal);
  }

  async destroy(_pod: { podDir: string }, state: PodSandboxState, removeContainers: () => Promise<void>, signal: AbortSignal): Promise<void> {
    await destroyInOrder(this.#rt, state, removeContainers, async () => undefined, signal);
  }
}
