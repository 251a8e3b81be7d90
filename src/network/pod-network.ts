/**
 * PodNetwork: gives each pod sandbox its network namespace and connects it through real CNI
 * plugins (spec 1.0). The engine holds one PodNetwork for the daemon's life.
 *
 * Lifecycle of one pod:
 *   setup(pod)   → creates a network namespace under a unique name (bind-mounted under /run/netns,
 *                  so it outlives the daemon), brings up lo, and for mode "bridge" runs CNI ADD of
 *                  the configured network (conflist chaining with prevResult). A record of what was
 *                  created (netns, CNI config used, results) is written to the CNI cache dir before
 *                  and after each step, so a daemon that dies half way can still undo it.
 *                  When the request says egressGuard, the guard is installed before setup() returns.
 *   status(id)   → what setup() produced, read back from the record (also after a restart).
 *   teardown(id) → CNI DEL with the cached config and result, removes guard rules and the netns.
 *                  Idempotent: tearing down an unknown or half-created pod succeeds.
 *
 * Modes: "bridge" = own netns + CNI; "none" = own netns with only lo up; "host" = no netns
 * (netnsPath null). The policy layer decides who may use host networking; as a last line of
 * defence setup() also refuses "host" for an untrusted pod (PermissionDeniedError).
 *
 * Egress guard (pods whose decision says egressGuard; every level by default, host-network
 * permission does not switch it off): no connections to the node's own addresses (including the
 * bridge gateway), to 169.254.0.0/16 and to the configured blocked ranges; no IPv6; no spoofed
 * source IP/MAC/ARP and no frames addressed to other pods (so no sniffing of others' traffic).
 * Implemented as nftables tables (inet + bridge family) named per daemon instance; the rules of a
 * pod go away with the pod, and the tables with the last pod (see CniPodNetwork.close()).
 *
 * Errors: InvalidArgumentError for bad requests or configs, PermissionDeniedError for host mode
 * on an untrusted pod, UnavailableError when a plugin is missing, InternalError naming the CNI
 * plugin and its error JSON (code, msg, details) when a plugin fails, DeadlineExceededError when
 * a plugin hangs, AbortedError when the signal fires.
 *
 * For the microVM backend see attachTap() in ./tap.ts (a tap inside the pod netns, joined to the
 * pod's eth0 with tc mirred redirects).
 */

export type NetworkMode = 'bridge' | 'none' | 'host';
export type PodTrust = 'trusted' | 'untrusted';
export type PortProtocol = 'tcp' | 'udp' | 'sctp';

export interface PortMapping {
  protocol: PortProtocol;
  containerPort: number;
  /** 0 = no host port (nothing is published). */
  hostPort: number;
  /** "" = all host addresses. */
  hostIp: string;
}

export interface PodNetworkRequest {
  /** Pod sandbox id (the engine's id; any printable string, hashed where a short name is needed). */
  id: string;
  name: string;
  namespace: string;
  uid: string;
  portMappings: PortMapping[];
  /** 'trusted' = the pod's level allows the host network (mode "host"); nothing else. */
  trust: PodTrust;
  /** Install the egress guard for the pod (the policy decision's egress_guard, not the trust bit). */
  egressGuard: boolean;
  mode: NetworkMode;
}

export interface PodNetworkResult {
  /** Path to bind-mounted netns (/run/netns/…), null for host mode. */
  netnsPath: string | null;
  /** Pod IPs (without prefix length), primary first. Empty for modes none and host. */
  ips: string[];
  mode: NetworkMode;
}

export interface PodNetworkStatus extends PodNetworkResult {
  trust: PodTrust;
  /** Name of the pod's interface inside the netns ("eth0"), when mode is bridge. */
  ifName?: string;
}

export interface PodNetwork {
  /** Creates the pod's netns and runs CNI ADD. On failure everything created is undone. */
  setup(pod: PodNetworkRequest, signal: AbortSignal): Promise<PodNetworkResult>;
  /** Runs CNI DEL, removes guard rules and the netns. Idempotent; works after a daemon restart. */
  teardown(podId: string, signal: AbortSignal): Promise<void>;
  /** undefined when the pod has no network record. */
  status(podId: string): Promise<PodNetworkStatus | undefined>;
  /** Pod ids that have a network record (for the engine's recovery and GC). */
  list(): Promise<string[]>;
  /** For CRI Status NetworkReady: config present and valid, plugins found, nft available. */
  ready(): Promise<{ ready: boolean; reason?: string }>;
}
