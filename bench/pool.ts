// Warm-pool claim latency: CRI RunPodSandbox → READY (the call returns a ready pod) from a warm
// pool against a cold start, side by side in one daemon and one run. Pods of trust level "pooled"
// (namespace bench-pooled) take members of a pool of --size; pods of level "cold" (namespace
// bench-cold, same settings, no pool) start cold. Each pooled start waits until its pool is full
// again, so every one is a claim (a hit), never a cold start in disguise; hits and misses are
// checked against the daemon's own counts. With and without a pod hostname, and as the kubelet sends
// a pod (a hostname and a cgroup_parent of its own, which the sandbox is moved under).
//
// --cli: then `bulkhead run --rm --network none --isolation HANDLER IMAGE true` (the CLI through
// the daemon) against a daemon whose default level has a pool of --network none members, against
// one without a pool, and against `podman run --rm --network none --runtime runsc` (ptrace, as
// bench/run.ts wraps it), interleaved round by round. microvm: also a pool whose members skip the
// container warm-up (BULKHEAD_VM_POOL_WARMUP=0, runtime/microvm/pool-adoption.ts), same rounds.
//
// --handler microvm: pod VMs (QEMU; TCG here, so a cold start is a boot of seconds): members boot
// with their virtio-fs share; cold pods boot too, and with --clones also as template clones (pods
// annotated io.bulkhead.vm.volumes=none, the fastest cold path). Fewer runs suit it (--runs 5).
//
// --variants picks some of the three ("hostname + cgroup_parent" alone: --variants cgroup_parent).
//
//   node bench/pool.ts [--handler gvisor|microvm] [--runs 20] [--size 2] [--clones] [--cli] [--cli-runs 10] [--variants a,b]
import { randomUUID } from 'node:crypto';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startTestDaemon, type TestDaemon } from '../harness/daemon.ts';
import type { PodSandboxConfig } from '../src/api/cri.ts';
import { writeBusyboxArchive } from '../src/cli/demo-image.ts';
import { resolveBinary } from '../src/runtime/conmon/driver.ts';
import { run } from '../src/util/exec.ts';
import { ASSETS } from '../harness/vm-assets.ts';

const { values } = parseArgs({
  options: {
    handler: { type: 'string', default: 'gvisor' },
    runs: { type: 'string', default: '20' },
    size: { type: 'string', default: '2' },
    cli: { type: 'boolean', default: false },
    clones: { type: 'boolean', default: false },
    'cli-runs': { type: 'string', default: '10' },
    variants: { type: 'string', default: 'hostname,no hostname,hostname + cgroup_parent' },
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
const handlerConfig = handler === 'microvm' ? { backend: handler, runtime_args: ['--assets', ASSETS] } : { backend: handler };
const d = await startTestDaemon({
  name: 'bulkhead-bench-pool-', handlers: { [handler]: handlerConfig }, defaultHandler: handler, logLevel: 'info',
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

const VARIANTS = ['hostname', 'no hostname', 'hostname + cgroup_parent'] as const;
type Variant = typeof VARIANTS[number];
const variants = values.variants.split(',').map((w) => w.trim()).filter(Boolean)
  .map((w) => VARIANTS.find((v) => v === w) ?? VARIANTS.find((v) => v.includes(w)) ?? (() => { throw new Error(`--variants: no variant ${JSON.stringify(w)} (${VARIANTS.join(', ')})`); })());

async function start(ns: string, v: Variant, i: number, clone = false): Promise<number> {
  const uid = randomUUID();
  const cfg: PodSandboxConfig = {
    metadata: { name: `p${i}`, namespace: ns, uid, attempt: 0 },
    ...(clone ? { annotations: { 'io.bulkhead.vm.volumes': 'none' } } : {}),
    // as the kubelet sends it: a hostname, and a cgroup parent of the pod's own
    linux: v === 'hostname + cgroup_parent' ? { cgroupParent: `/bulkhead/bench-pool-${process.pid}/pod${uid}` } : {},
    ...(v !== 'no hostname' ? { hostname: `bench-${i}` } : {}),
  };
  const t0 = performance.now();
  const id = await d.client.runPodSandbox(cfg, handler, { timeoutMs: 300_000 });
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
  for (const v of variants) {
    const warm: number[] = [];
    const cold: number[] = [];
    const clones: number[] = [];
    const before = await pool();
    for (let i = 0; i < runs; i++) {
      await full();
      warm.push(await start('bench-pooled', v, i));
      cold.push(await start('bench-cold', v, i));
      if (values.clones && handler === 'microvm') clones.push(await start('bench-cold', v, i, true));
    }
    const after = await pool();
    if (after.hits - before.hits !== runs || after.misses !== before.misses) throw new Error(`expected ${runs} hits and no miss, got ${after.hits - before.hits} hits, ${after.misses - before.misses} misses`);
    rows.push([`${handler} warm pool, ${v}`, warm], [`${handler} cold start, ${v}`, cold]);
    if (clones.length > 0) rows.push([`${handler} warm pool, ${v}`, warm], [`${handler} cold clone (volumes=none), ${v}`, clones]);
  }
  process.stdout.write(`RunPodSandbox → READY, ${runs} runs each, pool size ${size} (claims waited for a full pool)\n`);
  process.stdout.write(`${'what'.padEnd(56)} ${'p50'.padStart(10)} ${'p99'.padStart(10)}\n`);
  for (const [what, xs] of rows) process.stdout.write(`${what.padEnd(56)} ${fmt(pct(xs, 50)).padStart(10)} ${fmt(pct(xs, 99)).padStart(10)}\n`);
  for (let i = 0; i < rows.length; i += 2) {
    const w = rows[i]![1];
    const c = rows[i + 1]![1];
    process.stdout.write(`${rows[i]![0]}: p50 ${(pct(c, 50) / pct(w, 50)).toFixed(1)}x faster than ${rows[i + 1]![0]}\n`);
  }
} finally {
  await d.close();
}

if (values.cli) await cliBench();

async function cliBench(): Promise<void> {
  const BULKHEAD = new URL('../bin/bulkhead', import.meta.url).pathname;
  const IMAGE = 'bulkhead.local/demo:latest';
  const reps = Math.max(1, Math.min(100, Number(values['cli-runs']) || 10));
  const policy = `[policy]\ndefault_trust = "cli"\n[policy.levels.cli]\nmin_isolation = "process"\n`;
  const daemons: TestDaemon[] = [];
  const must = async (cmd: string, args: string[]): Promise<void> => {
    const r = await run(cmd, args, { timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`${cmd} ${args.slice(-4).join(' ')}: ${r.stderr.trim().slice(0, 300)}`);
  };
  try {
    const pooled = await startTestDaemon({
      name: 'bulkhead-bench-pool-cli-', handlers: { [handler]: { backend: handler } }, defaultHandler: handler, logLevel: 'info',
      policy: { toml: policy }, extraToml: `[pools]\n[pools.${handler}]\ncli = { size = ${size}, network = "none" }\n`,
    });
    daemons.push(pooled);
    // microvm: a second pool whose members skip the container warm-up (pool-adoption.ts), interleaved
    const noWarmUp = handler === 'microvm' ? await startTestDaemon({
      name: 'bulkhead-bench-pool-nowarm-cli-', handlers: { [handler]: { backend: handler } }, defaultHandler: handler, logLevel: 'info',
      policy: { toml: policy }, extraToml: `[pools]\n[pools.${handler}]\ncli = { size = ${size}, network = "none" }\n`, env: { BULKHEAD_VM_POOL_WARMUP: '0' },
    }) : undefined;
    if (noWarmUp) daemons.push(noWarmUp);
    const plain = await startTestDaemon({ name: 'bulkhead-bench-nopool-cli-', handlers: { [handler]: { backend: handler } }, defaultHandler: handler, logLevel: 'info', policy: { toml: policy } });
    daemons.push(plain);
    const bh = (t: TestDaemon, args: string[]): string[] => ['--root', t.root, '--run-dir', t.runDir, '--socket', t.socket, ...args];
    for (const t of daemons) {
      const archive = join(t.base, 'demo.tar');
      await writeBusyboxArchive(archive, IMAGE);
      await must(BULKHEAD, bh(t, ['load', '-i', archive]));
    }
    const pm = ['--root', join(plain.base, 'pm-root'), '--runroot', join(plain.base, 'pm-runroot'), '--cgroup-manager', 'cgroupfs', '--events-backend', 'none'];
    const havePodman = handler === 'gvisor' && (await run('podman', ['--version'], { timeoutMs: 10_000 }).catch(() => undefined))?.code === 0;
    const wrapper = join(plain.base, 'runsc-podman');
    if (havePodman) {
      const archive = join(plain.base, 'demo-podman.tar');
      await writeBusyboxArchive(archive, IMAGE);
      await must('podman', [...pm, 'load', '-i', archive]);
      await writeFile(wrapper, `#!/bin/sh\nexec ${resolveBinary('runsc')} --platform=ptrace --network=host "$@"\n`);
      await chmod(wrapper, 0o755);
    }
    const cliPool = async (d = pooled): Promise<WarmPoolLike> => ((await d.client.info()).warmPools ?? [])[0]!;
    const t = { pooled: [] as number[], nowarm: [] as number[], cold: [] as number[], podman: [] as number[] };
    const before = await cliPool();
    const time = async (f: () => Promise<void>): Promise<number> => { const t0 = performance.now(); await f(); return performance.now() - t0; };
    for (let i = 0; i < reps; i++) {
      for (let w = 0; w < 3000 && (await cliPool()).ready < size; w++) await new Promise((r) => setTimeout(r, 50));
      t.pooled.push(await time(() => must(BULKHEAD, bh(pooled, ['run', '--rm', '--network', 'none', '--isolation', handler, IMAGE, 'true']))));
      if (noWarmUp) {
        for (let w = 0; w < 3000 && (await cliPool(noWarmUp)).ready < size; w++) await new Promise((r) => setTimeout(r, 50));
        t.nowarm.push(await time(() => must(BULKHEAD, bh(noWarmUp, ['run', '--rm', '--network', 'none', '--isolation', handler, IMAGE, 'true']))));
      }
      t.cold.push(await time(() => must(BULKHEAD, bh(plain, ['run', '--rm', '--network', 'none', '--isolation', handler, IMAGE, 'true']))));
      if (havePodman) {
        t.podman.push(await time(() => must('podman', [...pm, 'run', '--rm', '--network', 'none', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--runtime', wrapper, IMAGE, 'true'])));
      }
    }
    const after = await cliPool();
    const med = (xs: number[]): number => pct(xs, 50);
    process.stdout.write(`\nbulkhead run --rm --network none --isolation ${handler} IMAGE true, ${reps} rounds (hits ${after.hits - before.hits}, misses ${after.misses - before.misses}${after.lastMiss ? `: ${after.lastMiss}` : ''})\n`);
    process.stdout.write(`${'what'.padEnd(36)} ${'p50'.padStart(10)} ${'p99'.padStart(10)}\n`);
    const rows: [string, number[]][] = [['bulkhead run, warm pool', t.pooled], ...(noWarmUp ? [['bulkhead run, pool without warm-up', t.nowarm] as [string, number[]]] : []), ['bulkhead run, no pool', t.cold], ...(havePodman ? [['podman run --runtime runsc (ptrace)', t.podman] as [string, number[]]] : [])];
    for (const [what, xs] of rows) process.stdout.write(`${what.padEnd(36)} ${fmt(pct(xs, 50)).padStart(10)} ${fmt(pct(xs, 99)).padStart(10)}\n`);
    if (noWarmUp) process.stdout.write(`ratio (median): warm pool with the container warm-up / without ${(med(t.pooled) / med(t.nowarm)).toFixed(2)}x\n`);
    if (havePodman) process.stdout.write(`ratios (median): warm pool/podman ${(med(t.pooled) / med(t.podman)).toFixed(2)}x, no pool/podman ${(med(t.cold) / med(t.podman)).toFixed(2)}x\n`);
  } finally {
    for (const t of daemons) await t.close();
  }
}

interface WarmPoolLike { ready: number; hits: number; misses: number; lastMiss: string }
