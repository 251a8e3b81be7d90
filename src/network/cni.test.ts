import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniInvoker, CniPluginError, parseNetworkList } from './cni.ts';

describe('CNI config parsing', () => {
  it('reads a conflist and wraps a single .conf', () => {
    const l = parseNetworkList(JSON.stringify({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'bridge' }, { type: 'portmap', capabilities: { portMappings: true } }] }), 'f');
    assert.deepEqual(l.plugins.map((p) => p.type), ['bridge', 'portmap']);
    const one = parseNetworkList(JSON.stringify({ cniVersion: '0.4.0', name: 'm', type: 'bridge', bridge: 'x' }), 'g');
    assert.deepEqual(one.plugins, [{ type: 'bridge', bridge: 'x' }]);
  });
  const bad: [string, RegExp][] = [
    ['{', /not valid JSON/],
    ['[]', /JSON object/],
    ['{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}', /"name"/],
    ['{"cniVersion":"9.9.9","name":"n","plugins":[{"type":"bridge"}]}', /cniVersion/],
    ['{"cniVersion":"1.0.0","name":"n","plugins":[]}', /non-empty/],
    ['{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../../bin/sh"}]}', /plugins\[0\]/],
    ['{"cniVersion":"1.0.0","name":"n"}', /"plugins"/],
  ];
  for (const [text, re] of bad) it(`rejects ${text}`, () => assert.throws(() => parseNetworkList(text, 'f'), re));
});

// A plugin written for the test (a shell script) stands in for faults real plugins cannot be
// made to produce on demand: an error JSON and a hang. It also echoes what it was given.
describe('CniInvoker', () => {
  it('passes CNI_* env, config with name/cniVersion/prevResult/runtimeConfig; surfaces error JSON; times out', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bh-cni-unit-'));
    try {
      await writeFile(join(dir, 'echo'), `#!/bin/sh
in=$(cat)
case "$in" in *'"fail":true'*) echo '{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"field x"}'; exit 1;; esac
case "$in" in *'"hang":true'*) exec sleep 30;; esac
printf '{"cniVersion":"1.0.0","env":"%s|%s|%s|%s|%s","stdin":%s}' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$in"
`);
      await chmod(join(dir, 'echo'), 0o755);
      const inv = new CniInvoker({ binDirs: ['/nonexistent', dir], timeoutMs: 2000 });
      const list = parseNetworkList(JSON.stringify({ cniVersion: '1.0.0', name: 'net1', plugins: [{ type: 'echo', a: 1 }, { type: 'echo', capabilities: { portMappings: true } }] }), 'x');
      const rt = { containerId: 'c1', netnsPath: '/run/netns/x', ifName: 'eth0', args: [['K8S_POD_NAME', 'p']] as [string, string][], capabilityArgs: { portMappings: [{ hostPort: 1, containerPort: 2, protocol: 'tcp' }] } };
      const res = await inv.addList(list, rt, AbortSignal.timeout(10_000)) as { env: string; stdin: Record<string, unknown> };
      assert.equal(res.env, 'ADD|c1|/run/netns/x|eth0|IgnoreUnknown=1;K8S_POD_NAME=p');
      assert.equal(res.stdin.name, 'net1');
      assert.equal(res.stdin.cniVersion, '1.0.0');
      assert.deepEqual(res.stdin.runtimeConfig, { portMappings: rt.capabilityArgs.portMappings });
      assert.equal((res.stdin.prevResult as { stdin: { a: number; runtimeConfig?: unknown } }).stdin.a, 1);
      assert.equal((res.stdin.prevResult as { stdin: { runtimeConfig?: unknown } }).stdin.runtimeConfig, undefined, 'no runtimeConfig for a plugin without the capability');

      const failing = parseNetworkList(JSON.stringify({ cniVersion: '1.0.0', name: 'net2', plugins: [{ type: 'echo', fail: true }] }), 'x');
      await assert.rejects(inv.addList(failing, rt, AbortSignal.timeout(10_000)), (e: unknown) =>
        e instanceof CniPluginError && e.plugin === 'echo' && e.cniCode === 7 && e.code === 'InvalidArgument' && /CNI plugin "echo" ADD for network "net2" failed \(code 7\): bad config \(field x\)/.test(e.message));
      const hanging = parseNetworkList(JSON.stringify({ cniVersion: '1.0.0', name: 'net3', plugins: [{ type: 'echo', hang: true }] }), 'x');
      await assert.rejects(inv.addList(hanging, rt, AbortSignal.timeout(10_000)), { code: 'DeadlineExceeded' });
      const missing = parseNetworkList(JSON.stringify({ cniVersion: '1.0.0', name: 'net4', plugins: [{ type: 'nope' }] }), 'x');
      await assert.rejects(inv.addList(missing, rt, AbortSignal.timeout(10_000)), { code: 'Unavailable', message: /CNI plugin "nope" not found/ });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
