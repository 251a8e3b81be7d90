// `bulkhead run --rm --network none` on gVisor: the pod's one container is the runsc sandbox itself
// (no pause; src/runtime/gvisor/gvisor-backend.ts), with a real daemon, runsc and conmon. What a
// user sees is what the pod way gives (output, exit codes, capabilities, seccomp, hostname, the
// sandbox cgroup's limits), the Sentry holds no host capabilities, and nothing stays behind. A
// one-shot pod holds one container at a time (CRI).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { runCli } from '../fixtures/cli.ts';
import { netnsOf, waitFor } from '../engine/helpers.ts';
import { writeBusyboxArchive } from '../../src/cli/demo-image.ts';
import { NETWORK_ANNOTATION } from '../../src/cri/annotations.ts';
import { SINGLE_CONTAINER_ANNOTATION } from '../../src/runtime/sandbox/pod-sandbox.ts';
import { sandboxHeadroom } from '../../src/runtime/gvisor/gvisor-backend.ts';
import { BulkheadError } from '../../src/errors.ts';

const IMAGE = 'bulkhead.local/gv-oneshot:latest';
const MiB = 1024 * 1024;

/** runsc processes (sandbox, gofer) of this daemon, by the --root under its run dir. */
async function runscOf(d: TestDaemon): Promise<{ pid: number; argv: string[] }[]> {
  const out: { pid: number; argv: string[] }[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const argv = (await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv[0]?.startsWith('runsc') && argv.some((a) => a.includes(d.runDir))) out.push({ pid: Number(name), argv });
  }
  return out;
}

describe('bulkhead run --rm on gVisor: the container is the sandbox', () => {
  let d: TestDaemon;
  let dir: string;
  before(async () => {
    d = await startTestDaemon({ name: 'gv-oneshot' });
    dir = await mkdtemp(join(tmpdir(), 'bulkhead-gv-oneshot-'));
    await writeBusyboxArchive(join(dir, 'img.tar'), IMAGE);
    const r = await runCli(d, ['load', '-i', join(dir, 'img.tar')]);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await d?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const run = (args: string[], extra: string[] = ['--rm']) => runCli(d, ['run', ...extra, '--network', 'none', '--isolation', 'gvisor', IMAGE, ...args]);
  const PROBE = 'grep -E "^(Cap|NoNewPrivs|Seccomp)" /proc/self/status; id; hostname';

  it('output, exit code and what the workload is given are those of a pod\'s container', async () => {
    const one = await run(['sh', '-c', `echo out; echo err >&2; ${PROBE}; exit 3`], ['--rm', '--name', 'gv-same']);
    assert.equal(one.code, 3, one.stderr);
    assert.equal(one.stderr, 'err\n');
    // the same run the pod way (a detached run keeps its pod: pause + sub-container)
    const det = await run(['sh', '-c', `echo out; ${PROBE}`], ['-d', '--name', 'gv-same-pod']);
    assert.equal(det.code, 0, det.stderr);
    const id = det.stdout.trim();
    await waitFor(async () => ((await d.client.containerStatus(id)).status.state === 'CONTAINER_EXITED' ? true : undefined), 60_000, 'the detached run to exit');
    const logs = await runCli(d, ['logs', id]);
    assert.equal(logs.code, 0, logs.stderr);
    assert.equal(one.stdout.replace('gv-same\n', 'NAME\n'), logs.stdout.replace('gv-same-pod\n', 'NAME\n'), 'capabilities, seccomp, no_new_privs, user and hostname as in a pod');
    assert.match(one.stdout, /^out\nCapInh/);
    assert.equal((await runCli(d, ['rm', '-f', id])).code, 0);
    // stdin through conmon's attach, as a sandbox's own container takes it
    const piped = await runCli(d, ['run', '--rm', '-i', '--network', 'none', '--isolation', 'gvisor', IMAGE, 'sh', '-c', 'cat; exit 4'], { input: 'hello stdin\n' });
    assert.deepEqual([piped.code, piped.stdout], [4, 'hello stdin\n'], piped.stderr);
    const killed = await run(['sh', '-c', 'kill -9 $$']);
    assert.equal(killed.code, 137, 'death by SIGKILL is 128+9, as a pod\'s container');
  });

  it('one runsc sandbox, on --network=none, its Sentry without host capabilities; the pod\'s limits on its cgroup; nothing left after', async () => {
    const p = run(['sh', '-c', 'sleep 30'], ['--rm', '--memory', '64m', '--name', 'gv-one']);
    try {
      const sandboxes = await waitFor(async () => {
        const s = (await runscOf(d)).filter((x) => x.argv[0] === 'runsc-sandbox');
        return s.length > 0 ? s : undefined;
      }, 60_000, 'the sandbox');
      // the container started (its limits are written between runsc create and start), and a
      // pause + sub-container, had the pod gone that way, would show up by now
      await waitFor(async () => ((await d.client.listContainers()).some((c) => c.metadata?.name === 'gv-one' && c.state === 'CONTAINER_RUNNING') ? true : undefined), 60_000, 'the container to run');
      await new Promise((r) => setTimeout(r, 500));
      const all = (await runscOf(d)).filter((x) => x.argv[0] === 'runsc-sandbox');
      assert.equal(all.length, 1, `one sandbox: ${all.map((x) => x.argv.join(' ')).join('\n')}`);
      assert.deepEqual((await readdir(join(d.runDir, 'runtime', 'gvisor', 'containers'))).length, 1, 'one runsc container: no pause');
      const s = sandboxes[0]!;
      assert.ok(s.argv.includes('--network=none'), s.argv.join(' '));
      assert.notEqual(await readlink(`/proc/${s.pid}/ns/user`), await readlink('/proc/self/ns/user'), 'the Sentry runs in a user namespace of its own');
      // the sandbox's cgroup: the container's limit plus the Sentry's headroom, as a pod of it would have
      const cg = (await readFile(`/proc/${s.pid}/cgroup`, 'utf8')).split('\n').find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l))!.split(':')[2]!;
      const limit = Number((await readFile(join('/sys/fs/cgroup/memory', cg, 'memory.limit_in_bytes'), 'utf8')).trim());
      assert.equal(limit, 64 * MiB + sandboxHeadroom(1));
      assert.equal((await runCli(d, ['stop', '-t', '1', 'gv-one'])).code, 0);
    } finally {
      await p;
    }
    assert.deepEqual(await runscOf(d), [], 'no runsc process left');
    assert.equal((await runCli(d, ['ps', '-a', '-q'])).stdout.trim(), '');
    assert.deepEqual(await d.client.listPodSandbox(), []);
    assert.deepEqual(await readdir(join(d.runDir, 'runtime', 'gvisor', 'containers')).catch(() => []), [], 'no bundle left');
    assert.deepEqual((await readdir(join(d.runDir, 'runtime', 'gvisor', 'state')).catch(() => [])).filter((f) => !f.startsWith('.')), [], 'no runsc state left');
  });

  it('on the pod network (bridge) with gVisor\'s netstack in force: one runsc container, the pod\'s IP in the sandbox, the Sentry in a user namespace of its own', async (t) => {
    const gv = (await d.client.info()).handlers.find((h) => h.name === 'gvisor');
    if (!String(gv?.details?.network ?? '').startsWith('sandbox')) { t.skip(`netstack not in force here: ${String(gv?.details?.network)}`); return; }
    const p = runCli(d, ['run', '--rm', '--name', 'gv-bridge', '--isolation', 'gvisor', IMAGE, 'sh', '-c', 'ip -4 addr | grep -c "inet 10\\."; sleep 30']);
    try {
      const s = await waitFor(async () => (await runscOf(d)).find((x) => x.argv[0] === 'runsc-sandbox'), 60_000, 'the sandbox');
      await new Promise((r) => setTimeout(r, 500));
      assert.equal((await readdir(join(d.runDir, 'runtime', 'gvisor', 'containers'))).length, 1, 'one runsc container: no pause');
      assert.equal((await runscOf(d)).filter((x) => x.argv[0] === 'runsc-sandbox').length, 1);
      assert.notEqual(await readlink(`/proc/${s.pid}/ns/user`), await readlink('/proc/self/ns/user'), 'the Sentry runs in a user namespace of its own');
      assert.equal((await runCli(d, ['stop', '-t', '1', 'gv-bridge'])).code, 0);
    } finally {
      const r = await p;
      assert.equal(r.stdout, '1\n', `one address of the pod network in the sandbox: ${r.stdout}${r.stderr}`);
    }
    assert.deepEqual(await runscOf(d), [], 'no runsc process left');
    assert.deepEqual(await d.client.listPodSandbox(), []);
  });

  it('a one-shot pod holds one container at a time; a second is refused while the first exists', async () => {
    const c = d.client;
    const pc = {
      metadata: { name: 'gv-single', namespace: 'gv-oneshot', uid: randomUUID(), attempt: 0 }, linux: {},
      annotations: { [NETWORK_ANNOTATION]: 'none', [SINGLE_CONTAINER_ANNOTATION]: 'true' },
    };
    const podId = await c.runPodSandbox(pc, 'gvisor');
    try {
      const cfg = (name: string) => ({ metadata: { name }, image: { image: IMAGE }, command: ['sh', '-c', 'echo hi; sleep 30'], logPath: `${name}.log` });
      const a = await c.createContainer(podId, cfg('a'), pc);
      await c.startContainer(a);
      const r = await c.execSync(a, ['sh', '-c', 'echo $((6*7))'], 30);
      assert.equal(r.stdout.toString(), '42\n');
      // on the loopback-only network the sandbox's own loopback (--network=none): no pod netns is made
      assert.deepEqual(await netnsOf(podId), [], 'no pod netns');
      const links = (await c.execSync(a, ['sh', '-c', 'tail -n +3 /proc/net/dev'], 30)).stdout.toString().trim().split('\n').map((l) => l.trim().split(':')[0]);
      assert.deepEqual(links, ['lo'], 'loopback only');
      const err = await c.createContainer(podId, cfg('b'), pc).then(() => null, (e: unknown) => e);
      assert.ok(err instanceof BulkheadError, String(err));
      assert.equal(err.code, 'FailedPrecondition', err.message);
      assert.match(err.message, new RegExp(`runs its one container ${a}`));
      await c.stopContainer(a, 1);
      assert.equal((await c.containerStatus(a)).status.state, 'CONTAINER_EXITED');
      await c.removeContainer(a);
      const b = await c.createContainer(podId, cfg('b'), pc);
      await c.startContainer(b);
      assert.equal((await c.containerStatus(b)).status.state, 'CONTAINER_RUNNING');
    } finally {
      await c.removePodSandbox(podId);
    }
    assert.deepEqual(await runscOf(d), [], 'no runsc process left');
  });
});
