// Start-up cost of running `true` in a fresh container, side by side, in ONE run:
//   floor     plain `runc run` / `runsc run` of a prepared bundle (busybox-static rootfs)
//   layer     the runtime layer: createContainer+start+wait+delete through conmon (runc; gvisor as
//             the engine runs a pod: pause sandbox + the container inside it)
//   bulkhead  the real CLI against a running daemon: `bulkhead run --rm --network none IMAGE true`;
//             gVisor also against a second daemon with a warm pool of sandboxes (`[pools.gvisor]`,
//             one member, network none), each run timed once the pool is refilled. A gVisor
//             `run --rm` runs its container as the runsc sandbox itself (no pause, so no pool
//             member is taken: the pooled line shows how many were); a pod made otherwise (CRI,
//             `run -d`) is what the layer line measures
//   podman    `podman run --rm --network none IMAGE true` (runc, and runsc via a wrapper): what a user
//             types, the same image loaded into podman's own storage (offline, `podman load`)
// The CLI's run path is bundled first (`npm run build:cli`), as `npm ci` leaves it.
// Variants run interleaved (one of each per round) so drift on a shared machine hits all alike.
//
//   node bench/run.ts [--reps 10] [--skip podman,bulkhead,gvisor,runc-shim,pool] [--profile]
//
// --profile adds a timestamped breakdown of one `bulkhead run` (CLI start-up, daemon-side spans
// from the daemon log when it has them) and of the runtime layer's steps.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, open, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import type { Backend } from '../src/runtime/backend.ts';
import { resolveBinary } from '../src/runtime/conmon/driver.ts';
import { GvisorBackend } from '../src/runtime/gvisor/gvisor-backend.ts';
import { RuncBackend } from '../src/runtime/runc/runc-backend.ts';
import { buildPauseSpec, buildSpec } from '../src/runtime/spec.ts';
import { run } from '../src/util/exec.ts';
import { socketAnswers } from '../src/util/socket.ts';
import { connect } from '../src/cri/client.ts';
import { silentLogger } from '../src/util/log.ts';
import { writeBusyboxArchive } from '../src/cli/demo-image.ts';
import { writeBusyboxRootfs } from '../harness/rootfs.ts';
import { buildBundle } from '../src/cli/bundle-build.ts';

const { values } = parseArgs({
  options: {
    reps: { type: 'string', default: '10' },
    skip: { type: 'string', default: '' },
    profile: { type: 'boolean', default: false },
  },
});
const reps = Math.max(1, Math.min(100, Number(values.reps) || 10));
const skip = new Set(values.skip.split(',').map((s) => s.trim()).filter(Boolean));
const IMAGE = 'bulkhead.local/demo:latest';
const BULKHEAD = new URL('../bin/bulkhead', import.meta.url).pathname;
const suffix = randomBytes(3).toString('hex');
const cgroupParent = `/bulkhead-bench-${suffix}`;

// the CLI as `npm ci` leaves it: the run path's bundle (src/cli/bundle.ts), made again from the
// sources as they are now (a stale one would not be used: the bench would time the sources)
const cliBundle = await buildBundle(new URL('..', import.meta.url).pathname);
if (process.env.BULKHEAD_CLI_BUNDLE === '0') console.log('bulkhead CLI: run from the sources (BULKHEAD_CLI_BUNDLE=0)');
else console.log(cliBundle.built ? `bulkhead CLI: the run path bundled (${cliBundle.inputs} sources)` : `bulkhead CLI: run from the sources (${cliBundle.reason})`);

const work = await mkdtemp(join(tmpdir(), 'bulkhead-bench-run-'));
const rootfs = join(work, 'rootfs');
await writeBusyboxRootfs(rootfs);
const cleanups: (() => Promise<unknown>)[] = [];
let seq = 0;

async function must(cmd: string, args: string[], timeoutMs = 120_000): Promise<string> {
  const r = await run(cmd, args, { timeoutMs });
  if (r.code !== 0) throw new Error(`${cmd} ${args.slice(0, 6).join(' ')} ... exited ${r.code}: ${r.stderr.trim().slice(-500)}`);
  return r.stdout;
}

type Variant = { name: string; group: 'floor' | 'layer' | 'bulkhead' | 'podman'; runtime: 'runc' | 'runsc'; once: () => Promise<void> };
const variants: Variant[] = [];

// (i) the floor: a prepared bundle run directly by the OCI runtime
const bundle = join(work, 'bundle');
await mkdir(bundle);
const floorSpec = await buildSpec({ rootfs, command: ['true'], cgroupParent, cgroupName: 'floor' });
const floorState = join(work, 'floor-state');
async function floorRun(runtime: 'runc' | 'runsc'): Promise<void> {
  const id = `floor-${suffix}-${++seq}`;
  const spec = structuredClone(floorSpec);
  spec.linux!.cgroupsPath = `${cgroupParent}/${id}`;
  await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
  const args = runtime === 'runc'
    ? ['--root', floorState, 'run', '--bundle', bundle, id]
    : ['--root', floorState, '--platform=ptrace', '--network=host', 'run', '--bundle', bundle, id];
  const t0 = performance.now();
  await must(runtime, args);
  timings.get(`floor ${runtime} run`)!.push(performance.now() - t0);
  await run(runtime, ['--root', floorState, 'delete', '--force', id], { timeoutMs: 30_000 });
}
variants.push({ name: 'floor runc run', group: 'floor', runtime: 'runc', once: () => floorRun('runc') });
if (!skip.has('gvisor')) variants.push({ name: 'floor runsc run', group: 'floor', runtime: 'runsc', once: () => floorRun('runsc') });

// (ii) the runtime layer through conmon
async function layerBackend(kind: 'runc' | 'gvisor'): Promise<Backend> {
  const o = { runDir: join(work, `layer-${kind}`), logger: silentLogger };
  const b = kind === 'runc' ? new RuncBackend(o) : new GvisorBackend(o);
  const p = await b.probe();
  if (!p.available) throw new Error(`${kind}: ${p.reason}`);
  return b;
}
const layerSteps = new Map<string, number[]>();
async function layerRun(b: Backend, label: string): Promise<void> {
  const id = `layer-${suffix}-${++seq}`;
  const steps: [string, number][] = [];
  const t0 = performance.now();
  let t = t0;
  const mark = (s: string): void => { const n = performance.now(); steps.push([s, n - t]); t = n; };
  const spec = await buildSpec({ rootfs, command: ['true'], cgroupParent, cgroupName: id });
  mark('buildSpec');
  // gVisor runs a pod as one sandbox (the pause) with app containers inside it, as the engine
  // does: the sandbox's start and stop are part of what a one-container pod costs
  // (runsc resolves ids by prefix: the pause id must not start with the container id)
  const pause = b.podSandbox.kind === 'sandbox-hosted' ? `pause-${id}` : undefined;
  const pod = pause ? { podId: id, role: 'container' as const, sandboxContainerId: pause } : { podId: id, role: 'sandbox' as const };
  let st;
  try {
    if (pause) {
      const pspec = await buildPauseSpec({ rootfs, cgroupParent, cgroupName: pause });
      await b.createContainer({ id: pause, spec: pspec, pod: { podId: id, role: 'sandbox' }, logPath: join(work, `${pause}.log`) });
      await b.start(pause);
      mark('pod sandbox (pause) create + start');
    }
    await b.createContainer({ id, spec, pod, logPath: join(work, `${id}.log`) });
    mark('create (conmon + runtime create)');
    await b.start(id);
    mark('start');
    st = await b.wait(id);
    mark('wait (exit file)');
    await b.delete(id);
    mark('delete');
    if (pause) {
      await b.delete(pause);
      mark('pod sandbox delete');
    }
  } catch (err) {
    // leave no sandbox or conmon behind when a step fails (delete is idempotent)
    await b.delete(id).catch(() => {});
    if (pause) await b.delete(pause).catch(() => {});
    throw err;
  }
  timings.get(label)!.push(performance.now() - t0);
  if (st.exitCode !== 0) throw new Error(`${label}: exit ${st.exitCode}`);
  for (const [s, ms] of steps) layerSteps.set(`${label}: ${s}`, [...(layerSteps.get(`${label}: ${s}`) ?? []), ms]);
}
const layerRunc = await layerBackend('runc');
variants.push({ name: 'layer runc', group: 'layer', runtime: 'runc', once: () => layerRun(layerRunc, 'layer runc') });
if (!skip.has('gvisor')) {
  const layerGvisor = await layerBackend('gvisor');
  variants.push({ name: 'layer gvisor', group: 'layer', runtime: 'runsc', once: () => layerRun(layerGvisor, 'layer gvisor') });
}

// (iii) the real CLI against a running daemon on a temp root
let daemonPid: number | undefined;
let poolHits: (() => number) | undefined;
const bhRoot = join(work, 'bh-root');
const bhRun = join(work, 'bh-run');
const bh = (args: string[]): string[] => ['--root', bhRoot, '--run-dir', bhRun, ...args];
const daemonLog = join(work, 'daemon.log');
const cliRuns: { label: string; from: number; to: number }[] = [];
/** Starts a daemon on its own root and run dir under the work dir; resolves once its socket answers. */
async function startDaemon(root: string, runDir: string, log: string, extraToml = ''): Promise<number | undefined> {
  await mkdir(root, { recursive: true });
  // the built-in policy trusts nothing and moves every pod to gvisor: trust the bench's pods, so
  // `--isolation runc` really runs runc
  const config = `${root}.toml`;
  await writeFile(config, '[policy]\ndefault_trust = "trusted"\n[policy.levels.trusted]\nmin_isolation = "process"\n' + extraToml);
  const logFh = await open(log, 'w');
  const daemon = spawn(BULKHEAD, ['--root', root, '--run-dir', runDir, '--config', config, 'daemon', '--log-level', 'debug'], { stdio: ['ignore', 'ignore', logFh.fd], detached: true });
  await logFh.close();
  const pid = daemon.pid;
  daemon.unref();
  cleanups.push(async () => {
    if (pid) try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
    await new Promise((r) => setTimeout(r, 1500));
  });
  for (let i = 0; i < 120; i++) {
    // ask the socket itself: a CLI command here would start a daemon of its own (default config)
    // when it came before this one's socket, and the bench would measure that daemon
    if (await socketAnswers(join(runDir, 'cri.sock'), 1000)) return pid;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`the bulkhead daemon (${root}) did not come up; see ${log}`);
}

if (!skip.has('bulkhead')) {
  daemonPid = await startDaemon(bhRoot, bhRun, daemonLog);
  const archive = join(work, 'demo.tar');
  await writeBusyboxArchive(archive, IMAGE);
  await must(BULKHEAD, bh(['load', '-i', archive]));
  // runc-shim: runc under containerd-shim-runc-v2 (src/runtime/shimv2/) next to runc under conmon
  for (const [handler, runtime] of [['runc', 'runc'], ['runc-shim', 'runc'], ['gvisor', 'runsc']] as const) {
    if (runtime === 'runsc' && skip.has('gvisor')) continue;
    if (handler === 'runc-shim' && skip.has('runc-shim')) continue;
    const label = `bulkhead run ${handler}`;
    variants.push({
      name: label, group: 'bulkhead', runtime, once: async () => {
        const t0 = performance.now();
        const from = Date.now();
        await must(BULKHEAD, bh(['run', '--rm', '--network', 'none', '--isolation', handler, IMAGE, 'true']));
        timings.get(label)!.push(performance.now() - t0);
        cliRuns.push({ label, from, to: Date.now() });
      },
    });
  }
  // gVisor with a warm pool (a second daemon: a pool serves every pod of its handler and level)
  if (!skip.has('gvisor') && !skip.has('pool')) {
    const root = join(work, 'bh-pool-root');
    const runDir = join(work, 'bh-pool-run');
    await startDaemon(root, runDir, join(work, 'daemon-pool.log'), '[pools]\n[pools.gvisor]\ntrusted = { size = 1, network = "none" }\n');
    const pooled = (args: string[]): string[] => ['--root', root, '--run-dir', runDir, ...args];
    const poolArchive = join(work, 'demo-pool.tar');
    await writeBusyboxArchive(poolArchive, IMAGE);
    await must(BULKHEAD, pooled(['load', '-i', poolArchive]));
    const client = await connect(join(runDir, 'cri.sock'));
    cleanups.unshift(async () => client.close());
    const label = 'bulkhead run gvisor pool';
    let hits = 0;
    variants.push({
      name: label, group: 'bulkhead', runtime: 'runsc', once: async () => {
        // untimed: the pool refills after each adoption (a sandbox start in the background)
        const pool = async () => (await client.info()).warmPools?.find((p) => p.handler === 'gvisor');
        for (let i = 0; i < 600 && ((await pool())?.ready ?? 0) < 1; i++) await new Promise((r) => setTimeout(r, 50));
        const before = (await pool())?.hits ?? 0;
        const t0 = performance.now();
        await must(BULKHEAD, pooled(['run', '--rm', '--network', 'none', '--isolation', 'gvisor', IMAGE, 'true']));
        timings.get(label)!.push(performance.now() - t0);
        if (((await pool())?.hits ?? 0) > before) hits++;
      },
    });
    poolHits = () => hits;
  }
}

// (iv) podman on the same image, with its own storage under the work dir; `--rootfs DIR` is not
// what users type and on this host is slower than an image run (414 vs 181 ms), so it would flatter
// bulkhead
if (!skip.has('podman')) {
  const pm = ['--root', join(work, 'pm-root'), '--runroot', join(work, 'pm-runroot'), '--cgroup-manager', 'cgroupfs', '--events-backend', 'none'];
  const archive = join(work, 'demo-podman.tar');
  await writeBusyboxArchive(archive, IMAGE);
  await must('podman', [...pm, 'load', '-i', archive]);
  const wrapper = join(work, 'runsc-podman');
  await writeFile(wrapper, `#!/bin/sh\nexec ${resolveBinary('runsc')} --platform=ptrace --network=host "$@"\n`);
  await chmod(wrapper, 0o755);
  for (const [runtime, arg] of [['runc', 'runc'], ['runsc', wrapper]] as const) {
    if (runtime === 'runsc' && skip.has('gvisor')) continue;
    const label = `podman run ${runtime}`;
    variants.push({
      name: label, group: 'podman', runtime, once: async () => {
        const t0 = performance.now();
        await must('podman', [...pm, 'run', '--rm', '--network', 'none', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024',
          '--runtime', arg, IMAGE, 'true']);
        timings.get(label)!.push(performance.now() - t0);
      },
    });
  }
}

const timings = new Map<string, number[]>(variants.map((v) => [v.name, []]));
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };

try {
  // one warm-up round (page cache, first-run probes), not counted
  for (const v of variants) { await v.once(); timings.get(v.name)!.length = 0; }
  layerSteps.clear();
  for (let i = 0; i < reps; i++) for (const v of variants) await v.once();

  const floorOf = (rt: 'runc' | 'runsc'): number | undefined => { const t = timings.get(`floor ${rt} run`); return t?.length ? median(t) : undefined; };
  console.log(`\nrun \`true\` in a fresh container: ${reps} reps each, interleaved; median / min in ms`);
  console.log(`${'variant'.padEnd(24)}${'median'.padStart(9)}${'min'.padStart(9)}${'÷ floor'.padStart(10)}`);
  for (const v of variants) {
    const t = timings.get(v.name)!;
    const f = floorOf(v.runtime);
    console.log(`${v.name.padEnd(24)}${median(t).toFixed(0).padStart(9)}${Math.min(...t).toFixed(0).padStart(9)}${(f ? (median(t) / f).toFixed(2) + 'x' : '-').padStart(10)}`);
  }
  console.log('\nratios (goal, issue #13: bulkhead/podman <= 1.0x for runc and gVisor)');
  for (const [rt, handler] of [['runc', 'runc'], ['runsc', 'gvisor']] as const) {
    const b = timings.get(`bulkhead run ${handler}`);
    const p = timings.get(`podman run ${rt}`);
    const l = timings.get(`layer ${handler}`);
    const f = floorOf(rt);
    const r = (a: number[] | undefined, d: number | undefined): string => (a?.length && d ? `${(median(a) / d).toFixed(2)}x` : '-');
    console.log(`${rt.padEnd(6)} bulkhead/podman ${r(b, p?.length ? median(p) : undefined)}   bulkhead/floor ${r(b, f)}   layer/floor ${r(l, f)}   layer/podman ${r(l, p?.length ? median(p) : undefined)}`);
  }
  const pooledRuns = timings.get('bulkhead run gvisor pool');
  const podmanRunsc = timings.get('podman run runsc');
  if (pooledRuns?.length && podmanRunsc?.length) console.log(`runsc  bulkhead (warm pool)/podman ${(median(pooledRuns) / median(podmanRunsc)).toFixed(2)}x   (${poolHits?.() ?? 0} of the ${pooledRuns.length + 1} pooled runs adopted a pool member)`);
  const shim = timings.get('bulkhead run runc-shim');
  const conmonRunc = timings.get('bulkhead run runc');
  if (shim?.length && conmonRunc?.length) console.log(`runc under the containerd shim / under conmon: ${(median(shim) / median(conmonRunc)).toFixed(2)}x`);
  console.log('\nruntime layer steps (median ms)');
  for (const [k, t] of layerSteps) console.log(`  ${k.padEnd(52)}${median(t).toFixed(1).padStart(8)}`);

  if (values.profile && daemonPid) {
    // daemon-side RPC time per `bulkhead run`, from the daemon's debug log, assigned by wall clock
    const rpcs = (await readFile(daemonLog, 'utf8')).split('\n').map((l) => {
      const m = /^time=(\S+) .*msg=rpc .*method=\/runtime\.v1\.\w+\/(\w+) durationMs=([\d.]+)/.exec(l);
      return m ? { at: Date.parse(m[1]!), method: m[2]!, ms: Number(m[3]) } : undefined;
    }).filter((x) => x !== undefined);
    for (const label of new Set(cliRuns.map((r) => r.label))) {
      const per = new Map<string, number[]>();
      const inRpc: number[] = [];
      for (const r of cliRuns.filter((c) => c.label === label)) {
        const mine = rpcs.filter((x) => x.at >= r.from && x.at <= r.to);
        const byMethod = new Map<string, number>();
        for (const x of mine) byMethod.set(x.method, (byMethod.get(x.method) ?? 0) + x.ms);
        for (const [k, v] of byMethod) per.set(k, [...(per.get(k) ?? []), v]);
        // the event stream the CLI holds open while the container runs overlaps the other calls
        inRpc.push(mine.filter((x) => x.method !== 'GetContainerEvents').reduce((a, x) => a + x.ms, 0));
      }
      console.log(`\n${label}: daemon-side RPC time per run (median ms; the rest is the CLI process and the wire)`);
      for (const [k, v] of per) console.log(`  ${k.padEnd(28)}${median(v).toFixed(1).padStart(8)}`);
      const total = median(timings.get(label)!);
      console.log(`  ${'all unary RPCs'.padEnd(28)}${median(inRpc).toFixed(1).padStart(8)}   of ${total.toFixed(0)} ms total`);
    }
    // inside RunPodSandbox, CreateContainer and RemovePodSandbox: the engine logs its steps
    for (const [what, msg] of [['RunPodSandbox', 'pod sandbox ready'], ['CreateContainer', 'container created'], ['RemovePodSandbox', 'pod sandbox removed']] as const) {
      const steps = new Map<string, number[]>();
      for (const l of (await readFile(daemonLog, 'utf8')).split('\n')) {
        if (!l.includes(`msg="${msg}"`)) continue;
        const handler = / handler=(\w+)/.exec(l)?.[1] ?? 'all handlers';
        for (const m of l.matchAll(/ (\w+)Ms=([\d.]+)/g)) steps.set(`${handler}: ${m[1]!}`, [...(steps.get(`${handler}: ${m[1]!}`) ?? []), Number(m[2])]);
      }
      if (steps.size === 0) continue;
      console.log(`\n${what} steps in the engine (median ms)`);
      for (const [k, v] of [...steps].sort(([a], [b]) => a.localeCompare(b))) console.log(`  ${k.padEnd(36)}${median(v).toFixed(1).padStart(8)}`);
    }
    console.log('\nbulkhead CLI start-up (median of 5, ms)');
    const probe = async (args: string[]): Promise<number> => {
      const xs: number[] = [];
      for (let i = 0; i < 5; i++) { const t0 = performance.now(); await run(args[0]!, args.slice(1), { timeoutMs: 60_000 }); xs.push(performance.now() - t0); }
      return median(xs);
    };
    const node = process.execPath;
    console.log(`  node -e 0                          ${(await probe([node, '-e', '0'])).toFixed(0).padStart(6)}`);
    console.log(`  bulkhead --help (modules loaded)   ${(await probe([BULKHEAD, '--help'])).toFixed(0).padStart(6)}`);
    console.log(`  bulkhead images (+ gRPC round trip)${(await probe([BULKHEAD, ...bh(['images'])])).toFixed(0).padStart(6)}`);
  }
} finally {
  for (const c of cleanups) await c().catch(() => {});
  for (const c of ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids', 'net_cls', 'perf_event', 'hugetlb', 'systemd', 'unified', '']) {
    await rmdir(join('/sys/fs/cgroup', c, cgroupParent)).catch(() => {});
  }
  await rm(work, { recursive: true, force: true }).catch(() => {});
}
