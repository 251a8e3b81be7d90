/**
 * `linux.resources.unified` (ContainerConfig, UpdateContainerResources, a pod's resources and
 * overhead): raw cgroup v2 files the runtime writes into the container's cgroup. A key names a
 * file, a value is written as is, so a hostile map could reach cgroup.procs / cgroup.subtree_control
 * (move processes, change the tree), raise limits the kubelet set (hugetlb, rdma, io.max of the
 * node's disks, memory.min protecting itself from reclaim), or climb out with '/' or '..'.
 *
 * A level that does not allow privileged containers may only set a small allow-list of files that
 * limit the container itself, each with a value of the file's own syntax; everything else is
 * refused (rule `cgroup-unified`). A privileged level may set any key (the runtime still refuses
 * paths). Pure; the node (enforce.ts, engine UpdateContainerResources) calls it.
 */

const MAX = /^max$/;
const BYTES = /^[0-9]{1,19}$/;
const bytesOrMax = (v: string): boolean => MAX.test(v) || (BYTES.test(v) && Number(v) <= Number.MAX_SAFE_INTEGER);
const intIn = (lo: number, hi: number) => (v: string): boolean => /^[0-9]{1,10}$/.test(v) && Number(v) >= lo && Number(v) <= hi;

/** The cgroup v2 files a non-privileged container may set, with the values each accepts. */
export const UNIFIED_SELF_LIMITS: Readonly<Record<string, (v: string) => boolean>> = {
  'memory.max': bytesOrMax,
  'memory.high': bytesOrMax,
  'memory.swap.max': bytesOrMax,
  // "$MAX $PERIOD": quota "max" or 1000..; period 1000..1000000 µs (the kernel's own bounds)
  'cpu.max': (v) => {
    const m = /^(max|[0-9]{1,12}) ([0-9]{1,7})$/.exec(v) ?? /^(max|[0-9]{1,12})$/.exec(v);
    if (!m) return false;
    if (m[1] !== 'max' && Number(m[1]) < 1000) return false;
    return m[2] === undefined || (Number(m[2]) >= 1000 && Number(m[2]) <= 1_000_000);
  },
  'cpu.weight': intIn(1, 10000),
  'cpu.idle': intIn(0, 1),
  'pids.max': (v) => MAX.test(v) || intIn(1, 4_194_304)(v),
  'io.weight': (v) => intIn(1, 10000)(v) || (/^default [0-9]{1,5}$/.test(v) && intIn(1, 10000)(v.slice(8))),
};

/** Why each key/value of a unified map is refused for a non-privileged level ([] = allowed). */
export function unifiedProblems(unified: Readonly<Record<string, string>> | null | undefined): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(unified ?? {})) {
    const key = JSON.stringify(k.slice(0, 64));
    const ok = Object.hasOwn(UNIFIED_SELF_LIMITS, k) ? UNIFIED_SELF_LIMITS[k]! : undefined;
    if (!ok) {
      out.push(`cgroup file ${key} may not be set (allowed: ${Object.keys(UNIFIED_SELF_LIMITS).join(', ')})`);
    } else if (typeof v !== 'string' || !ok(v)) {
      out.push(`cgroup file ${key}: value ${JSON.stringify(String(v).slice(0, 64))} is not a valid limit`);
    }
  }
  return out;
}
