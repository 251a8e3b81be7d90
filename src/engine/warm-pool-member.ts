/**
 * The warm pools' shape as the pod lifecycle sees it (the pools themselves: ./warm-pool.ts): what a
 * member is, and what a pod must not ask for to take one.
 */
import type * as cri from '../api/cri.ts';
import type { NetworkMode } from '../network/pod-network.ts';
import type { OciSpec } from '../oci/spec.ts';
import { VOLUMES_ANNOTATION } from '../vm/annotations.ts';
import type { WarmPoolInfo } from '../api/cri-messages.ts';

/** One pool: how many members of `handler` for pods of trust `level`. */
export interface WarmPoolSpec {
  handler: string;
  /** The trust level of the pods it serves (their stored decision's level; '' = pods without a stored decision). */
  level: string;
  size: number;
  /** The level's egress guard, as its pods' decisions carry it (the member's network is set up with it). */
  egressGuard: boolean;
  /** The level allows the host network (the decision's hostNetwork: the network's trust bit). */
  hostNetwork: boolean;
  /** The members' network: 'bridge' (CNI, the default when the daemon has a pod network) or 'none' (loopback only; pods run with --network none). */
  network?: 'bridge' | 'none';
  /**
   * microvm: 'none' = members are VMs without a virtio-fs share (template clones), for pods that say
   * they bind no volumes (annotation io.bulkhead.vm.volumes=none); 'copy' = the same VMs, whose
   * containers' volumes are copied in, for pods whose mode is copy (or none); absent = members boot
   * with a share and serve any pod.
   */
  volumes?: 'none' | 'copy';
}

/** A pool's figures: the Info RPC's shape. */
export type WarmPoolStatus = WarmPoolInfo;

/** What the pod lifecycle takes from a pool. */
export interface PoolMember {
  id: string;
  sandboxId: string;
  handler: string;
  level: string;
  mode: NetworkMode;
  netnsPath: string;
  ips: string[];
  cgroupParent: string;
  podDir: string;
  egressGuard: boolean;
  hostNetwork: boolean;
  /** The member's sandbox was started for pods that bind no volumes ('none') or have them copied in ('copy'): WarmPoolSpec.volumes. */
  volumes?: 'none' | 'copy';
  /** The member's pause spec without its hostname, as JSON (what an adopting pod's must equal). */
  pauseSpec: string;
}

/**
 * The pause spec as adoption compares it: everything but the hostname (applied at adoption) and
 * the HOSTNAME variable the spec builder derives from it, which only the pause's own idle shell
 * has (app containers get their own environment).
 */
export function comparablePauseSpec(spec: OciSpec): string {
  const { hostname: _h, ...rest } = spec;
  if (rest.process?.env) rest.process = { ...rest.process, env: rest.process.env.filter((e) => !e.startsWith('HOSTNAME=')) };
  return JSON.stringify(rest);
}

/** The first path at which two JSON texts differ ("linux.sysctls"), or '' when equal. */
export function firstDifference(a: string, b: string): string {
  const walk = (x: unknown, y: unknown, path: string): string => {
    if (JSON.stringify(x) === JSON.stringify(y)) return '';
    if (typeof x !== 'object' || typeof y !== 'object' || x === null || y === null || Array.isArray(x) !== Array.isArray(y)) return path || '(root)';
    const xs = x as Record<string, unknown>;
    const ys = y as Record<string, unknown>;
    for (const k of new Set([...Object.keys(xs), ...Object.keys(ys)])) {
      const d = walk(xs[k], ys[k], path ? `${path}.${k}` : k);
      if (d) return d;
    }
    return path || '(root)';
  };
  return walk(JSON.parse(a), JSON.parse(b), '');
}

/**
 * Why a pod cannot take a member of its pool (a reason for the log), or undefined when it can as
 * far as the request says; the pause spec comparison at adoption catches the rest.
 */
export function adoptionMismatch(config: cri.PodSandboxConfig, mode: NetworkMode, egressGuard: boolean, hostNetwork: boolean, m: PoolMember, podVolumes?: string): string | undefined {
  const ns = config.linux?.securityContext?.namespaceOptions;
  if (mode !== m.mode) return `network mode ${mode} (pool members have ${m.mode})`;
  if (ns?.ipc === 'NODE' || ns?.pid === 'NODE') return 'host IPC or PID namespace (fixed at sandbox start)';
  if (Object.keys(config.linux?.sysctls ?? {}).length > 0) return 'sysctls (set at sandbox start)';
  if ((config.portMappings ?? []).some((pm) => (pm.hostPort ?? 0) > 0)) return 'port mappings (published by CNI when the netns is set up)';
  // the pod's volume mode: its annotation, else its handler's default (Backend.podVolumes)
  const vols = podVolumes ?? config.annotations?.[VOLUMES_ANNOTATION];
  if (m.volumes === 'none' && vols !== 'none') return `the pod may bind volumes and pool members have no virtio-fs share (pool volumes = "none"; a pod that binds none says so with the annotation ${VOLUMES_ANNOTATION}=none)`;
  if (m.volumes === 'copy' && vols !== 'copy' && vols !== 'none') return `the pod's volumes are not copied and pool members have no virtio-fs share (pool volumes = "copy", or a handler that copies by default; a pod's ${VOLUMES_ANNOTATION}=share opts out of copying)`;
  if (egressGuard !== m.egressGuard || hostNetwork !== m.hostNetwork) return 'the pod\'s decision differs from its level\'s network settings (egress guard, host network)';
  return undefined;
}


/** What RunPodSandbox uses of the pools (EngineContext.pool). */
export interface SandboxPool {
  /** A pool serves pods of this handler and level. */
  has(handler: string, level: string): boolean;
  /** The oldest ready member of the pool (undefined = none ready); it is replaced after the pod's hit or miss. */
  take(handler: string, level: string): PoolMember | undefined;
  /** A member taken but not adopted waits again. */
  giveBack(m: PoolMember): void;
  /** After the adopting pod's record holds the member's id: the member's own record goes. */
  adopted(m: PoolMember): Promise<void>;
  hit(handler: string, level: string, pod: string, ms: number): void;
  miss(handler: string, level: string, reason: string): void;
  status(): WarmPoolStatus[];
}
