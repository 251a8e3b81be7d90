// /metrics of a real daemon: after real CRI calls over the socket (a runc pod with a running
// container, a pod the policy refuses, a pod whose runtime fails to start it, pulls from the test
// registry), the scrape shows the RPC histogram, pods/containers by handler and state, policy
// decisions, pulls and their bytes, and start failures moved by exactly those calls. The text is
// parsed with parse-prometheus-text-format and checked line by line against the exposition grammar.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { connect as netConnect } from 'node:net';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { sharedRegistry, type TestRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages, type TestImages } from '../../harness/images.ts';
import { BulkheadError } from '../../src/errors.ts';
import type { ContainerConfig, PodSandboxConfig } from '../../src/api/cri.ts';

let d: TestDaemon;
let reg: TestRegistry;
let images: TestImages;
let url = '';
let scriptDir = '';


before(async () => {
  reg = await sharedRegistry();
  images = await buildAndPushTestImages(reg);
  // the flaky handler's runtime is runc that refuses `create`: a real start failure of the pod's pause container
  scriptDir = await mkdtemp(join(tmpdir(), 'bulkhead-metrics-runc-'));
  const runc = execFileSync('sh', ['-c', 'command -v runc'], { encoding: 'utf8' }).trim();
  const flaky = join(scriptDir, 'flaky-runc');
  await writeFile(flaky, `#!/bin/sh\nfor a in "$@"; do [ "$a" = create ] && { echo "flaky-runc: create refused (test)" >&2; exit 1; }; done\nexec ${runc} "$@"\n`);
  await chmod(flaky, 0o755);
  d = await startTestDaemon({
    name: 'bulkhead-cri-metrics-',
    handlers: { runc: { backend: 'runc' }, flaky: { backend: 'runc', binary: flaky } },
    policy: { toml: ['[policy]', 'default_trust = "trusted"', '[policy.levels.trusted]', 'min_isolation = "process"', 'default_handler = "runc"'].join('\n') },
    // port 0: the kernel picks a free one at the daemon's bind (a port probed free beforehand can be
    // taken by any connection's ephemeral port meanwhile); the daemon logs the URL
    extraToml: ['[metrics]', 'address = "127.0.0.1:0"'].join('\n'),
  });
  url = await metricsUrlOf(d);
});
/** The /metrics URL the daemon logged (it listens before the CRI socket that startTestDaemon waits for). */
async function metricsUrlOf(t: TestDaemon): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const m = /msg="metrics listening".* url="?(http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(await t.log());
    if (m) return m[1]!;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the daemon did not log where /metrics is');
}

after(async () => {
  await d?.close();
  if (scriptDir) await rm(scriptDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// The exposition format, strictly

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? (-?[0-9.e+-]+|[+-]Inf|NaN)$/i;

type Samples = Map<string, number>;
const key = (name: string, labels: Record<string, string>): string =>
  `${name}{${Object.keys(labels).sort().map((k) => `${k}="${labels[k]}"`).join(',')}}`;

/** Every sample line checked against the text format's grammar; TYPE before samples; histograms consistent. */
function parseStrict(text: string): Samples {
  // the maintained parser first: it throws on a line it cannot read
  const families = parsePrometheusTextFormat(text) as { name: string; type: string; help: string }[];
  for (const f of families) {
    assert.match(f.name, NAME);
    assert.notEqual(f.type, 'UNTYPED', `${f.name} has a # TYPE line`);
    assert.ok(f.help.length > 0, `${f.name} has a # HELP line`);
  }
  const out: Samples = new Map();
  const typed = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const t = /^# TYPE ([^ ]+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (t) { assert.ok(!typed.has(t[1]!), `one TYPE line for ${t[1]}`); typed.set(t[1]!, t[2]!); continue; }
    if (line.startsWith('# HELP ')) continue;
    const m = SAMPLE.exec(line);
    assert.ok(m, `sample line follows the text format: ${line}`);
    const name = m[1]!;
    const family = typed.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    assert.ok(typed.has(family), `${name} comes after its # TYPE line`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      assert.ok(!(l[1]! in labels), `label ${l[1]} once in ${line}`);
      labels[l[1]!] = l[2]!;
    }
    const k = key(name, labels);
    assert.ok(!out.has(k), `one sample per series: ${k}`);
    // Go's ParseFloat (what Prometheus reads values with) takes NaN and Inf in any case
    const raw = m[3]!.toLowerCase();
    const v = raw === 'nan' ? NaN : raw === '+inf' ? Infinity : raw === '-inf' ? -Infinity : Number(raw);
    assert.ok(!Number.isNaN(v) || raw === 'nan', line);
    out.set(k, v);
  }
  // histograms: buckets non-decreasing in le, +Inf bucket == _count
  for (const [fam, type] of typed) {
    if (type !== 'histogram') continue;
    const series = new Map<string, { le: number; v: number }[]>();
    for (const [k, v] of out) {
      if (!k.startsWith(`${fam}_bucket{`)) continue;
      const le = /le="([^"]+)"/.exec(k)![1]!;
      const rest = k.slice(`${fam}_bucket`.length).replace(/,?le="[^"]+"/, '').replace('{,', '{');
      const list = series.get(rest) ?? [];
      list.push({ le: le === '+Inf' ? Infinity : Number(le), v });
      series.set(rest, list);
    }
    for (const [labels, list] of series) {
      list.sort((a, b) => a.le - b.le);
      for (let i = 1; i < list.length; i++) assert.ok(list[i]!.v >= list[i - 1]!.v, `${fam}${labels}: buckets never decrease`);
      assert.equal(list.at(-1)!.le, Infinity, `${fam}${labels} has a +Inf bucket`);
      assert.equal(out.get(`${fam}_count${labels}`), list.at(-1)!.v, `${fam}${labels}: _count equals the +Inf bucket`);
    }
  }
  return out;
}

async function scrape(): Promise<Samples> {
  const r = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parseStrict(await r.text());
}

const val = (s: Samples, name: string, labels: Record<string, string> = {}): number => s.get(key(name, labels)) ?? 0;
/** Sum over every series of `name` whose labels include `match`. */
function sum(s: Samples, name: string, match: Record<string, string>): number {
  let n = 0;
  for (const [k, v] of s) {
    if (!k.startsWith(`${name}{`)) continue;
    if (Object.entries(match).every(([l, x]) => k.includes(`${l}="${x}"`))) n += v;
  }
  return n;
}

function pod(name: string, linux: PodSandboxConfig['linux'] = {}): PodSandboxConfig {
  return { metadata: { name, namespace: 'cri-metrics', uid: randomUUID(), attempt: 0 }, logDirectory: join(d.base, 'logs', name), labels: { t: name }, linux };
}
const ctr = (name: string, image: string): ContainerConfig => ({ metadata: { name, attempt: 0 }, image: { image }, command: ['sleep', '600'], logPath: `${name}.log` });

async function code(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => null, (e: unknown) => e);
  assert.ok(err instanceof BulkheadError, `expected a BulkheadError, got ${String(err)}`);
  return err.code;
}

test('a scrape after CRI calls shows each of them once, with the right labels', async () => {
  const s0 = await scrape();
  assert.equal(val(s0, 'bulkhead_pods', { handler: 'runc', state: 'ready' }), 0);

  const bb = images.pushed.busybox!;
  await d.client.pullImage(images.busybox);
  assert.equal(await code(d.client.pullImage(`${reg.host}/test/no-such-image:latest`)), 'NotFound');

  const okPod = pod('ok');
  const id = await d.client.runPodSandbox(okPod, 'runc');
  const cid = await d.client.createContainer(id, ctr('sleeper', images.busybox), okPod);
  await d.client.startContainer(cid);
  assert.equal(await code(d.client.runPodSandbox(pod('priv', { securityContext: { privileged: true } }), 'runc')), 'PermissionDenied');
  const flakyCode = await code(d.client.runPodSandbox(pod('flaky'), 'flaky'));

  const s1 = await scrape();
  const delta = (name: string, labels: Record<string, string>): number => val(s1, name, labels) - val(s0, name, labels);
  const rpc = 'bulkhead_cri_request_duration_seconds_count';
  // the RPC histogram: by method, the pod's handler and the status code
  assert.equal(delta(rpc, { method: 'RunPodSandbox', handler: 'runc', code: 'OK' }), 1);
  assert.equal(delta(rpc, { method: 'RunPodSandbox', handler: 'runc', code: 'PERMISSION_DENIED' }), 1);
  assert.equal(sum(s1, rpc, { method: 'RunPodSandbox', handler: 'flaky' }) - sum(s0, rpc, { method: 'RunPodSandbox', handler: 'flaky' }), 1);
  assert.equal(delta(rpc, { method: 'CreateContainer', handler: 'runc', code: 'OK' }), 1);
  assert.equal(delta(rpc, { method: 'StartContainer', handler: 'runc', code: 'OK' }), 1);
  assert.equal(delta(rpc, { method: 'PullImage', handler: '', code: 'OK' }), 1);
  assert.equal(delta(rpc, { method: 'PullImage', handler: '', code: 'NOT_FOUND' }), 1);
  assert.ok(val(s1, 'bulkhead_cri_request_duration_seconds_sum', { method: 'RunPodSandbox', handler: 'runc', code: 'OK' }) > 0);
  // pods and containers from the engine's views: the refused and failed pods are not there
  assert.equal(val(s1, 'bulkhead_pods', { handler: 'runc', state: 'ready' }), 1);
  assert.equal(val(s1, 'bulkhead_pods', { handler: 'flaky', state: 'ready' }), 0);
  assert.equal(val(s1, 'bulkhead_containers', { handler: 'runc', state: 'running' }), 1);
  // policy decisions by kind, outcome and rule
  assert.equal(delta('bulkhead_policy_decisions_total', { kind: 'pod', outcome: 'allowed', rule: 'trusted/handler' }), 2);
  assert.equal(delta('bulkhead_policy_decisions_total', { kind: 'pod', outcome: 'denied', rule: 'trusted/privileged' }), 1);
  assert.equal(delta('bulkhead_policy_decisions_total', { kind: 'container', outcome: 'allowed', rule: 'trusted/handler' }), 1);
  // pulls: one ok, one NotFound; the bytes are the busybox layers as stored in the registry
  assert.equal(delta('bulkhead_image_pulls_total', { outcome: 'ok' }), 1);
  assert.equal(delta('bulkhead_image_pulls_total', { outcome: 'NotFound' }), 1);
  assert.equal(delta('bulkhead_image_pull_bytes_total', {}), bb.layers.reduce((n, l) => n + l.size, 0));
  // start failures: the flaky runtime's pod, not the refused one
  assert.equal(delta('bulkhead_sandbox_start_failures_total', { handler: 'flaky', code: flakyCode }), 1);
  assert.equal(sum(s1, 'bulkhead_sandbox_start_failures_total', { handler: 'runc' }), 0);
  // warm pools do not exist yet: no such series
  assert.ok(![...s1.keys()].some((k) => k.startsWith('bulkhead_warm_pool')));

  // a stopped pod and its exited container move to their states at the next scrape
  await d.client.stopPodSandbox(id);
  const s2 = await scrape();
  assert.equal(val(s2, 'bulkhead_pods', { handler: 'runc', state: 'notready' }), 1);
  assert.equal(val(s2, 'bulkhead_containers', { handler: 'runc', state: 'exited' }), 1);
  await d.client.removePodSandbox(id);
  const s3 = await scrape();
  assert.equal(val(s3, 'bulkhead_pods', { handler: 'runc', state: 'notready' }), 0);
  assert.equal(val(s3, 'bulkhead_containers', { handler: 'runc', state: 'exited' }), 0);
  // RemovePodSandbox is labelled with the pod's handler although the pod is gone after the call
  assert.equal(val(s3, rpc, { method: 'RemovePodSandbox', handler: 'runc', code: 'OK' }) - val(s2, rpc, { method: 'RemovePodSandbox', handler: 'runc', code: 'OK' }), 1);
});

/** One raw HTTP/1.1 exchange: the status line of the answer. */
async function rawStatus(request: string): Promise<string> {
  const u = new URL(url);
  return await new Promise<string>((resolve, reject) => {
    const sock = netConnect(Number(u.port), u.hostname);
    let buf = '';
    sock.setTimeout(10_000, () => { sock.destroy(); reject(new Error('timeout')); });
    sock.on('data', (b) => { buf += b.toString('latin1'); if (buf.includes('\r\n')) { sock.destroy(); resolve(buf.split('\r\n')[0]!); } });
    sock.on('error', reject);
    sock.on('close', () => resolve(buf.split('\r\n')[0] ?? ''));
    sock.write(request);
  });
}

test('only GET /metrics answers; bodies and oversized headers are refused', async () => {
  const host = new URL(url).host;
  assert.match(await rawStatus(`GET /metrics HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`), / 200 /);
  assert.match(await rawStatus(`POST /metrics HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`), / 405 /);
  assert.match(await rawStatus(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`), / 404 /);
  assert.match(await rawStatus(`GET /metrics/../x HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`), / 404 /);
  assert.match(await rawStatus(`GET /metrics HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 5\r\n\r\nhello`), / 413 /);
  assert.match(await rawStatus(`GET /metrics HTTP/1.1\r\nHost: ${host}\r\nX-Big: ${'a'.repeat(16 * 1024)}\r\n\r\n`), / 431 /);
  // the server is still there after all that
  await scrape();
});
