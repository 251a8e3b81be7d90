// Pod netns nobody can find again (src/network/netns-owner.ts): a daemon that made one and died
// with its state deleted (a test's temporary root) left it under /run/netns for good, veth on the
// bridge and all (and its bridge and egress guard tables). Its owner record names the daemon and the path that found it; once both are
// gone, any daemon's start (and the test harness's teardown) removes it — and nothing else: not a
// netns without an owner record (another tenant's), not one whose owner lives or whose state remains.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NETNS_OWNERS_DIR, recordNetnsOwner, sweepOrphanNetns } from '../../src/network/netns-owner.ts';
import { deleteNetns, netnsPathOf } from '../../src/network/host.ts';
import { run } from '../../src/util/exec.ts';
import { silentLogger } from '../../src/util/log.ts';
import { makeRoot, rand, removeRoot, sig, type NetRoot } from './helpers.ts';

const NETS_OWNERS = NETNS_OWNERS_DIR;
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';

describe('orphaned pod netns', () => {
  let root: NetRoot;
  const tag = rand();
  const extra: string[] = [];

  before(async () => { root = await makeRoot(); });
  after(async () => {
    for (const n of extra) { await deleteNetns(n, sig()).catch(() => {}); await rm(join(NETNS_OWNERS_DIR, n), { force: true }); }
    if (root) await removeRoot(root);
  });

  /** A dead process's pid and start time (it ran `sleep 0`). */
  async function deadOwner(): Promise<{ pid: number }> {
    const c = spawn('sleep', ['0'], { stdio: 'ignore' });
    await new Promise((r) => c.once('exit', r));
    return { pid: c.pid! };
  }

  it('a daemon gone with its state: its pod netns (and veth) and egress guard tables are removed by the next sweep, and its bridge once its config is gone, with their owner records', async () => {
    // the "daemon": a child process that sets the pod's network up and exits (nothing tears it down)
    const script = `
      import { openNetwork, pod } from ${JSON.stringify(new URL('./helpers.ts', import.meta.url).href)};
      const root = JSON.parse(process.argv[1]);
      const net = await openNetwork(root);
      const r = await net.setup(pod('or${tag}', { trust: 'untrusted' }), AbortSignal.timeout(60000));
      process.stdout.write(r.netnsPath);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(root)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 0);
    const name = out.trim().split('/').pop()!;
    extra.push(name);
    assert.match(name, new RegExp(`^bulkhead-or${tag}`));
    assert.ok(existsSync(netnsPathOf(name)), 'the netns is there');
    assert.ok(existsSync(join(NETNS_OWNERS_DIR, name)), 'with its owner record');
    const bridge = (JSON.parse(readFileSync(join(root.cni.confDir, '10-bulkhead.conflist'), 'utf8')) as { bulkhead: { bridge: string } }).bulkhead.bridge;
    assert.ok(existsSync(join(NETS_OWNERS, 'bridge', bridge)), 'the bridge has its owner record');
    const guardInstance = readdirSync(join(NETS_OWNERS, 'guard')).find((g) => (JSON.parse(readFileSync(join(NETS_OWNERS, 'guard', g), 'utf8')) as { anchor: string }).anchor === root.cni.cacheDir);
    assert.ok(guardInstance, 'the egress guard has its owner record');
    assert.match((await run('nft', ['list', 'tables'])).stdout, new RegExp(`bulkhead_${guardInstance}\\b`));
    const veth = JSON.parse((await run('ip', ['-n', name, '-j', 'link', 'show', 'eth0'])).stdout) as { link_index: number }[];
    const hostIndex = veth[0]!.link_index;

    // its state still there: a restart of that daemon would find it, so it stays
    assert.deepEqual((await sweepOrphanNetns(silentLogger, sig())).filter((n) => n === name), []);
    assert.ok(existsSync(netnsPathOf(name)));

    // its state deleted (the test's temporary root): nobody else would ever find it
    await rm(root.cni.cacheDir, { recursive: true, force: true });
    await sweepOrphanNetns(silentLogger, sig()); // (another daemon's start on this node may sweep it first)
    assert.equal(existsSync(netnsPathOf(name)), false, 'the netns is gone');
    assert.equal(existsSync(join(NETNS_OWNERS_DIR, name)), false, 'and its owner record');
    // the kernel ends a netns (and its veth pair) once its last reference goes, in the background
    const vethLeft = async (): Promise<boolean> => (JSON.parse((await run('ip', ['-j', 'link', 'show'])).stdout) as { ifindex: number }[]).some((l) => l.ifindex === hostIndex);
    for (let i = 0; i < 300 && await vethLeft(); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await vethLeft(), false, 'its veth went with it');
    // the daemon's egress guard tables (named after that cache dir) went with them
    const tables = (await run('nft', ['list', 'tables'])).stdout;
    const guards = readdirSync(join(NETS_OWNERS, 'guard')).filter((g) => (JSON.parse(readFileSync(join(NETS_OWNERS, 'guard', g), 'utf8')) as { anchor: string }).anchor === root.cni.cacheDir);
    assert.deepEqual(guards, [], 'no guard owner record left for that cache dir');
    assert.doesNotMatch(tables, new RegExp(`bulkhead_${guardInstance}\\b`), 'its guard tables are gone');

    // and once its CNI config is gone too, its bridge (no port left on it)
    await rm(root.cni.confDir, { recursive: true, force: true });
    let bridgeLeft = true;
    for (let i = 0; i < 100 && bridgeLeft; i++) {
      await sweepOrphanNetns(silentLogger, sig());
      bridgeLeft = (await run('ip', ['link', 'show', bridge])).code === 0;
      if (bridgeLeft) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(bridgeLeft, false, `its bridge ${bridge} is gone`);
    assert.equal(existsSync(join(NETS_OWNERS, 'bridge', bridge)), false);
  });

  it('left alone: a bulkhead-named netns without an owner record, one whose owner lives, one whose state remains', async () => {
    const gone = join(root.dir, 'no-such-state');
    const kept = root.dir;
    const names = { noRecord: `bulkhead-nr${tag}-${rand()}`, ownerAlive: `bulkhead-oa${tag}-${rand()}`, stateLeft: `bulkhead-sl${tag}-${rand()}` };
    for (const n of Object.values(names)) {
      extra.push(n);
      assert.equal((await run('ip', ['netns', 'add', n])).code, 0);
    }
    await recordNetnsOwner(names.ownerAlive, gone); // this process: alive
    const dead = await deadOwner();
    await writeFile(join(NETNS_OWNERS_DIR, names.stateLeft), JSON.stringify({ pid: dead.pid, anchor: kept }));
    const swept = await sweepOrphanNetns(silentLogger, sig());
    for (const n of Object.values(names)) {
      assert.ok(!swept.includes(n), `${n} not swept`);
      assert.ok(existsSync(netnsPathOf(n)), `${n} still there`);
    }
    // the same netns once its owner is dead and its anchor gone: swept
    await writeFile(join(NETNS_OWNERS_DIR, names.ownerAlive), JSON.stringify({ pid: dead.pid, anchor: gone }));
    await sweepOrphanNetns(silentLogger, sig());
    assert.equal(existsSync(netnsPathOf(names.ownerAlive)), false, 'swept once its owner is dead and its anchor gone');
  });
});

describe('orphaned pod netns: a daemon\'s start', () => {
  let a: TestDaemon | undefined;
  let b: TestDaemon | undefined;
  after(async () => { await a?.close(); await b?.close(); });

  it('a daemon SIGKILLed with a pod and its root deleted: the next daemon to start (another root) removes the pod\'s netns', async () => {
    a = await startTestDaemon({ name: 'bulkhead-orphan-a-' });
    const uid = rand(4);
    const id = await a.client.runPodSandbox({ metadata: { name: `orphan-${uid}`, namespace: 'orphan', uid, attempt: 0 }, logDirectory: join(a.root, 'logs', uid), linux: {} }, 'runc');
    const netns = (await a.client.podSandboxStatus(id, true)).info?.['netnsPath'] ?? '';
    const name = (await import('node:fs')).readdirSync('/run/netns').find((n) => n.startsWith(`bulkhead-${id.slice(0, 12)}-`));
    assert.ok(name, `the pod has a netns (${netns})`);
    await a.stop('SIGKILL');
    // its state goes as a test's temporary root does (the pause process is left to the harness)
    await rm(join(a.root, 'cni'), { recursive: true, force: true });
    // from here any daemon starting on this node may remove it (another test's too): by the time
    // this one has started, it is gone
    b = await startTestDaemon({ name: 'bulkhead-orphan-b-' });
    assert.equal(existsSync(netnsPathOf(name)), false, 'a daemon\'s start removed it');
  });
});
