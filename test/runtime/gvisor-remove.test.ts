// Removing a gVisor pod sandbox with real runsc (through a wrapper that records each call): a
// running sandbox is stopped and deleted with one runsc call, `delete` (no `runsc state`, no
// `runsc kill` to a Sentry that ended with its gofer: each a Go binary's start, ~25 ms of every
// RemovePodSandbox), its gofer found among conmon's children; and a sandbox that was only
// created, never started, is still deleted with nothing of it left. Stopping one (SIGKILL, as
// StopPodSandbox does) makes no runsc call at all. A one-shot pod's container that is its sandbox
// and ended by itself, its gofer outliving conmon: deleted without waiting for the host's init.
// An ended sandbox's delete makes no runsc call at all (../../src/runtime/gvisor/runsc-delete.ts),
// and leaves nothing runsc's own would not: no state or lock file, no cgroup, runsc lists nothing.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { GvisorBackend } from '../../src/runtime/gvisor/gvisor-backend.ts';
import { resolveBinary } from '../../src/runtime/conmon/driver.ts';
import { buildPauseSpec, buildSpec } from '../../src/runtime/spec.ts';
import { SINGLE_CONTAINER_ANNOTATION, type PodSandboxSpec } from '../../src/runtime/sandbox/pod-sandbox.ts';
import { silentLogger } from '../../src/util/log.ts';
import { makeBusyboxRootfs, type RootfsFixture } from '../../harness/rootfs.ts';
import { procsWith } from '../engine/helpers.ts';
import { run } from '../../src/util/exec.ts';

describe('gvisor: removing a pod sandbox', () => {
  let fx: RootfsFixture;
  let backend: GvisorBackend;
  let calls: string;
  let unavailable: string | undefined;
  const suffix = randomBytes(3).toString('hex');
  const cgroupParent = `/bulkhead-test-gvrm-${suffix}`;
  const made: string[] = [];

  before(async () => {
    fx = await makeBusyboxRootfs('bulkhead-gvrm-');
    calls = join(fx.dir, 'runsc-calls');
    const wrapper = join(fx.dir, 'runsc');
    await writeFile(wrapper, `#!/bin/sh\necho "$*" >> '${calls}'\nexec '${resolveBinary('runsc')}' "$@"\n`);
    await chmod(wrapper, 0o755);
    backend = new GvisorBackend({ runDir: join(fx.dir, 'run'), logger: silentLogger, binary: wrapper });
    const p = await backend.probe();
    if (!p.available) unavailable = p.reason ?? 'unavailable';
  });
  after(async () => {
    for (const id of made) await backend?.delete(id).catch(() => {});
    await backend?.close();
    for (const c of ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids', 'systemd', 'unified', '']) {
      await rmdir(join('/sys/fs/cgroup', c, cgroupParent)).catch(() => {});
    }
    await fx?.cleanup();
  });

  const sandbox = async (id: string): Promise<void> => {
    made.push(id);
    const spec = await buildPauseSpec({ rootfs: fx.path, cgroupParent, cgroupName: id });
    await backend.createContainer({ id, spec, pod: { podId: `pod-${id}`, role: 'sandbox' }, logPath: join(fx.dir, `${id}.log`) });
  };
  /** What of container `id` is left: runsc's files, its cgroup per controller, its entry in `runsc list`. */
  const leftovers = async (id: string): Promise<string[]> => {
    const state = join(fx.dir, 'run', 'state');
    const files = (await readdir(state).catch(() => [] as string[])).filter((n) => n.includes(id));
    const cgroups = ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids', 'systemd', 'unified'].filter((c) => existsSync(join('/sys/fs/cgroup', c, cgroupParent, id))).map((c) => `cgroup ${c}`);
    const list = await run(resolveBinary('runsc'), ['--root', state, 'list', '--quiet'], { timeoutMs: 20_000 });
    return [...files, ...cgroups, ...list.stdout.split('\n').filter((l) => l.trim() === id).map((l) => `runsc list: ${l}`)];
  };
  const subcommands = async (): Promise<string[]> =>
    (await readFile(calls, 'utf8').catch(() => '')).split('\n').filter(Boolean).map((l) => l.split(' ').find((w) => /^(create|start|state|kill|delete|wait|events|ps|exec)$/.test(w)) ?? l);

  it('a running sandbox: stopped, then deleted with no runsc call, nothing left', { timeout: 120_000 }, async (t) => {
    if (unavailable) { t.skip(`gvisor unavailable: ${unavailable}`); return; }
    const id = `gvrm-run-${suffix}`;
    await sandbox(id);
    await backend.start(id);
    assert.equal((await backend.state(id)).status, 'running');
    // what removal relies on to find the gofer fast: it is a child of the pause's conmon
    const conmon = (await readFile(join(fx.dir, 'run', 'containers', id, 'conmon.pid'), 'utf8')).trim();
    const children = (await readFile(`/proc/${conmon}/task/${conmon}/children`, 'utf8')).split(' ').filter(Boolean);
    const argvs = await Promise.all(children.map((c) => readFile(`/proc/${c}/cmdline`, 'utf8').catch(() => '')));
    assert.ok(argvs.some((a) => a.startsWith('runsc-gofer\0') && a.includes(join(fx.dir, 'run', 'containers', id))), 'the sandbox\'s gofer is a child of its conmon');
    await writeFile(calls, '');
    assert.notDeepEqual(await leftovers(id), [], 'runsc\'s state and the cgroup are there to remove');
    await backend.delete(id);
    // the Sentry ends with its gofer: a `runsc kill` would only answer "sandbox is not running";
    // the ended sandbox's delete is done in the daemon (no `runsc delete`, a Go binary's start)
    assert.deepEqual(await subcommands(), [], 'the gofer ended (the sandbox with it), then the delete without runsc');
    assert.deepEqual(await procsWith(id), [], 'no runsc, gofer or conmon of the sandbox left');
    assert.deepEqual(await leftovers(id), [], 'nothing of the sandbox left');
  });

  it('a running sandbox stopped with SIGKILL (StopPodSandbox): ended through its gofer, no runsc kill', { timeout: 120_000 }, async (t) => {
    if (unavailable) { t.skip(`gvisor unavailable: ${unavailable}`); return; }
    const id = `gvrm-stop-${suffix}`;
    await sandbox(id);
    await backend.start(id);
    await writeFile(calls, '');
    await backend.kill(id, 'SIGKILL');
    assert.deepEqual(await subcommands(), [], 'no runsc call to stop it (a kill would answer "sandbox is not running")');
    assert.equal((await backend.state(id)).status, 'stopped');
    await backend.delete(id);
    assert.deepEqual(await subcommands(), [], 'no runsc call to delete the ended sandbox either');
    assert.deepEqual(await procsWith(id), [], 'no runsc, gofer or conmon of the sandbox left');
    assert.deepEqual(await leftovers(id), [], 'nothing of the sandbox left');
  });

  it('a sandbox created and never started: deleted, nothing left', { timeout: 120_000 }, async (t) => {
    if (unavailable) { t.skip(`gvisor unavailable: ${unavailable}`); return; }
    const id = `gvrm-created-${suffix}`;
    await sandbox(id);
    assert.equal((await backend.state(id)).status, 'created');
    await writeFile(calls, '');
    await backend.delete(id);
    assert.ok((await subcommands()).includes('delete'), 'a sandbox that never ran is runsc\'s to delete');
    assert.deepEqual(await procsWith(id), [], 'no runsc, gofer or conmon of the sandbox left');
    assert.deepEqual(await leftovers(id), [], 'nothing of the sandbox left');
    await assert.rejects(backend.state(id), 'the sandbox is gone');
  });

  it('a one-shot pod\'s container that is its sandbox, ended by itself with its gofer left behind its conmon: deleted without waiting for the host init to reap the gofer', { timeout: 120_000 }, async (t) => {
    if (unavailable) { t.skip(`gvisor unavailable: ${unavailable}`); return; }
    const id = `gvrm-oneshot-${suffix}`;
    const podDir = join(fx.dir, 'pod-oneshot');
    await mkdir(podDir);
    const pod: PodSandboxSpec = {
      podId: `pod-${id}`, podDir, netnsPath: '', hostNetwork: false, hostname: '', ipc: 'POD', pid: 'CONTAINER', sysctls: {},
      pinNamespaces: true, annotations: { [SINGLE_CONTAINER_ANNOTATION]: 'true' }, networkMode: 'none',
    };
    assert.equal((await backend.podSandbox.plan(pod)).sandboxContainer, false, 'no pause for a one-shot pod on the loopback-only network');
    const namespaces = backend.podSandbox.containerNamespaces({ pod, state: { sandboxId: '', namespacePaths: {} }, id, pid: 'CONTAINER' });
    const spec = await buildSpec({ rootfs: fx.path, command: ['sh', '-c', 'sleep 0.5'], cgroupParent, cgroupName: id, namespaces });
    made.push(id);
    await backend.createContainer({ id, spec, pod: { podId: pod.podId, role: 'container' }, logPath: join(fx.dir, `${id}.log`) });
    // the gofer is found before the start (runsc create made it): after the start, looking for it
    // raced the workload's 0.5 s on a loaded host
    const conmon = (await readFile(join(fx.dir, 'run', 'containers', id, 'conmon.pid'), 'utf8')).trim();
    const children = (await readFile(`/proc/${conmon}/task/${conmon}/children`, 'utf8')).split(' ').filter(Boolean);
    const gofers: number[] = [];
    for (const c of children) if ((await readFile(`/proc/${c}/cmdline`, 'utf8').catch(() => '')).startsWith('runsc-gofer\0')) gofers.push(Number(c));
    assert.equal(gofers.length, 1, 'the sandbox\'s gofer is a child of its conmon');
    await writeFile(calls, '');
    await backend.start(id);
    // a gofer slower to end than conmon, made certain: stopped, it outlives the sandbox and conmon
    process.kill(gofers[0]!, 'SIGSTOP');
    // started without the shim before runsc, with the network flag the shim would give it
    const starts = (await readFile(calls, 'utf8')).split('\n').filter((l) => l.endsWith(` start ${id}`));
    assert.equal(starts.length, 1, starts.join('\n'));
    const netstack = String((await backend.probe()).details.network ?? '').startsWith('sandbox');
    assert.ok(starts[0]!.split(' ').includes(netstack ? '--network=none' : backend.runtimeCommand().globalArgs.find((a) => a.startsWith('--network='))!), starts[0]);
    const st = await backend.wait(id, AbortSignal.timeout(60_000));
    assert.equal(st.exitCode, 0);
    for (let i = 0; i < 200 && (await readFile(`/proc/${conmon}/stat`, 'utf8').catch(() => '')) !== ''; i++) await new Promise((r) => setTimeout(r, 20));
    assert.match(await readFile(`/proc/${gofers[0]!}/stat`, 'utf8'), /^\d+ \(\S+\) T /, 'the gofer outlived conmon');
    await writeFile(calls, '');
    const t0 = performance.now();
    await backend.delete(id);
    const ms = performance.now() - t0;
    // measured: 2.06 s when runsc delete polls for the init's reaping, 0.15 s without
    assert.ok(ms < 1000, `delete took ${Math.round(ms)} ms`);
    assert.deepEqual(await subcommands(), [], 'deleted without runsc');
    assert.deepEqual(await procsWith(id), [], 'no runsc, gofer or conmon of it left');
    assert.deepEqual(await leftovers(id), [], 'nothing of it left');
    await assert.rejects(backend.state(id), 'it is gone');
  });
});
