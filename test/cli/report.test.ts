// `bulkhead report` end to end with a private root: its own daemon, the probe in a trusted pod on
// runc, gVisor and the microVM (on the pod network, the egress guard in force), a few timed starts,
// density and PSS, the podman peers, and the files it writes. The HTML is checked here as text
// (test/cli/report-html.test.ts reads it in headless Chromium); the charts as PNG and inline SVG.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN } from '../fixtures/cli.ts';
import type { Report } from '../../src/cli/report.ts';
import { ASSETS, skipReason as vmSkipReason } from '../../harness/vm-assets.ts';

// the microVM handler joins when this host can run it (QEMU and the guest assets)
const VM = vmSkipReason() === undefined;

test('bulkhead report probes runc, gVisor and the microVM (and podman runc/runsc with --peers), times their starts, measures density and PSS, and writes report.json, charts and a self-contained report.html', async () => {
  if (!VM) console.log(`# microvm left out: ${vmSkipReason()}`);
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-report-test-'));
  try {
    const out = join(dir, 'out');
    const child = spawn(BIN, ['--root', join(dir, 'root'), '--run-dir', join(dir, 'run'), 'report', '--out', out, '--handlers', VM ? 'runc,gvisor,microvm' : 'runc,gvisor', '--runs', '2', '--density', '2', '--vm-assets', ASSETS, '--peers'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 540_000);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearTimeout(timer);
    assert.equal(code, 0, stderr);
    assert.equal(stdout.trim(), join(out, 'report.html'));
    // a progress line per step
    for (const step of ['runc: probe', 'runc: start 2/2', 'runc: idle pod memory', 'runc: density pod 2/2', 'runc: 2 idle pods: PSS [\\d.]+ MiB in all, [\\d.]+ MiB per pod', 'gvisor: probe', 'charts', 'gvisor: start 2/2', 'podman/runc: probe', 'podman/runsc: start 2/2', 'wrote']) assert.match(stderr, new RegExp(`^report: ${step}`, 'm'), stderr);

    const r = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    const htmlText = await readFile(join(out, 'report.html'), 'utf8');
    const html0 = (): string => htmlText;
    assert.deepEqual(r.handlers.map((h) => h.handler), [...(VM ? ['runc', 'gvisor', 'microvm'] : ['runc', 'gvisor']), 'podman/runc', 'podman/runsc']);
    const peers = r.handlers.slice(VM ? 3 : 2);
    // density: two idle pods at once per handler, the PSS of every process each adds, all gone afterwards
    for (const h of r.handlers.slice(0, VM ? 3 : 2)) {
      const d = h.density!;
      assert.equal(d.error, undefined, `${h.handler}: ${d.error}`);
      assert.equal(d.pods, 2);
      assert.equal(d.perPod.length, 2);
      assert.ok(d.nthStartSeconds! > 0 && d.nthStartSeconds === d.startSeconds[1]);
      assert.ok(d.perPod.every((p) => p.pssBytes > 0 && p.processes.includes('conmon')), `${h.handler}: ${JSON.stringify(d.perPod)}`);
      // the total also holds what the handler keeps for all its pods (the microVM's standby supervisor)
      assert.equal(d.pssTotalBytes, d.perPod[0]!.pssBytes + d.perPod[1]!.pssBytes + (d.sharedPssBytes ?? 0));
      assert.deepEqual(d.leftovers, [], `${h.handler}: nothing left behind`);
    }
    assert.ok(r.handlers[1]!.density!.pssPerPodBytes! > 4 * r.handlers[0]!.density!.pssPerPodBytes!, 'a gVisor pod (Sentry, gofer) costs more than a runc one');
    assert.ok(r.handlers[1]!.density!.perPod[0]!.processes.includes('runsc-sandbox') || r.handlers[1]!.density!.perPod[0]!.processes.includes('exe'), 'gVisor\'s sandbox counted');
    if (VM) assert.ok(r.handlers[2]!.density!.perPod[0]!.processes.includes('qemu-system-x86_64'), 'the VM\'s QEMU counted');
    // nothing of the report's daemon is left: no process naming its private root, nothing mounted under it (cgroups: the leftovers above)
    const procs = await readdir('/proc');
    for (const pid of procs.filter((d) => /^\d+$/.test(d))) {
      const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      assert.equal(cmd.includes(dir), false, `process ${pid} left: ${cmd.replace(/\0/g, ' ')}`);
    }
    assert.equal((await readFile('/proc/self/mountinfo', 'utf8')).includes(dir), false, 'nothing left mounted under the root');
    // the charts: PNG files and inline SVG
    for (const f of ['report.png', 'charts/start-latency.png', 'charts/memory.png', 'charts/syscalls.png', 'charts/blocks.png']) {
      assert.deepEqual([...(await readFile(join(out, f))).subarray(1, 4)], [0x50, 0x4e, 0x47], `${f} is a PNG`);
    }
    // the peers: the same probe under podman (no network: podman's bridge would change the host)
    const podmanRunc = peers[0]!;
    assert.ok(podmanRunc.probe?.complete, podmanRunc.probeError ?? '');
    assert.equal(podmanRunc.probe!.kernel, release());
    assert.equal(podmanRunc.startSeconds.length, 2);
    assert.ok(peers[1]!.probe?.complete, peers[1]!.probeError ?? '');
    assert.equal((await readFile('/proc/self/mountinfo', 'utf8')).includes('bulkhead-report-peers-'), false, 'podman left nothing mounted');
    assert.match(html0(), /podman\/runc \(process\)/);
    const [runc, gvisor] = [r.handlers[0]!, r.handlers[1]!];
    for (const h of [runc, gvisor]) {
      assert.ok(h.probe?.complete, `${h.handler}: the probe ran to its end (${h.probeError ?? ''})`);
      assert.equal(h.startSeconds.length, 2, `${h.handler}: two timed starts`);
      assert.ok(h.startP50! > 0 && h.startP99! >= h.startP50!);
      assert.equal(h.probe!.runtimeSockets.length, 0, `${h.handler}: no runtime socket visible`);
      assert.ok((h.idlePodBytes ?? 0) > 0, `${h.handler}: idle pod memory (${h.idlePodError ?? ''})`);
      assert.equal(h.probe!.ops.find((o) => o.name === 'mount')!.allowed, false, `${h.handler}: mount is blocked`);
      assert.equal(h.probe!.capabilities.includes('SYS_ADMIN'), false);
      // the node's own addresses are not reachable through the egress guard
      for (const t of r.targets) assert.notEqual(h.probe!.reach[t], 'open', `${h.handler} reaches ${t}`);
    }
    assert.equal(runc.probe!.kernel, release(), 'runc shares the host kernel');
    assert.equal(runc.probe!.seccompMode, 2, 'runc: seccomp filter');
    assert.ok(runc.probe!.noNewPrivs);
    assert.ok(runc.probe!.ops.every((o) => o.allowed || o.errno !== '' || /not found/.test(o.message)), 'every blocked op has its errno');
    assert.notEqual(gvisor.probe!.kernel, release(), 'gVisor shows its own kernel');
    // the syscall loop ran in both; gVisor (ptrace platform) intercepts every call: much slower
    assert.ok(runc.probe!.syscallLoopSeconds >= 0 && gvisor.probe!.syscallLoopSeconds > runc.probe!.syscallLoopSeconds, `${gvisor.probe!.syscallLoopSeconds} s vs ${runc.probe!.syscallLoopSeconds} s`);
    assert.ok(gvisor.idlePodBytes! > runc.idlePodBytes!, `a gVisor pod (its Sentry) costs more than a runc one: ${gvisor.idlePodBytes} vs ${runc.idlePodBytes}`);

    const html = await readFile(join(out, 'report.html'), 'utf8');
    assert.doesNotMatch(html, /<script|<link|src=|https?:\/\//, 'self-contained: nothing fetched, no scripts');
    for (const id of ['facts', 'ops', 'reach', 'cost']) assert.match(html, new RegExp(`<table id="${id}">`));
    for (const c of ['start-latency', 'memory', 'syscalls', 'blocks']) assert.match(html, new RegExp(`<figure class="chart" id="chart-${c}" data-chart="${c}"><svg `));
    assert.match(html, /<th>runc \(process\)<\/th><th>gvisor \(user-kernel\)<\/th>/);
    assert.match(html, /<th scope="row">PSS per pod \(MiB\)<\/th><td class="">[\d.]+<\/td>/);
    assert.match(html, new RegExp(`<th scope="row">kernel seen</th><td class="">${release().replace(/\./g, '\\.')}</td><td class="">${gvisor.probe!.kernel.replace(/\./g, '\\.')}</td>`));
    assert.match(html, /<th scope="row">mount: mount a tmpfs \(CAP_SYS_ADMIN\)<\/th><td class="shut">blocked E[A-Z]+<\/td><td class="shut">blocked E[A-Z]+<\/td>/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
