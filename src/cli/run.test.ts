import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildConfigs, checkRunName, generateName, parseCpus, parseMemory, parseEnv, parsePublish, parseSysctls, parseVolume, uuid4, type RunRequest } from './run.ts';

const base: RunRequest = {
  image: 'busybox', args: ['echo', 'hi'], name: 'web', isolation: 'gvisor', detach: false, remove: true,
  interactive: false, tty: false, env: [], volumes: [], publish: [], network: 'bridge', readOnly: false,
  privileged: false, capAdd: [], capDrop: [], labels: [],
};

test('parseEnv: KEY=VALUE, KEY from the environment, bad names', () => {
  assert.deepEqual(parseEnv(['A=1', 'B=x=y', 'HOME', 'UNSET_VAR_XYZ'], { HOME: '/root' }), [
    { key: 'A', value: '1' }, { key: 'B', value: 'x=y' }, { key: 'HOME', value: '/root' },
  ]);
  assert.throws(() => parseEnv(['=1'], {}), /invalid environment variable/);
});

test('parseVolume: paths, modes and errors', () => {
  assert.deepEqual(parseVolume('/data:/data:ro', '/'), { hostPath: '/data', containerPath: '/data', readonly: true });
  assert.deepEqual(parseVolume('rel:/x', '/home/u'), { hostPath: '/home/u/rel', containerPath: '/x', readonly: false });
  assert.equal(parseVolume('/a:/b:rshared', '/').propagation, 'PROPAGATION_BIDIRECTIONAL');
  for (const bad of ['/a', '/a:rel', '/a:/b:bogus', ':/b', '/a:/b:ro:extra']) assert.throws(() => parseVolume(bad, '/'), /invalid volume/, bad);
});

test('parsePublish: ports, host ip, protocol and errors', () => {
  assert.deepEqual(parsePublish('8080:80'), { protocol: 'TCP', hostPort: 8080, containerPort: 80, hostIp: '' });
  assert.deepEqual(parsePublish('127.0.0.1:53:53/udp'), { protocol: 'UDP', hostPort: 53, containerPort: 53, hostIp: '127.0.0.1' });
  for (const bad of ['80', '0:80', '70000:80', '1:2/icmp', 'a:b']) assert.throws(() => parsePublish(bad), /invalid/, bad);
});

test('parseCpus', () => {
  assert.deepEqual(parseCpus('0.5'), { cpuPeriod: 100000, cpuQuota: 50000 });
  assert.deepEqual(parseCpus('2'), { cpuPeriod: 100000, cpuQuota: 200000 });
  for (const bad of ['0', '-1', 'x', '', '1e9']) assert.throws(() => parseCpus(bad), /^UsageError: invalid --cpus "[^"]*": give a number of CPUs above 0/);
});

test('parseMemory: sizes, and one line naming the flag and the value for bad ones', () => {
  assert.equal(parseMemory('64m'), 64 * 1024 * 1024);
  assert.equal(parseMemory('1048576'), 1048576);
  for (const bad of ['-5', '0', 'lots', '', '1x', '99999999999t']) {
    assert.throws(() => parseMemory(bad), (err: Error) => err.message === `invalid --memory ${JSON.stringify(bad)}: give a positive size in bytes or with a unit k, m, g, t (examples: 64m, 1g)`, bad);
  }
});

test('checkRunName: too long says so with the numbers; "/" and NUL refused', () => {
  assert.doesNotThrow(() => checkRunName('web-1', 'bulkhead'));
  assert.doesNotThrow(() => checkRunName('a'.repeat(209), 'bulkhead'));
  assert.throws(() => checkRunName('a'.repeat(300), 'bulkhead'), /^UsageError: invalid --name: too long \(300 > 209 characters/);
  assert.throws(() => checkRunName('a'.repeat(210), 'bulkhead'), /too long \(210 > 209/);
  assert.throws(() => checkRunName('a/b', 'bulkhead'), /may not contain '\/'/);
  assert.throws(() => checkRunName('', 'bulkhead'), /must not be empty/);
});

test('buildConfigs maps docker-style flags onto CRI configs', () => {
  const { pod, container } = buildConfigs({ ...base, memory: '64m', cpus: '1', user: '1000:1000', readOnly: true, network: 'none', publish: ['8080:80'], env: ['A=1'], workdir: '/tmp' }, '/var/lib/bh', {}, '/');
  assert.equal(pod.metadata?.name, 'web');
  assert.equal(pod.annotations?.['io.bulkhead.network'], 'none');
  assert.equal(pod.linux?.securityContext?.namespaceOptions?.network, 'POD');
  assert.equal(pod.portMappings?.[0]?.hostPort, 8080);
  assert.ok(pod.logDirectory?.startsWith('/var/lib/bh/logs/'));
  assert.deepEqual(container.args, ['echo', 'hi']);
  assert.deepEqual(container.command, []);
  assert.equal(container.linux?.resources?.memoryLimitInBytes, 64 * 1024 * 1024);
  assert.equal(container.linux?.resources?.cpuQuota, 100000);
  assert.deepEqual(container.linux?.securityContext?.runAsUser, { value: 1000 });
  assert.deepEqual(container.linux?.securityContext?.runAsGroup, { value: 1000 });
  assert.equal(container.linux?.securityContext?.readonlyRootfs, true);
  assert.equal(container.workingDir, '/tmp');
  assert.equal(container.logPath, 'web.log');
  const host = buildConfigs({ ...base, network: 'host', user: 'app', entrypoint: '/bin/sh' }, '/r', {}, '/');
  assert.equal(host.pod.linux?.securityContext?.namespaceOptions?.network, 'NODE');
  assert.equal(host.container.linux?.securityContext?.runAsUsername, 'app');
  assert.deepEqual(host.container.command, ['/bin/sh']);
  assert.throws(() => buildConfigs({ ...base, network: 'weird' }, '/r', {}, '/'), /--network/);
  assert.throws(() => buildConfigs({ ...base, memory: 'lots' }, '/r', {}, '/'), /--memory/);
  assert.throws(() => buildConfigs({ ...base, user: '1000:staff' }, '/r', {}, '/'), /numeric/);
});

test('parseSysctls: NAME=VALUE into the pod config, the last of a name wins, malformed ones refused', () => {
  assert.deepEqual(parseSysctls(['kernel.shm_rmid_forced=1', 'net.ipv4.ping_group_range=0 1', 'kernel.shm_rmid_forced=0']), { 'kernel.shm_rmid_forced': '0', 'net.ipv4.ping_group_range': '0 1' });
  for (const bad of ['kernel', 'kernel.x', '=1', 'Kernel.X=1', '../x.y=1']) assert.throws(() => parseSysctls([bad]), /invalid --sysctl .*expected NAME=VALUE/);
  const { pod } = buildConfigs({ ...base, sysctls: ['kernel.msgmax=100'] }, '/var/lib/bh', {}, '/');
  assert.deepEqual(pod.linux?.sysctls, { 'kernel.msgmax': '100' });
  assert.equal(buildConfigs(base, '/var/lib/bh', {}, '/').pod.linux?.sysctls, undefined);
});

test('uuid4 and generateName: well-formed and different every time', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const u = uuid4();
    assert.match(u, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    seen.add(u);
  }
  assert.equal(seen.size, 200);
  assert.match(generateName(), /^bh-[0-9a-f]{8}$/);
  assert.notEqual(generateName(), generateName());
});

test('buildConfigs: how a microVM pod gets the volumes (io.bulkhead.vm.volumes): none without -v, shared with a read-write one, the handler\'s mode with read-only ones, --vm-volumes as given', () => {
  const mode = (over: Partial<RunRequest>): string | undefined => buildConfigs({ ...base, ...over }, '/r', {}, '/').pod.annotations?.['io.bulkhead.vm.volumes'];
  assert.equal(mode({}), 'none');
  assert.equal(mode({ volumes: ['/a:/a'] }), 'share', 'a copying handler would refuse a read-write directory and drop a file\'s writes');
  assert.equal(mode({ volumes: ['/a:/a:ro', '/b:/b'] }), 'share');
  assert.equal(mode({ volumes: ['/a:/a:ro'] }), undefined, 'the handler decides: copied when it copies');
  assert.equal(mode({ volumes: ['/a:/a'], vmVolumes: 'copy' }), 'copy');
  assert.equal(mode({ volumes: ['/a:/a:ro'], vmVolumes: 'share' }), 'share');
  assert.throws(() => mode({ volumes: ['/a:/a'], vmVolumes: 'none' }), /--vm-volumes must be copy or share/);
  assert.throws(() => mode({ vmVolumes: 'copy' }), /--vm-volumes needs a -v volume/);
});
