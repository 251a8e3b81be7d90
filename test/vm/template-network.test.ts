// VM templates through the CRI daemon: two microvm pods that bind no volumes (annotation
// io.bulkhead.vm.volumes=none) start as clones of one template keyed by their trust level, and each
// guest's eth0 has its own pod's MAC and IP (given by the agent after the restore, not the template's).
// The second adopts the QEMU the node-wide host spawned ahead for the template (src/vm/standby-vmm.ts),
// whose tap waited in a holding netns and was moved into the pod's; each reaches its gateway over TCP.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { VmdClient } from '../../src/vm/client.ts';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages, type TestImages } from '../../harness/images.ts';
import type { PodSandboxConfig } from '../../src/api/cri.ts';
import { ASSETS, skipReason } from '../../harness/vm-assets.ts';

const skip = skipReason();

function pod(name: string): PodSandboxConfig {
  return { metadata: { name, namespace: 'vm-tpl', uid: randomUUID(), attempt: 0 }, labels: { t: name }, annotations: { 'io.bulkhead.vm.volumes': 'none' }, linux: {} };
}

describe('microvm pods from a template on the pod network (CRI daemon)', { skip, timeout: 600_000 }, () => {
  let d: TestDaemon;
  let images: TestImages;

  before(async () => {
    images = await buildAndPushTestImages(await sharedRegistry());
    d = await startTestDaemon({
      name: 'bulkhead-vm-tpl-',
      handlers: { microvm: { backend: 'microvm', runtime_args: ['--assets', ASSETS] } },
    });
  });
  after(async () => {
    await d?.close();
    if (d) assert.equal(spawnSync('pgrep', ['-f', d.base], { encoding: 'utf8' }).stdout.trim(), '', 'no VMM or supervisor left behind');
  });

  it('two clones have their own pods\' MAC and IP, and share one template of their trust level', async () => {
    const c = d.client;
    await c.pullImage(images.busybox);
    const seen: { ip: string; mac: string }[] = [];
    const pods: string[] = [];
    const state = join(d.base, 'run/runtime/microvm/state');
    const podLogs = (): string[] => readdirSync(join(state, 'pods')).map((k) => { try { return readFileSync(join(state, 'pods', k, 'vmd.log'), 'utf8'); } catch { return ''; } });
    let standby = 0;
    for (const name of ['one', 'two']) {
      if (name === 'two') {
        // the standby QEMU the host keeps for the template since pod one's start
        const ping = async (): Promise<number[]> => {
          const h = await VmdClient.connect(join(state, 'vmhost.sock'), undefined, 5000);
          try { return (await h.request<{ standbys: { pids: number[] } }>('ping', {}, 5000)).standbys.pids; } finally { h.close(); }
        };
        for (let i = 0; i < 600 && standby === 0; i++) { standby = (await ping())[0] ?? 0; if (!standby) await new Promise((r) => setTimeout(r, 100)); }
        assert.ok(standby > 0, 'a standby VMM for the template');
        const holding = JSON.parse(readFileSync(join(state, 'standby', readdirSync(join(state, 'standby'))[0]!, 'netns'), 'utf8')) as { netns: string; tap: string };
        assert.match(spawnSync('ip', ['-n', holding.netns, 'link', 'show', holding.tap], { encoding: 'utf8' }).stdout, /state DOWN/, 'its tap waits in its holding netns');
      }
      const cfg = pod(name);
      const p = await c.runPodSandbox(cfg, 'microvm', { timeoutMs: 240_000 });
      pods.push(p);
      const ip = (await c.podSandboxStatus(p)).status.network?.ip;
      assert.ok(ip, 'the pod has an IP');
      const ctr = await c.createContainer(p, { metadata: { name: 'sleeper' }, image: { image: images.busybox }, logPath: `${name}.log`, command: ['sleep', '3600'] }, cfg, { timeoutMs: 120_000 });
      await c.startContainer(ctr, { timeoutMs: 120_000 });
      const addr = await c.execSync(ctr, ['ip', 'addr', 'show', 'dev', 'eth0'], 60);
      assert.equal(addr.exitCode, 0, addr.stderr.toString());
      assert.match(addr.stdout.toString(), new RegExp(`inet ${ip.replace(/\./g, '\\.')}/\\d+`), 'the clone\'s eth0 has its pod\'s IP');
      assert.match(addr.stdout.toString(), /state UP|,UP/, 'eth0 is up');
      const route = await c.execSync(ctr, ['ip', 'route'], 60);
      assert.match(route.stdout.toString(), /^default via \S+ dev eth0/m, 'the clone has the pod default route');
      // traffic both ways through the pod's tap (for pod two, the tap its standby VMM brought): the gateway answers
      // (a TCP server of this test on the gateway's address: the bridge's, in the node's netns)
      const gw = /^default via (\S+)/m.exec(route.stdout.toString())![1]!;
      const server = createServer((conn) => conn.end(`hello-${name}\n`));
      await new Promise<void>((r) => server.listen(0, gw, () => r()));
      try {
        const port = (server.address() as AddressInfo).port;
        const got = await c.execSync(ctr, ['sh', '-c', `nc ${gw} ${port} </dev/null`], 60);
        assert.equal(got.stdout.toString(), `hello-${name}\n`, `the clone reaches its gateway ${gw}: exit ${got.exitCode} ${got.stderr.toString()}`);
      } finally {
        server.close();
      }
      const mac = (await c.execSync(ctr, ['cat', '/sys/class/net/eth0/address'], 60)).stdout.toString().trim();
      // the pod veth's MAC, read in each pod netns a pod VM's tap was attached in (vmd.log names it):
      // an adopted standby's QEMU runs on in its holding netns, its tap in the pod's
      const netnss = podLogs().flatMap((l) => [...l.matchAll(/pod network attached.* netns=(\S+)/g)].map((m) => m[1]!));
      const macs = netnss.map((ns) => (JSON.parse(spawnSync('nsenter', [`--net=${ns}`, 'ip', '-j', 'link', 'show', 'eth0'], { encoding: 'utf8' }).stdout || '[]') as { address: string }[])[0]?.address);
      assert.ok(macs.includes(mac), `the clone's MAC ${mac} is its pod interface's (${macs.join(', ')}; netns ${netnss.join(', ')}); vmd: ${podLogs().join('').slice(0, 3000)}`);
      if (name === 'two') assert.ok(podLogs().some((l) => /clone restored.* vmm=standby/.test(l) && /tapFrom="standby VMM"/.test(l)), 'pod two adopted the standby VMM and its tap');
      assert.notEqual(mac, '02:42:42:00:00:01', 'not the template\'s MAC');
      seen.push({ ip, mac });
    }
    assert.notEqual(seen[0]!.ip, seen[1]!.ip);
    assert.notEqual(seen[0]!.mac, seen[1]!.mac);
    // one template, keyed by the pods' trust level (the engine's decision, told to the backend)
    const metas = spawnSync('find', [d.base, '-path', '*/templates/*/meta.json'], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean);
    assert.equal(metas.length, 1, `one template (${metas.join(', ')})`);
    const scope = (JSON.parse(readFileSync(metas[0]!, 'utf8')) as { inputs: { scope: string } }).inputs.scope;
    assert.match(scope, /^level:[A-Za-z0-9_.-]+$/);
    assert.notEqual(scope, 'level:(unknown)', 'the backend was told the pod\'s trust level');
    for (const p of pods) {
      await c.stopPodSandbox(p, { timeoutMs: 120_000 });
      await c.removePodSandbox(p, { timeoutMs: 120_000 });
    }
  });
});
