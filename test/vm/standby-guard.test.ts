// The egress guard holds for a pod that adopted a standby VMM (src/vm/standby-vmm.ts): its QEMU was
// spawned ahead with its tap in a private holding netns, and the tap was moved into the pod's netns
// as bhvm0 at adoption; the guard sits on the pod veth's bridge port (src/network/guard.ts). The
// other CRI tests run with the guard off, so here: a real daemon with it on, untrusted microvm pods
// on the bridge network, the node-wide supervisor keeping a standby for the template. From the
// guest of the second pod (the adopter): the node (its gateway address) is dropped, not refused,
// while the first pod answers, both on a port that serves and one that does not (a reset: its
// frames flow both ways). No server outside a guest; no traffic leaves the test's bridge.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { VmdClient } from '../../src/vm/client.ts';
import { shortHash } from '../../src/network/config.ts';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages, type TestImages } from '../../harness/images.ts';
import type { PodSandboxConfig } from '../../src/api/cri.ts';
import { ASSETS, skipReason } from '../../harness/vm-assets.ts';

const skip = skipReason();
const POLICY = `[policy]
default_trust = "untrusted"
[policy.levels.untrusted]
min_isolation = "vm"
default_handler = "microvm"
`;

function pod(name: string): PodSandboxConfig {
  return { metadata: { name, namespace: 'vm-guard', uid: randomUUID(), attempt: 0 }, labels: { t: name }, annotations: { 'io.bulkhead.vm.volumes': 'none' }, linux: {} };
}

describe('an untrusted microvm pod that adopted a standby VMM is under the egress guard (CRI daemon)', { skip, timeout: 600_000 }, () => {
  let d: TestDaemon;
  let images: TestImages;

  before(async () => {
    images = await buildAndPushTestImages(await sharedRegistry());
    d = await startTestDaemon({
      name: 'bulkhead-vm-guard-', policy: { toml: POLICY },
      handlers: { microvm: { backend: 'microvm', runtime_args: ['--assets', ASSETS] } },
    });
  });
  after(async () => {
    await d?.close();
    if (d) assert.equal(spawnSync('pgrep', ['-f', d.base], { encoding: 'utf8' }).stdout.trim(), '', 'no VMM or supervisor left behind');
  });

  it('from the adopter\'s guest the node is dropped, the other pod answers', async () => {
    const c = d.client;
    await c.pullImage(images.busybox);
    const state = join(d.runDir, 'runtime/microvm/state');
    const podLogs = (): string => readdirSync(join(state, 'pods')).map((k) => { try { return readFileSync(join(state, 'pods', k, 'vmd.log'), 'utf8'); } catch { return ''; } }).join('');
    const pods: string[] = [];
    const ctrs: string[] = [];
    const ips: string[] = [];
    try {
      for (const name of ['one', 'two']) {
        if (name === 'two') {
          // the standby QEMU the node-wide host keeps for the template since pod one's start
          const standbys = async (): Promise<number[]> => {
            const h = await VmdClient.connect(join(state, 'vmhost.sock'), undefined, 5000);
            try { return (await h.request<{ standbys: { pids: number[] } }>('ping', {}, 5000)).standbys.pids; } finally { h.close(); }
          };
          let standby = 0;
          for (let i = 0; i < 600 && standby === 0; i++) { standby = (await standbys())[0] ?? 0; if (!standby) await new Promise((r) => setTimeout(r, 100)); }
          assert.ok(standby > 0, 'a standby VMM for the template');
        }
        const cfg = pod(name);
        const p = await c.runPodSandbox(cfg, '', { timeoutMs: 240_000 });
        pods.push(p);
        const st = await c.podSandboxStatus(p, true);
        assert.equal(st.status.runtimeHandler, 'microvm');
        const info = JSON.parse(st.info.info ?? '{}') as { decision?: { egressGuard?: boolean } };
        assert.equal(info.decision?.egressGuard, true, `pod ${name} is to be guarded`);
        ips.push(st.status.network?.ip ?? '');
        assert.match(ips.at(-1)!, /^\d+\.\d+\.\d+\.\d+$/, 'the pod has a bridge address');
        // pod one serves on 8080 (in its guest)
        const serve = "printf '#!/bin/sh\\necho guest-hello\\n' > /tmp/serve && chmod +x /tmp/serve && exec nc -ll -p 8080 -e /tmp/serve";
        const command = name === 'one' ? ['sh', '-c', serve] : ['sleep', '3600'];
        const ctr = await c.createContainer(p, { metadata: { name: 'c' }, image: { image: images.busybox }, logPath: `${name}.log`, command }, cfg, { timeoutMs: 120_000 });
        await c.startContainer(ctr, { timeoutMs: 120_000 });
        ctrs.push(ctr);
      }
      const logs = podLogs();
      assert.ok(/clone restored.* vmm=standby/.test(logs) && /tapFrom="standby VMM"/.test(logs), `pod two adopted the standby VMM and its tap; vmd: ${logs.slice(0, 3000)}`);
      const table = `bulkhead_${shortHash(join(d.root, 'cni', 'cache'), 10)}`;
      const set = spawnSync('nft', ['-j', 'list', 'set', 'inet', table, 'untrusted4'], { encoding: 'utf8' });
      assert.equal(set.status, 0, set.stderr);
      for (const ip of ips) assert.ok(set.stdout.includes(`"${ip}"`), `pod ${ip} is in the guarded set`);

      const two = ctrs[1]!;
      const sh = async (script: string): Promise<string> => {
        const r = await c.execSync(two, ['sh', '-c', `${script} 2>&1; echo "exit=$?"`], 60);
        return r.stdout.toString();
      };
      // allowed: the other pod, through pod two's tap both ways
      let got = '';
      for (let i = 0; i < 50 && !got.includes('guest-hello'); i++) {
        got = await sh(`nc -w 3 ${ips[0]} 8080 </dev/null`);
        if (!got.includes('guest-hello')) await new Promise((r) => setTimeout(r, 200));
      }
      assert.match(got, /guest-hello/, 'pod two reaches pod one\'s server');
      // a port nothing serves on pod one: refused at once (its reset reaches pod two)
      assert.match(await sh(`nc -w 5 ${ips[0]} 8081 </dev/null`), /refused/i, 'pod one\'s reset for a closed port reaches pod two');
      // blocked: the node, at its address on the bridge (pod two's gateway). Unguarded, the node's
      // kernel answers a closed port with a reset ("refused"); the guard drops the SYN: the connect
      // times out.
      const gw = /^default via (\S+)/m.exec((await c.execSync(two, ['ip', 'route'], 60)).stdout.toString())?.[1];
      assert.ok(gw, 'pod two has a default route');
      const toNode = await sh(`nc -w 5 ${gw} 8081 </dev/null`);
      assert.doesNotMatch(toNode, /refused/i, `the node's reset never reaches pod two: ${toNode}`);
      assert.doesNotMatch(toNode, /exit=0/, toNode);
      // (checked: with egress_guard = false on the level this says "Connection refused")
      assert.match(toNode, /timed out|timeout/i, `the connect to the node times out: ${toNode}`);
    } finally {
      for (const p of pods) {
        await c.stopPodSandbox(p, { timeoutMs: 120_000 }).catch(() => {});
        await c.removePodSandbox(p, { timeoutMs: 120_000 }).catch(() => {});
      }
    }
  });
});
