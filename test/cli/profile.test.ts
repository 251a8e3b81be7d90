// `bulkhead profile` end to end: the real CLI against a real daemon (runc, strict, strict-learn),
// images from the test registry. learn (progress lines, --probe in a second container of the pod,
// --json), show, ls, diff, rm, denials, and `run --isolation strict` before and after rm (fail closed).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { runCli } from '../fixtures/cli.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildLayer, busyboxLayers, pushImage } from '../../harness/images.ts';
import type { StrictProfile } from '../../src/runtime/strict/profile.ts';

describe('bulkhead profile', () => {
  let d: TestDaemon;
  let echo: string;
  let web: string;
  before(async () => {
    const reg = await sharedRegistry();
    echo = (await pushImage(reg, 'test/profile-echo', 'latest', { layers: busyboxLayers(), config: { Cmd: ['sh', '-c', 'echo hi'] } })).ref;
    const www = buildLayer([{ type: 'dir', path: 'www/' }, { type: 'file', path: 'www/index.html', content: '<p>strict page</p>\n' }]);
    web = (await pushImage(reg, 'test/profile-web', 'latest', { layers: [...busyboxLayers(), www], config: { Cmd: ['httpd', '-f', '-p', '8080', '-h', '/www'] } })).ref;
    d = await startTestDaemon({
      name: 'bulkhead-profile-',
      handlers: { runc: { backend: 'runc' }, strict: { backend: 'strict' }, 'strict-learn': { backend: 'strict-learn' } },
      registries: { insecure: [reg.host] },
    });
  });
  after(async () => { await d?.close(); });

  it('learn prints progress and the profile; show, ls and diff read it; strict runs the workload; rm makes strict refuse it', async () => {
    const r = await runCli(d, ['profile', 'learn', '--duration', '5s', echo]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^learning .* on handler strict-learn$/m);
    assert.match(r.stderr, /^workload exited 0$/m);
    assert.match(r.stdout, /^system calls: {2}\d+ allowed \(the default profile allows \d+\)$/m);
    assert.match(r.stdout, /^root fs: {7}read-only/m);

    const shown = JSON.parse((await runCli(d, ['profile', 'show', '--json', echo])).stdout) as StrictProfile;
    assert.ok(shown.syscalls.length > 10 && shown.syscalls.length <= 40, String(shown.syscalls.length));
    assert.deepEqual(shown.imageNames, [echo]);
    assert.equal(shown.training.exitCode, 0);
    const ls = await runCli(d, ['profile', 'ls']);
    assert.match(ls.stdout, new RegExp(`${shown.manifestDigest.slice(7, 19)}.*${shown.syscalls.length}`));
    const diff = JSON.parse((await runCli(d, ['profile', 'diff', '--json', echo])).stdout) as { syscalls: { onlyA: string[]; onlyB: string[] } };
    assert.ok(diff.syscalls.onlyB.includes('mount') === false && diff.syscalls.onlyB.includes('socket'), 'the default profile allows socket; echo does not need it');

    const ok = await runCli(d, ['run', '--rm', '--network', 'none', '--isolation', 'strict', echo]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, 'hi\n');
    const denied = await runCli(d, ['run', '--rm', '--network', 'none', '--isolation', 'strict', echo, 'sh', '-c', 'unshare -m true && echo escaped || echo refused']);
    // sh cannot even fork here: the profile of `echo hi` has no clone
    assert.doesNotMatch(denied.stdout, /escaped/);

    // a detached one keeps its record: `profile denials` shows what its profile refused
    const det = await runCli(d, ['run', '-d', '--name', 'denied', '--network', 'none', '--isolation', 'strict', echo, 'sh', '-c', 'unshare -m true']);
    assert.equal(det.code, 0, det.stderr);
    let rows: { name: string; denied: Record<string, number> }[] = [];
    for (let i = 0; i < 50 && !(rows[0]?.denied.unshare); i++) {
      rows = JSON.parse((await runCli(d, ['profile', 'denials', '--json', 'denied'])).stdout) as typeof rows;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(rows[0]?.name, 'denied');
    assert.ok((rows[0]?.denied.unshare ?? 0) >= 1, JSON.stringify(rows));
    assert.match((await runCli(d, ['profile', 'denials'])).stdout, /denied +.*unshare×\d+/);
    assert.equal((await runCli(d, ['rm', '-f', 'denied'])).code, 0);

    const rm = await runCli(d, ['profile', 'rm', echo]);
    assert.equal(rm.code, 0, rm.stderr);
    const refused = await runCli(d, ['run', '--rm', '--network', 'none', '--isolation', 'strict', echo]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /no system call profile for image .*bulkhead profile learn/);
  });

  it('learn --probe: busybox httpd serving a page, probed from a second container of the pod; the page is served under strict', async () => {
    const r = await runCli(d, ['profile', 'learn', '--json', '--duration', '6s', '--probe', 'wget -qO- http://127.0.0.1:8080/', web]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^probe exited 0 \(answered\)$/m);
    assert.match(r.stderr, /^time is up: stopping the workload$/m);
    const p = JSON.parse(r.stdout) as StrictProfile & { probeExitCode: number };
    console.log(`# httpd -f serving a page: ${p.syscalls.length} system calls: ${p.syscalls.join(' ')}`);
    assert.ok(p.syscalls.includes('accept') || p.syscalls.includes('accept4'), 'the probe made httpd accept');
    assert.ok(p.syscalls.length <= 60, `goal: at most 60 (got ${p.syscalls.length})`);
    assert.equal(p.training.probe, 'wget -qO- http://127.0.0.1:8080/');
  });
});

describe('bulkhead profile learn under the built-in policy (every pod untrusted)', () => {
  let d: TestDaemon;
  let echo: string;
  before(async () => {
    const reg = await sharedRegistry();
    echo = (await pushImage(reg, 'test/profile-echo', 'latest', { layers: busyboxLayers(), config: { Cmd: ['sh', '-c', 'echo hi'] } })).ref;
    d = await startTestDaemon({
      name: 'bulkhead-profile-builtin-', policy: 'builtin',
      handlers: { runc: { backend: 'runc' }, gvisor: { backend: 'gvisor', runtime_args: ['--platform=ptrace'] }, strict: { backend: 'strict' }, 'strict-learn': { backend: 'strict-learn' } },
      registries: { insecure: [reg.host] },
    });
  });
  after(async () => { await d?.close(); });

  it('is refused (a training run is the process class) before any sandbox starts, and leaves no pod behind', async () => {
    const r = await runCli(d, ['profile', 'learn', '--duration', '2s', echo]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /the trust policy moved the training pod from "strict-learn" to "(gvisor|microvm)"/);
    assert.deepEqual(await d.client.listPodSandbox(), []);
    assert.doesNotMatch(await d.log(), /pod sandbox ready|kind=pod object=bulkhead\/learn-/, 'no training sandbox was asked for');
  });
});
