/**
 * The pod-sandbox strategy: how a backend holds a pod. The engine owns the pod's record, network
 * namespace, directories and cgroups; the backend's strategy (Backend.podSandbox) owns what holds
 * the pod's other namespaces and says how a container joins them:
 *
 *  - plan:    before anything is made, whether the pod needs a sandbox container (the engine
 *             records its id first, so a crash at any later point leaves something findable);
 *  - create:  makes the sandbox (pinned namespace files, or the sandbox container created and
 *             started) and returns the namespace paths the engine stores with the pod;
 *  - containerNamespaces: the namespaces a container's spec names, from the stored state;
 *  - dial:    a byte stream to a port on the pod's loopback (port-forward);
 *  - stop / destroy: the sandbox process ends; the pod's containers go, then the sandbox, then
 *             what holds its namespaces (destroy orders the removal);
 *  - adopt:   (optional) warm pools (engine/warm-pool.ts): a sandbox the engine created ahead of
 *             time, for no pod, with the pod id, netns and cgroup it will have, is handed to a pod;
 *             adopt applies what the pod sets that can still change after the sandbox started.
 *
 * Two implementations: ./namespaces-joined.ts (runc, crun: containers join namespaces by path,
 * held by pinned files or a pause process) and ./sandbox-hosted.ts (gVisor, microvm: containers
 * run inside the sandbox, whose kernel provides the namespaces). Like containerd 2.x's sandbox
 * controller, the engine calls this interface and never asks which backend family it has.
 */
import type { Readable, Writable } from 'node:stream';
import type { OciSpec } from '../../oci/spec.ts';
import type { SpecRequest } from '../spec.ts';

/** The CRI namespace modes (NamespaceMode). */
export type PodNamespaceMode = 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';

/** What the strategy is told of a pod (from the engine's stored record, never the request alone). */
export interface PodSandboxSpec {
  podId: string;
  /** The pod's own directory (engine-made, removed by the engine after destroy). */
  podDir: string;
  /** The pod's network namespace path; '' = the host's network. */
  netnsPath: string;
  hostNetwork: boolean;
  /** The pod's hostname ('' = none given). */
  hostname: string;
  /** Pod-level namespace options. */
  ipc: PodNamespaceMode;
  pid: PodNamespaceMode;
  sysctls: Record<string, string>;
  /** Hold namespaces in files rather than a process where the strategy can (engine option pinNamespaces). */
  pinNamespaces: boolean;
  /** Where Bulkhead's helpers are built (engine option helperDir). */
  helperDir?: string;
  /** The trust level the policy gave the pod (its stored decision); absent = none stored. */
  trustLevel?: string;
  /** The pod's own annotations (hostile input: a backend reads only the keys it documents). */
  annotations?: Record<string, string>;
  /** The pod's network as the engine set it up: its own netns with the CNI network ('pod'), loopback only ('none'), the host's. */
  networkMode?: 'pod' | 'none' | 'host';
}

/** See ../../api/annotations.ts (where the CLI, which loads no runtime code, takes it from). */
export { SINGLE_CONTAINER_ANNOTATION } from '../../api/annotations.ts';

/** Decided before anything is made. */
export interface PodSandboxPlan {
  /** The pod needs a sandbox (infra, "pause") container. */
  sandboxContainer: boolean;
  /** Opaque to the engine: what create() will do. */
  readonly detail?: unknown;
  /**
   * The pod's container makes its own loopback-only network namespace (its runtime brings lo up):
   * for a pod on the loopback-only network ('none') the engine then makes none (its netnsPath
   * stays ''), and port-forward cannot reach the pod.
   */
  readonly ownNetwork?: boolean;
}

/** What the engine stores of a pod's sandbox (PodRuntimeInfo.pauseId / namespacePaths). */
export interface PodSandboxState {
  /** Id of the sandbox container; '' when the pod has none. */
  sandboxId: string;
  /** Namespaces containers join by path: pinned files or /proc/<pid>/ns/... of the sandbox. */
  namespacePaths: { ipc?: string; uts?: string; pid?: string };
}

export interface SandboxCreateOptions {
  /** The sandbox container's id (chosen and recorded by the engine when the plan asks for one). */
  sandboxId: string;
  /** Human name for the sandbox container's monitor. */
  name: string;
  /** Builds the sandbox container's spec (the engine knows the pod's cgroups, files, sysctls). */
  sandboxSpec: () => Promise<OciSpec>;
  /** CRI log of the sandbox container. */
  logPath: string;
  signal: AbortSignal;
}

/** A container's place in the pod, for containerNamespaces. */
export interface ContainerNamespaceRequest {
  pod: PodSandboxSpec;
  state: PodSandboxState;
  /** The container's id. */
  id: string;
  /** The container's PID namespace mode (CRI default CONTAINER). */
  pid: PodNamespaceMode;
  /** For PID TARGET: a running container of the same pod, checked by the engine. */
  target?: { id: string; pid: number };
}

/** A byte stream to a port inside the pod (port-forward). */
export interface PodConnection {
  readable: Readable;
  writable: Writable;
  /** Ends the connection at once (abort). */
  close(): void;
  /** Settles when whatever carries the connection is gone. */
  done: Promise<void>;
}

export interface PodSandbox {
  /** For diagnostics only: the engine never branches on it. */
  readonly kind: 'namespaces-joined' | 'sandbox-hosted';
  /** Decides how the pod is held; refuses a pod this backend cannot hold (InvalidArgument). */
  plan(pod: PodSandboxSpec): Promise<PodSandboxPlan>;
  /** Makes the sandbox. On failure the engine's destroy() undoes what was made. */
  create(pod: PodSandboxSpec, plan: PodSandboxPlan, opts: SandboxCreateOptions): Promise<PodSandboxState>;
  /** The namespaces a container's spec names. */
  containerNamespaces(req: ContainerNamespaceRequest): NonNullable<SpecRequest['namespaces']>;
  /** Connects to 127.0.0.1:`port` as seen inside the pod. */
  dial(pod: PodSandboxSpec, state: PodSandboxState, port: number, signal: AbortSignal): Promise<PodConnection>;
  /** Ends the sandbox's process (StopPodSandbox); the containers were stopped by the engine. Idempotent. */
  stop(state: PodSandboxState, signal: AbortSignal): Promise<void>;
  /**
   * Removes the pod's sandbox in order: `removeContainers` (the engine's removal of every
   * container of the pod) first, then the sandbox container, then the files holding its
   * namespaces (found under podDir whatever the record says, after a crash too). Idempotent;
   * every step is tried before the first error is thrown.
   */
  destroy(pod: { podDir: string; helperDir?: string }, state: PodSandboxState, removeContainers: () => Promise<void>, signal: AbortSignal): Promise<void>;
  /**
   * Warm pools: gives `pod` a sandbox that create() made earlier for a pod with the same id, netns,
   * cgroup and namespace options but no hostname; applies what the pod sets on top of that (its
   * hostname, '' = none: nothing to do). `moved.cgroupsPath`: the engine moved the sandbox's
   * processes to this cgroup (the pod's cgroup_parent); the backend reads its sandbox's cgroup
   * from there on. After it, the pod has what create() would have given it.
   * Absent = this strategy's sandboxes cannot be pooled (the engine keeps no pool for it).
   */
  adopt?(pod: PodSandboxSpec, state: PodSandboxState, signal: AbortSignal, moved?: { cgroupsPath: string }): Promise<void>;
  /**
   * Warm pools: called once a sandbox made for a pool runs, so that adopt() has less to do later
   * (gVisor: a process waiting in the sandbox to set the hostname). Whatever it starts ends with
   * the sandbox or with adopt(). Optional even where adopt() is present. A promise: the member is
   * ready once it settles (microvm: its exec session has started in the guest).
   */
  prepareAdoption?(state: PodSandboxState): void | Promise<void>;
}
