import { it } from 'node:test';
import assert from 'node:assert/strict';
import { checkSysctls } from './sysctl.ts';

const table: { name: string; value: string; extra?: string[]; ok: boolean }[] = [
  { name: 'kernel.shm_rmid_forced', value: '1', ok: true },
  { name: 'kernel.shm_rmid_forced', value: '2', ok: false },
  { name: 'kernel.shm_rmid_forced', value: '1\n', ok: false },
  { name: 'kernel.shm_rmid_forced', value: '1\nkernel.core_pattern=|/x', ok: false },
  { name: 'kernel.shm_rmid_forced', value: ' 1', ok: false },
  { name: 'net.ipv4.ip_local_port_range', value: '1024 65535', ok: true },
  { name: 'net.ipv4.ip_local_port_range', value: '1024\t65535', ok: true },
  { name: 'net.ipv4.ip_local_port_range', value: '65535 1024', ok: false },
  { name: 'net.ipv4.ip_local_port_range', value: '0 1024', ok: false },
  { name: 'net.ipv4.ip_local_port_range', value: '1024 65536', ok: false },
  { name: 'net.ipv4.ip_local_port_range', value: '1024 2048 4096', ok: false },
  { name: 'net.ipv4.ip_local_port_range', value: '1024  2048', ok: false },
  { name: 'net.ipv4.ip_local_port_range', value: '01024 2048', ok: false },
  { name: 'net.ipv4.tcp_syncookies', value: '2', ok: true },
  { name: 'net.ipv4.tcp_syncookies', value: '3', ok: false },
  { name: 'net.ipv4.ping_group_range', value: '0 2147483647', ok: true },
  { name: 'net.ipv4.ping_group_range', value: '0 4294967295', ok: false },
  { name: 'net.ipv4.ip_unprivileged_port_start', value: '0', ok: true },
  { name: 'net.ipv4.ip_unprivileged_port_start', value: '65537', ok: false },
  { name: 'net.ipv4.ip_unprivileged_port_start', value: '-1', ok: false },
  { name: 'net.ipv4.ip_unprivileged_port_start', value: '1e3', ok: false },
  { name: 'net.ipv4.ip_local_reserved_ports', value: '8080,9148-9149', ok: true },
  { name: 'net.ipv4.ip_local_reserved_ports', value: '9149-9148', ok: false },
  { name: 'net.ipv4.ip_local_reserved_ports', value: '8080,', ok: false },
  { name: 'net.ipv4.tcp_keepalive_time', value: '600', ok: true },
  { name: 'net.ipv4.tcp_keepalive_time', value: '0', ok: false },
  { name: 'net.ipv4.tcp_rmem', value: '4096 131072 6291456', ok: true },
  { name: 'net.ipv4.tcp_rmem', value: '4096 131072', ok: false },
  // Not in the safe set
  { name: 'kernel.core_pattern', value: 'core', ok: false },
  { name: 'kernel.modprobe', value: '/tmp/x', ok: false },
  { name: 'vm.overcommit_memory', value: '1', ok: false },
  { name: 'net.core.somaxconn', value: '1024', ok: false },
  { name: 'net.core.somaxconn', value: '1024', extra: ['net.core.somaxconn'], ok: true },
  { name: 'net.core.somaxconn', value: '1024\nkernel.core_pattern=|/x', extra: ['net.core.somaxconn'], ok: false },
  // Smuggling through the name
  { name: 'kernel.shm_rmid_forced=1\nkernel.core_pattern=|/x', value: '1', ok: false },
  { name: 'net.ipv4.ip_local_port_range/../../kernel/core_pattern', value: '|/x', ok: false },
  { name: 'net/ipv4/ip_local_port_range', value: '1024 2048', ok: false },
  { name: 'net.ipv4..ip_local_port_range', value: '1024 2048', ok: false },
  { name: '.net.ipv4.ip_local_port_range', value: '1024 2048', ok: false },
  { name: 'net.ipv4.ip_local_port_range ', value: '1024 2048', ok: false },
  { name: 'NET.IPV4.IP_LOCAL_PORT_RANGE', value: '1024 2048', ok: false },
  { name: 'kernel', value: '1', ok: false },
];

for (const c of table) {
  it(`${JSON.stringify(c.name)} = ${JSON.stringify(c.value)}${c.extra ? ' (allowed extra)' : ''} → ${c.ok ? 'ok' : 'refused'}`, () => {
    const problems = checkSysctls({ [c.name]: c.value }, c.extra ?? []);
    assert.equal(problems.length === 0, c.ok, JSON.stringify(problems));
  });
}
