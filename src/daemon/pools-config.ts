/**
 * The `[pools]` table of the daemon config: warm pools per (handler, trust level), off by default.
 *
 *   [pools]
 *   fill_parallelism = 1     # members made at once across all pools (1..8)
 *   [pools.gvisor]           # a configured handler whose sandboxes can be pooled
 *   untrusted = 2            # trust level = ready sandboxes kept for its pods (0..64)
 *   trusted = { size = 1, network = "none" }   # members with a loopback-only netns (pods run with no network)
 *   [pools.microvm]
 *   untrusted = { size = 1, volumes = "none" }  # VMs without a virtio-fs share (template clones), for pods annotated io.bulkhead.vm.volumes=none
 *   web = { size = 1, volumes = "copy" }        # the same VMs, for pods whose volumes are copied in (annotation =copy, or [vm] volumes = "copy")
 *
 * A pool's members are set up with the level's network settings (egress guard, host-network
 * permission: what the decision of each of its pods carries), so they are read from the policy.
 */
import { InvalidArgumentError } from '../errors.ts';
import type { Policy } from '../policy/policy.ts';
import type { WarmPoolSpec } from '../engine/engine.ts';
import { isObject } from '../util/guards.ts';

export interface PoolsConfig { pools: WarmPoolSpec[]; fillParallelism: number }

const MAX_SIZE = 64;
const MAX_TOTAL = 256;

/** The `[pools]` table (undefined = no pools); unknown handlers or levels and bad sizes are errors naming the key. */
export function parsePoolsConfig(raw: unknown, handlers: readonly string[], policy: Policy): PoolsConfig {
  const out: PoolsConfig = { pools: [], fillParallelism: 1 };
  if (raw === undefined) return out;
  if (!isObject(raw)) throw new InvalidArgumentError('config: pools must be a table ([pools.HANDLER] with LEVEL = N)');
  let total = 0;
  for (const [key, v] of Object.entries(raw)) {
    if (key === 'fill_parallelism') {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 8) throw new InvalidArgumentError('config: pools.fill_parallelism must be an integer 1..8');
      out.fillParallelism = v;
      continue;
    }
    if (!handlers.includes(key)) throw new InvalidArgumentError(`config: pools.${key}: no runtime handler ${JSON.stringify(key.slice(0, 64))} is configured (handlers: ${handlers.join(', ')})`);
    if (!isObject(v)) throw new InvalidArgumentError(`config: pools.${key} must be a table of trust level = size`);
    for (const [level, n] of Object.entries(v)) {
      const l = Object.hasOwn(policy.levels, level) ? policy.levels[level] : undefined;
      if (!l) throw new InvalidArgumentError(`config: pools.${key}.${level.slice(0, 64)}: the policy (${policy.source}) has no trust level of that name (levels: ${Object.keys(policy.levels).join(', ')})`);
      let size: unknown = n;
      let network: 'bridge' | 'none' | undefined;
      let volumes: 'none' | 'copy' | undefined;
      if (isObject(n)) {
        for (const k of Object.keys(n)) if (k !== 'size' && k !== 'network' && k !== 'volumes') throw new InvalidArgumentError(`config: unknown key pools.${key}.${level}.${k.slice(0, 64)} (allowed: size, network, volumes)`);
        if (n.volumes !== undefined && n.volumes !== 'none' && n.volumes !== 'copy' && n.volumes !== 'any') throw new InvalidArgumentError(`config: pools.${key}.${level}.volumes must be "none", "copy" or "any"`);
        if (n.volumes === 'none' || n.volumes === 'copy') volumes = n.volumes;
        size = n.size;
        if (n.network !== undefined && n.network !== 'bridge' && n.network !== 'none') throw new InvalidArgumentError(`config: pools.${key}.${level}.network must be "bridge" or "none"`);
        network = n.network;
      }
      if (typeof size !== 'number' || !Number.isInteger(size) || size < 0 || size > MAX_SIZE) throw new InvalidArgumentError(`config: pools.${key}.${level} must be an integer 0..${MAX_SIZE} (or { size = N, network = "none" })`);
      total += size;
      if (size > 0) out.pools.push({ handler: key, level, size, egressGuard: l.egressGuard, hostNetwork: l.allowHostNetwork, ...(network ? { network } : {}), ...(volumes ? { volumes } : {}) });
    }
  }
  if (total > MAX_TOTAL) throw new InvalidArgumentError(`config: pools keep ${total} sandboxes in all; at most ${MAX_TOTAL}`);
  return out;
}
