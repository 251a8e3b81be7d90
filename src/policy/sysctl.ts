/**
 * Sysctl checks with strict parsing. A pod may only set namespaced sysctls that cannot reach the
 * host: the "safe" set below (the one Kubernetes allows by default), plus names a trust level
 * lists itself. Names must be plain dotted identifiers, so "a=1\nkernel.core_pattern=|/x" or
 * "net.ipv4.ip_local_port_range/../../kernel/core_pattern" never match; values are parsed per
 * sysctl and anything with another shape (extra lines, extra fields, out of range) is refused.
 */

/** A plain dotted sysctl name: lower-case identifiers, at least two parts, no slashes or dots at the ends. */
export const SYSCTL_NAME = /^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+$/;

const uint = (max: number) => (v: string): boolean => /^(?:0|[1-9][0-9]{0,9})$/.test(v) && Number(v) <= max;
const fields = (n: number, each: (s: string) => boolean) => (v: string): boolean => {
  if (!/^[0-9]+(?:[ \t][0-9]+)*$/.test(v)) return false;
  const parts = v.split(/[ \t]/);
  return parts.length === n && parts.every(each);
};
const range = (max: number, min = 0) => (v: string): boolean => {
  if (!fields(2, uint(max))(v)) return false;
  const [a, b] = v.split(/[ \t]/).map(Number) as [number, number];
  return a >= min && a <= b;
};
const portList = (v: string): boolean => {
  if (v === '') return true;
  if (!/^[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*$/.test(v)) return false;
  return v.split(',').every((item) => {
    const [a, b] = item.split('-');
    const ok = (s: string | undefined): boolean => s !== undefined && uint(65535)(s);
    if (b === undefined) return ok(a);
    return ok(a) && ok(b) && Number(a) <= Number(b);
  });
};

/** The safe, namespaced sysctls and a strict parser for each one's value. */
export const SAFE_SYSCTLS: Readonly<Record<string, (value: string) => boolean>> = {
  'kernel.shm_rmid_forced': (v) => v === '0' || v === '1',
  'net.ipv4.ip_local_port_range': range(65535, 1),
  'net.ipv4.tcp_syncookies': (v) => v === '0' || v === '1' || v === '2',
  'net.ipv4.ping_group_range': range(2147483647),
  'net.ipv4.ip_unprivileged_port_start': uint(65536),
  'net.ipv4.ip_local_reserved_ports': portList,
  'net.ipv4.tcp_keepalive_time': (v) => uint(32767)(v) && v !== '0',
  'net.ipv4.tcp_fin_timeout': (v) => uint(2147483647)(v),
  'net.ipv4.tcp_keepalive_intvl': (v) => uint(32767)(v) && v !== '0',
  'net.ipv4.tcp_keepalive_probes': (v) => uint(127)(v) && v !== '0',
  'net.ipv4.tcp_rmem': fields(3, uint(2147483647)),
  'net.ipv4.tcp_wmem': fields(3, uint(2147483647)),
};

/** Values for sysctls a policy allows beyond the safe set: one short line of plain characters. */
const GENERIC_VALUE = /^[A-Za-z0-9 _.,:-]{0,256}$/;

export interface SysctlProblem {
  name: string;
  message: string;
}

/**
 * Checks each sysctl; `extra` are further names a trust level allows (already validated names).
 * Returns one problem per refused sysctl.
 */
export function checkSysctls(sysctls: Record<string, string>, extra: readonly string[] = []): SysctlProblem[] {
  const problems: SysctlProblem[] = [];
  for (const [name, value] of Object.entries(sysctls)) {
    const shown = JSON.stringify(name);
    if (!SYSCTL_NAME.test(name)) {
      problems.push({ name, message: `sysctl name ${shown} is not a plain dotted name` });
      continue;
    }
    if (typeof value !== 'string') {
      problems.push({ name, message: `sysctl ${name} has a value that is not a string` });
      continue;
    }
    const parse = SAFE_SYSCTLS[name];
    if (parse) {
      if (!parse(value)) problems.push({ name, message: `sysctl ${name} value ${JSON.stringify(value)} is not valid for it` });
      continue;
    }
    if (extra.includes(name)) {
      if (!GENERIC_VALUE.test(value)) problems.push({ name, message: `sysctl ${name} value ${JSON.stringify(value)} has characters or a length not allowed` });
      continue;
    }
    problems.push({ name, message: `sysctl ${name} is not in the safe set and not allowed by this trust level` });
  }
  return problems;
}
