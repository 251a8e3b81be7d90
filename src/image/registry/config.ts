/** The `[registries]` settings the registry client takes (parsed by daemon/config.ts, which only composes them). */
export interface RegistryConfig {
  /** Registry host → endpoints tried in order before the host itself, e.g. {"docker.io": ["http://127.0.0.1:5000"]}. */
  mirrors: Record<string, string[]>;
  /** Hosts reached over plain HTTP. Loopback hosts are always allowed plain HTTP. */
  insecure: string[];
  /**
   * After every mirror of a host failed, try the host itself (default true, as docker and
   * containerd do). false = a host with mirrors is reached only through them (air-gapped or
   * egress-controlled nodes); a host without mirrors is unaffected.
   */
  mirrorFallback?: boolean;
  /** docker-style config.json with credentials ("auths"). */
  authFile?: string;
}
