// `bulkhead report` end to end with a private root: its own daemon, the probe in a trusted pod on
// runc and on gVisor (on the pod network, the egress guard in force), a few timed starts, and the
// files it writes. Chromium is not installed here, so the HTML is checked as text (its tables and
// cells), not rendered; the charts are checked as inline SVG.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN } from '../fixtures/cli.ts';
import type { Report } from '../../src/cli/report.ts';

test('bulkhead report probes runc and gVisor (and podman runc/runsc with --peers), times their starts and writes report.json and a self-contained report.html', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-report-test-'));
  try {
    const out = join(dir, 'out');
    const child = spawn(BIN, ['--root', join(dir, 'root'), '--run-dir', join(dir, 'run'), 'report', '--out', out, '--handlers', 'runc,gvisor', '--runs', '2', '--peers'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearTimeout(timer);
    assert.equal(code, 0, stderr);
    assert.equal(stdout.trim(), join(out, 'report.html'));
    // a progress line per step
    for (const step of ['runc: probe', 'runc: start 2/2', 'runc: idle pod memory', 'gvisor: probe', 'gvisor: start 2/2', 'podman/runc: probe', 'podman/runsc: start 2/2', 'wrote']) assert.match(stderr, new RegExp(`^report: ${step}`, 'm'), stderr);

    const r = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    const htmlText = await readFile(join(out, 'report.html'), 'utf8');
    const html0 = (): string => htmlText;
    assert.deepEqual(r.handlers.map((h) => h.handler), ['runc', 'gvisor', 'podman/runc', 'podman/runsc']);
    // the peers: the same probe under podman (no network: podman's bridge would change the host)
    const podmanRunc = r.handlers[2]!;
    assert.ok(podmanRunc.probe?.complete, podmanRunc.probeError ?? '');
    assert.equal(podmanRunc.probe!.kernel, release());
    assert.equal(podmanRunc.startSeconds.length, 2);
    assert.ok(r.handlers[3]!.probe?.complete, r.handlers[3]!.probeError ?? '');
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
    assert.match(html, /<th>runc \(process\)<\/th><th>gvisor \(user-kernel\)<\/th>/);
    assert.match(html, new RegExp(`<th scope="row">kernel seen</th><td class="">${release().replace(/\./g, '\\.')}</td><td class="">${gvisor.probe!.kernel.replace(/\./g, '\\.')}</td>`));
    assert.match(html, /<th scope="row">mount: mount a tmpfs \(CAP_SYS_ADMIN\)<\/th><td class="shut">blocked E[A-Z]+<\/td><td class="shut">blocked E[A-Z]+<\/td>/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
