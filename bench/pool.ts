// Warm-pool claim latency: CRI RunPodSandbox → READY (the call returns a ready pod) from a warm
// pool against a cold start, side by side in one daemon and one run. Pods of trust level "pooled"
// (namespace bench-pooled) take members of a pool of --size; pods of level "cold" (namespace
// bench-cold, same settings, no pool) start cold. Each pooled start waits until its pool is full
// again, so every one is a claim (a hit), never a cold start in disguise; hits and misses are
// checked against the daemon's own counts. With and without a pod hostname (Kubernetes always
// sets one; setting it in a running gVisor sandbox is one `runsc exec`).
//
//   node bench/pool.ts [--handler gvisor] [--runs 20] [--size 2]
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { startTestDaemon } from '../harness/daemon.ts';
import type { PodSandboxConfig } from '../src/api/cri.ts';

const { values } = parseArgs({
  options: {
    handler: { type: 'string', default: 'gvisor' },
    runs: { type: 'string', default: '20' },
    size: { type: 'string', default: '2' },
  },
});
const handler = values.handler;
const runs = Number(values.runs);
const size = Number(values.size);
if (!Number.isInteger(runs) || runs < 1 || runs > 500) throw new Error('--runs must be 1..500');
if (!Number.isInteger(size) || size < 1 || size > 16) throw new Error('--size must be 1..16');

const POLICY = `[policy]
default_trust = "cold"
[policy.levels.cold]
min_isolation = "process"
[policy.levels.pooled]
min_isolation = "process"
[[policy.rules]]
name = "pooled"
trust = "pooled"
namespaces = ["bench-pooled"]
`;
const d = await startTestDaemon({
  name: 'bulkhead-bench-pool-', handlers: { [handler]: { backend: handler } }, defaultHandler: handler, logLevel: 'info',
  policy: { toml: POLICY }, extraToml: `[pools]\n[pools.${handler}]\npooled = ${size}\n`,
});

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};
const fmt = (x: number): string => `${x.toFixed(1)} ms`;

async function pool(): Promise<{ ready: number; target: number; hits: number; misses: number }> {
  const p = ((await d.client.info()).warmPools ?? []).find((x) => x.handler === handler && x.level === 'pooled');
  if (!p) throw new Error('no pool in bulkhead info');
  return p;
}
async function full(): Promise<void> {
  const end = Date.now() + 300_000;
  while (Date.now() < end) {
    const p = await pool();
    if (p.ready === p.target) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the pool did not fill in 5 minutes');
}

async function start(ns: string, hostname: boolean, i: number): Promise<number> {
  const cfg: PodSandboxConfig = { metadata: { name: `p${i}`, namespace: ns, uid: randomUUID(), attempt: 0 }, linux: {}, ...(hostname ? { hostname: `bench-${i}` } : {}) };
  const t0 = performance.now();
  const id = await d.client.runPodSandbox(cfg, handler);
  const ms = performance.now() - t0;
  const st = (await d.client.podSandboxStatus(id)).status.state;
  if (st !== 'SANDBOX_READY') throw new Error(`pod ${id} is ${st}`);
  await d.client.stopPodSandbox(id);
  await d.client.removePodSandbox(id);
  return ms;
}

try {
  await full();
  const rows: [string, number[]][] = [];
  for (const hostname of [true, false]) {
    const warm: number[] = [];
    const cold: number[] = [];
    const before = await pool();
    for (let i = 0; i < runs; i++) {
      await full();
      warm.push(await start('bench-pooled', hostname, i));
      cold.push(await start('bench-cold', hostname, i));
    }
    const after = await pool();
    if (after.hits - before.hits !== runs || after.misses !== before.misses) throw new Error(`expected ${runs} hits and no miss, got ${after.hits - before.hits} hits, ${after.misses - before.misses} misses`);
    rows.push([`${handler} warm pool${hostname ? ', hostname' : ', no hostname'}`, warm], [`${handler} cold start${hostname ? ', hostname' : ', no hostname'}`, cold]);
  }
  process.stdout.write(`RunPodSandbox → READY, ${runs} runs each, pool size ${size} (claims waited for a full pool)\n`);
  process.stdout.write(`${'what'.padEnd(36)} ${'p50'.padStart(10)} ${'p99'.padStart(10)}\n`);
  for (const [what, xs] of rows) process.stdout.write(`${what.padEnd(36)} ${fmt(pct(xs, 50)).padStart(10)} ${fmt(pct(xs, 99)).padStart(10)}\n`);
  for (let i = 0; i < rows.length; i += 2) {
    const w = rows[i]![1];
    const c = rows[i + 1]![1];
    process.stdout.write(`${rows[i]![0]}: p50 ${(pct(c, 50) / pct(w, 50)).toFixed(1)}x faster than cold\n`);
  }
} finally {
  await d.close();
}
