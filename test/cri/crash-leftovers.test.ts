// A daemon killed (SIGKILL) in the middle of RunPodSandbox or RemovePodSandbox, on runc and on
// microvm, with other pods running: a new daemon on the same root, once its start's sweeps and the
// removal of the pods are done, leaves nothing of them: no process, mount, cgroup (every v1
// hierarchy and the unified one), netns (with its VM tap), owner record, file under the run dir.
// And a daemon killed with its pods running, its root then deleted (the test harness's close):
// the owner records' sweep removes their processes, cgroups and netns.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages, type TestImages } from '../../harness/images.ts';
import { ASSETS, skipReason } from '../../harness/vm-assets.ts';
import type { PodSandboxConfig } from '../../src/api/cri.ts';
import { waitFor } from '../engine/helpers.ts';

const skip = skipReason();
const OWNER_DIRS = ['/run/bulkhead-cgroups', '/run/bulkhead-netns'];

const podCfg = (name: string): PodSandboxConfig => ({ metadata: { name, namespace: 'crash-leftovers', uid: randomUUID(), attempt: 0 }, linux: {} });

/** What is left on the node of daemon `d`'s pods `ids` (and of anything under its paths), by kind. */
async function leftovers(d: TestDaemon, ids: Iterable<string>, opts: { daemonRuns: boolean }): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = { processes: [], mounts: [], cgroups: [], netns: [], records: [], runDir: [] };
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    const cmd = (await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ');
    const cwd = await readlink(`/proc/${e}/cwd`).catch(() => '');
    // the daemon and its microVM host process (it serves the daemon, and goes with it) are not leftovers
    if (opts.daemonRuns && (Number(e) === d.pid || / _vmhost\b/.test(cmd))) continue;
    if (cmd.includes(d.base) || cwd.startsWith(d.base)) out.processes!.push(`${e}: ${cmd.slice(0, 160)}`);
  }
  for (const l of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')) {
    const mp = l.split(' ')[4] ?? '';
    if (mp.startsWith(d.base + '/')) out.mounts!.push(mp);
  }
  const shortIds = [...ids].map((id) => id.slice(0, 12));
  for (const h of await readdir('/sys/fs/cgroup')) {
    for (const id of ids) if (existsSync(join('/sys/fs/cgroup', h, 'bulkhead', `pod-${id.slice(0, 16)}`))) out.cgroups!.push(`${h}:/bulkhead/pod-${id.slice(0, 16)}`);
  }
  for (const n of await readdir('/run/netns').catch(() => [] as string[])) if (shortIds.some((s) => n.includes(s))) out.netns!.push(n);
  for (const dir of OWNER_DIRS) {
    for (const n of await readdir(dir).catch(() => [] as string[])) {
      const t = await readFile(join(dir, n), 'utf8').catch(() => '');
      if (t.includes(d.base)) out.records!.push(`${dir}/${n}: ${t.trim().slice(0, 200)}`);
    }
  }
  // bulkhead-vm's by-id index of the default root: its entries name state dirs under this run dir
  for (const n of await readdir('/run/bulkhead-vm/by-id').catch(() => [] as string[])) {
    if ((await readlink(join('/run/bulkhead-vm/by-id', n)).catch(() => '')).startsWith(d.base + '/') && opts.daemonRuns) out.index = [...(out.index ?? []), n];
  }
  // what a pod or container has under the run dir: its dir, bundle, runtime state, VM dir
  for (const sub of ['pods', 'containers', 'runtime/runc/state', 'runtime/runc/containers', 'runtime/microvm/state/pods', 'runtime/microvm/containers', 'runtime/microvm/state/shares']) {
    for (const n of await readdir(join(d.runDir, sub)).catch(() => [] as string[])) out.runDir!.push(`${sub}/${n}`);
  }
  for (const n of await readdir(join(d.runDir, 'runtime/microvm/state')).catch(() => [] as string[])) if (/^[0-9a-f]{64}$/.test(n)) out.runDir!.push(`runtime/microvm/state/${n}`);
  // pod log directories (the harness's pod log root) and the pods' CNI records
  for (const sub of [join(d.base, 'logs'), join(d.root, 'logs'), join(d.root, 'cni', 'cache', 'pods')]) {
    for (const n of await readdir(sub).catch(() => [] as string[])) out.runDir!.push(join(sub, n).slice(d.base.length + 1));
  }
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v.length > 0));
}

/** Pod ids of daemon `d` so far: its pod dirs and its log. */
async function podIds(d: TestDaemon, into: Set<string>): Promise<Set<string>> {
  for (const n of await readdir(join(d.runDir, 'pods')).catch(() => [] as string[])) if (/^[0-9a-f]{64}$/.test(n)) into.add(n);
  for (const m of (await d.log()).matchAll(/\bpod=([0-9a-f]{64})\b/g)) into.add(m[1]!);
  return into;
}

describe('a daemon killed mid-call leaves nothing once a new daemon has removed the pods', { skip, timeout: 900_000 }, () => {
  let d: TestDaemon;
  let images: TestImages;
  const ids = new Set<string>();

  before(async () => {
    images = await buildAndPushTestImages(await sharedRegistry());
    d = await startTestDaemon({ name: 'bulkhead-crash-left-', handlers: { runc: { backend: 'runc' }, microvm: { backend: 'microvm', runtime_args: ['--assets', ASSETS] } } });
    await d.client.pullImage(images.busybox);
  });
  after(async () => { await d?.close(); });

  async function podWithContainer(name: string, handler: string): Promise<string> {
    const cfg = podCfg(name);
    const id = await d.client.runPodSandbox(cfg, handler, { timeoutMs: 240_000 });
    ids.add(id);
    const c = await d.client.createContainer(id, { metadata: { name: 'sleeper' }, image: { image: images.busybox }, command: ['sleep', '600'] }, cfg, { timeoutMs: 120_000 });
    await d.client.startContainer(c, { timeoutMs: 120_000 });
    return id;
  }

  /** SIGKILLs the daemon once `ready` holds (polled), starts a new one, removes every pod through it. */
  async function killRestartRemove(ready: () => Promise<boolean> | boolean, what: string): Promise<void> {
    await waitFor(ready, 240_000, what);
    await podIds(d, ids);
    await d.stop('SIGKILL');
    await podIds(d, ids);
    await d.restart();
    for (const c of await d.client.listContainers()) await d.client.removeContainer(c.id, { timeoutMs: 120_000 });
    for (const p of await d.client.listPodSandbox()) {
      ids.add(p.id);
      await d.client.stopPodSandbox(p.id, { timeoutMs: 120_000 });
      await d.client.removePodSandbox(p.id, { timeoutMs: 120_000 });
    }
    assert.deepEqual(await leftovers(d, ids, { daemonRuns: true }), {}, `after a kill ${what}: nothing left once the new daemon removed the pods`);
  }

  for (const handler of ['runc', 'microvm']) {
    it(`${handler}: killed mid-RunPodSandbox (its dir made; then its sandbox being made), with another pod running`, async () => {
      await podWithContainer(`steady-${handler}`, handler);
      const before = new Set(await readdir(join(d.runDir, 'pods')));
      const newPod = async (): Promise<string | undefined> => (await readdir(join(d.runDir, 'pods')).catch(() => [] as string[])).find((n) => !before.has(n));
      void d.client.runPodSandbox(podCfg(`victim-early-${handler}`), handler, { timeoutMs: 240_000 }).catch(() => undefined);
      await killRestartRemove(async () => (await newPod()) !== undefined, `mid-RunPodSandbox (${handler}: pod dir made)`);
      // later: the sandbox's runtime state is being made (runc: its container; microvm: its VM)
      const stateDir = join(d.runDir, 'runtime', handler, handler === 'microvm' ? 'state/pods' : 'state');
      const had = new Set(await readdir(stateDir).catch(() => [] as string[]));
      void d.client.runPodSandbox(podCfg(`victim-late-${handler}`), handler, { timeoutMs: 240_000 }).catch(() => undefined);
      await killRestartRemove(async () => (await readdir(stateDir).catch(() => [] as string[])).some((n) => !had.has(n)), `mid-RunPodSandbox (${handler}: sandbox being made)`);
    });

    it(`${handler}: killed mid-RemovePodSandbox of a pod with a running container`, async () => {
      await podWithContainer(`steady2-${handler}`, handler);
      const victim = await podWithContainer(`victim-rm-${handler}`, handler);
      await d.client.stopPodSandbox(victim, { timeoutMs: 120_000 });
      let removing = false;
      void d.client.removePodSandbox(victim, { timeoutMs: 120_000 }).catch(() => undefined);
      setImmediate(() => { removing = true; });
      await killRestartRemove(() => removing, `mid-RemovePodSandbox (${handler})`);
    });
  }
});

describe('a daemon killed with its pods running, its root deleted (the test harness\'s close)', { skip, timeout: 600_000 }, () => {
  it('its pods\' processes, cgroups, netns and owner records go with the orphan sweeps', async () => {
    const images = await buildAndPushTestImages(await sharedRegistry());
    const d = await startTestDaemon({ name: 'bulkhead-crash-close-', handlers: { runc: { backend: 'runc' }, microvm: { backend: 'microvm', runtime_args: ['--assets', ASSETS] } } });
    const ids = new Set<string>();
    try {
      await d.client.pullImage(images.busybox);
      for (const handler of ['runc', 'microvm']) {
        const cfg = podCfg(`orphan-${handler}`);
        const id = await d.client.runPodSandbox(cfg, handler, { timeoutMs: 240_000 });
        ids.add(id);
        const c = await d.client.createContainer(id, { metadata: { name: 'sleeper' }, image: { image: images.busybox }, command: ['sleep', '600'] }, cfg, { timeoutMs: 120_000 });
        await d.client.startContainer(c, { timeoutMs: 120_000 });
      }
      await d.stop('SIGKILL');
      const held = await leftovers(d, ids, { daemonRuns: false });
      assert.ok(held.cgroups && held.netns && held.processes, 'the killed daemon\'s pods run on');
    } finally {
      await d.close();
    }
    const left = await leftovers(d, ids, { daemonRuns: false });
    assert.deepEqual(left, {}, 'nothing of the pods left after close');
  });
});
