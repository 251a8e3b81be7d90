import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capabilityNames, errnoOf, loopSeconds, parseProbe, PRIVILEGED_OPS } from './report-probe.ts';
import { percentile, renderHtml, type Report } from './report.ts';

test('the probe output parses into a bounded, typed record; hostile values are dropped', () => {
  const text = [
    'kernel=6.1.0', 'uid=0', 'cap_eff=00000000a80425fb', 'seccomp=2', 'seccomp_filters=1', 'no_new_privs=1', 'processes=4',
    'devices=null zero', 'host_paths=/a /b', 'runtime_sockets= /run/containerd/containerd.sock',
    'op.mount=1|mount: permission denied (are you root?)', 'op.mknod=0|',
    'reach.10.0.0.1:22=timeout', 'reach.10.0.0.2:22=refused', 'reach.<img>:1=open', 'reach.10.0.0.3:22=<b>',
    `junk=${'x'.repeat(10_000)}`, 'end=ok',
  ].join('\n');
  const p = parseProbe(text);
  assert.equal(p.kernel, '6.1.0');
  assert.deepEqual(p.capabilities.slice(0, 3), ['CHOWN', 'DAC_OVERRIDE', 'FOWNER']);
  assert.ok(p.capabilities.includes('SYS_CHROOT') && !p.capabilities.includes('SYS_ADMIN'));
  assert.equal(p.seccompMode, 2);
  assert.equal(p.noNewPrivs, true);
  assert.deepEqual(p.runtimeSockets, ['/run/containerd/containerd.sock']);
  assert.deepEqual(p.ops.find((o) => o.name === 'mount'), { name: 'mount', what: PRIVILEGED_OPS[0]!.what, allowed: false, errno: 'EACCES', message: 'mount: permission denied (are you root?)' });
  assert.equal(p.ops.find((o) => o.name === 'mknod')!.allowed, true);
  assert.equal(p.ops.find((o) => o.name === 'dmesg')!.allowed, false, 'an op the output does not mention is not allowed');
  assert.deepEqual(p.reach, { '10.0.0.1:22': 'timeout', '10.0.0.2:22': 'refused' });
  assert.equal(p.complete, true);
  assert.equal(parseProbe('kernel=x').complete, false);
});

test('capability masks, errno names and percentiles', () => {
  assert.deepEqual(capabilityNames('0'), []);
  assert.deepEqual(capabilityNames('not hex'), []);
  assert.equal(capabilityNames('1ffffffffff').length, 41);
  assert.equal(errnoOf('dd: can\'t open \'/dev/mem\': No such file or directory'), 'ENOENT');
  assert.equal(errnoOf('unshare(0x10000000): Operation not permitted'), 'EPERM');
  assert.equal(errnoOf('something else'), '');
  assert.equal(percentile([1, 2, 3, 4], 50), 2);
  assert.equal(percentile([1, 2, 3, 4], 99), 4);
  assert.equal(percentile([], 50), undefined);
  assert.equal(loopSeconds('\t0m 0.18s'), 0.18);
  assert.equal(loopSeconds('1m 2.50s'), 62.5);
  assert.equal(loopSeconds('soon'), -1);
});

test('the HTML escapes what the sandbox wrote', () => {
  const probe = parseProbe('kernel=<script>alert(1)</script>\nend=ok');
  const r: Report = { version: 1, generatedAt: 'now', hostKernel: 'h', targets: [], notes: [], handlers: [{ handler: 'runc', isolation: 'process', available: true, probe, startSeconds: [] }] };
  const html = renderHtml(r);
  assert.doesNotMatch(html, /<script/);
  assert.match(html, /&#60;script&#62;alert\(1\)&#60;\/script&#62;/);
});
