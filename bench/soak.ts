// Soak: many short runs per handler against one private daemon, counting what the daemon and the
// node hold before, half-way and after, so that anything that grows with the number of runs shows.
// Side by side, the same cycles with podman (its own storage under the work dir) and its counts
// where they apply, and the time ratio.
//
//   node bench/soak.ts [--runc 300] [--gvisor 100] [--microvm 10] [--pods N] [--network bridge|none]
//                      [--skip podman,gvisor,microvm] [--settle-ms 2000] [--keep]
//
// A cycle is `bulkhead run --rm IMAGE true`; a pod cycle (--pods per handler, default a tenth of
// the runs) is `run -d --name N IMAGE sleep 300`, `exec N true`, `logs N`, `stop -t 0 N`, `rm N`.
// Counted: the daemon's fds, threads and RSS; mounts (/proc/self/mountinfo lines, all and under the
// work dir); netns (/run/netns, all and this daemon's pods'); cgroups (dirs under each hierarchy's
// /bulkhead, all daemons and this one's pods'); pod log dirs; files under the run dir and root;
// conmon, runsc and qemu processes of the work dir; disk used by the root; the daemon's log. The
// daemon runs on its own --root/--run-dir (as bench/run.ts does). Prints figures, asserts nothing.
import { spawn } from 'node:child_process';
import { chmod, lstat, mkdir, mkdtemp, open, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { run } from '../src/util/exec.ts';
import { socketAnswers } from '../src/util/socket.ts';
import { resolveBinary } from '../src/runtime/conmon/driver.ts';
import { writeBusyboxArchive } from '../src/cli/demo-image.ts';

const { values } = parseArgs({
  options: {
    runc: { type: 'string', default: '300' },
    gvisor: { type: 'string', default: '100' },
    microvm: { type: 'string', default: '10' },
    pods: { type: 'string' },
    network: { type: 'string', default: 'bridge' },
    skip: { type: 'string', default: '' },
    'settle-ms': { type: 'string', default: '2000' },
    keep: { type: 'boolean', default: false },
  },
});
const count = (s: string | undefined, d: number): number => Math.max(0, Math.min(5000, Math.floor(Number(s ?? d)) || 0));
const skip = new Set(values.skip.split(',').map((s) => s.trim()).filter(Boolean));
if (!['bridge', 'none'].includes(values.network)) throw new Error('--network must be bridge or none');
const settleMs = count(values['settle-ms'], 2000);
const plan: { handler: 'runc' | 'gvisor' | 'microvm'; runs: number; pods: number; podman?: 'runc' | 'runsc' }[] = [];
for (const [handler, n, pm] of [['runc', values.runc, 'runc'], ['gvisor', values.gvisor, 'runsc'], ['microvm', values.microvm, undefined]] as const) {
  const runs = count(n, 0);
  if (runs === 0 || skip.has(handler)) continue;
  plan.push({ handler, runs, pods: values.pods !== undefined ? count(values.pods, 0) : Math.max(1, Math.ceil(runs / 10)), ...(pm && !skip.has('podman') ? { podman: pm } : {}) });
}

const IMAGE = 'bulkhead.local/soak:latest';
const BULKHEAD = new URL('../bin/bulkhead', import.meta.url).pathname;
const work = await mkdtemp(join(tmpdir(), 'bulkhead-soak-'));
const root = join(work, 'root');
const runDir = join(work, 'run');
const daemonLog = join(work, 'daemon.log');
const bh = (args: string[]): string[] => ['--root', root, '--run-dir', runDir, '--config', join(work, 'config.toml'), ...args];
const pmRoot = join(work, 'pm-root');
const pmRunroot = join(work, 'pm-runroot');
const pm = ['--root', pmRoot, '--runroot', pmRunroot, '--cgroup-manager', 'cgroupfs', '--events-backend', 'none'];
// raising rlimits fails on this host (no CAP_SYS_RESOURCE): podman's defaults would, so ask for what is already allowed
const pmLimits = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// What is counted

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(d, e.name)); else n++;
    }
  };
  await walk(dir);
  return n;
}

async function countDirs(dir: string, match: (path: string) => boolean): Promise<number> {
  let n = 0;
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > 6) return;
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (!e.isDirectory()) continue;
      const p = join(d, e.name);
      if (match(p)) n++;
      await walk(p, depth + 1);
    }
  };
  await walk(dir, 0);
  return n;
}

async function duBytes(dir: string): Promise<number> {
  const r = await run('du', ['-sx', '--block-size=1', dir], { timeoutMs: 120_000 });
  return Number(r.stdout.split(/\s/)[0]) || 0;
}

async function procsOf(dir: string): Promise<Record<'conmon' | 'runsc' | 'qemu', number>> {
  const out = { conmon: 0, runsc: 0, qemu: 0 };
  for (const e of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(e)) continue;
    const cmd = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    if (!cmd.includes(dir)) continue;
    const exe = (cmd.split('\0')[0] ?? '').split('/').pop() ?? '';
    if (exe === 'conmon') out.conmon++;
    else if (exe.startsWith('runsc') || cmd.includes('runsc')) out.runsc++;
    else if (exe.startsWith('qemu')) out.qemu++;
  }
  return out;
}

function procStatus(pid: number, key: string): Promise<number> {
  return readFile(`/proc/${pid}/status`, 'utf8').then((t) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(t)?.[1] ?? NaN), () => NaN);
}

/** This daemon's pod ids, from its log (`msg="pod sandbox ready" part=engine pod=ID ...`). */
async function ourPods(): Promise<string[]> {
  const text = await readFile(daemonLog, 'utf8').catch(() => '');
  return [...new Set([...text.matchAll(/msg="pod sandbox ready" [^\n]*?\bpod=([0-9a-f]{64})/g)].map((m) => m[1]!))];
}

const hierarchies = (await readdir('/sys/fs/cgroup').catch(() => [] as string[])).map((h) => join('/sys/fs/cgroup', h));
let daemonPid = 0;

type Snapshot = Record<string, number>;
async function snapshot(): Promise<Snapshot> {
  await sleep(settleMs);
  const pods = await ourPods();
  const id16 = new Set(pods.map((p) => `pod-${p.slice(0, 16)}`));
  const id12 = pods.map((p) => `bulkhead-${p.slice(0, 12)}`);
  const mountinfo = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter(Boolean);
  const netns = await readdir('/run/netns').catch(() => [] as string[]);
  const ipNetns = (await run('ip', ['netns', 'list'], { timeoutMs: 10_000 })).stdout.split('\n').filter(Boolean);
  let cgAll = 0;
  let cgOurs = 0;
  let cgPodman = 0;
  for (const h of hierarchies) {
    cgAll += await countDirs(join(h, 'bulkhead'), () => true);
    cgOurs += await countDirs(join(h, 'bulkhead'), (p) => p.split('/').some((c) => id16.has(c)));
    cgPodman += await countDirs(join(h, 'libpod_parent'), () => true);
  }
  const procs = await procsOf(work);
  const logStat = await lstat(daemonLog).catch(() => undefined);
  return {
    'daemon fds': (await readdir(`/proc/${daemonPid}/fd`).catch(() => [])).length,
    'daemon threads': await procStatus(daemonPid, 'Threads'),
    'daemon RSS (MiB)': Math.round((await procStatus(daemonPid, 'VmRSS')) / 1024),
    'mounts (all)': mountinfo.length,
    'mounts (bulkhead root/run)': mountinfo.filter((l) => l.includes(root) || l.includes(runDir)).length,
    'mounts (podman storage)': mountinfo.filter((l) => l.includes(pmRoot) || l.includes(pmRunroot)).length,
    'netns /run/netns (all)': netns.length,
    'ip netns (all)': ipNetns.length,
    'netns (this daemon\'s pods)': netns.filter((n) => id12.some((p) => n.startsWith(p))).length,
    'pods seen in the daemon log': pods.length,
    'netns (podman netns-*)': netns.filter((n) => n.startsWith('netns-')).length,
    'cgroups under /bulkhead (all daemons)': cgAll,
    'cgroups (this daemon\'s pods)': cgOurs,
    'cgroups under /libpod_parent': cgPodman,
    'pod log dirs': (await readdir(join(root, 'logs')).catch(() => [])).length,
    'files in run dir': await countFiles(runDir),
    'files in root': await countFiles(root),
    'files in podman storage': (await countFiles(pmRoot)) + (await countFiles(pmRunroot)),
    'conmon procs': procs.conmon,
    'runsc procs': procs.runsc,
    'qemu procs': procs.qemu,
    'disk used by root (KiB)': Math.round((await duBytes(root)) / 1024),
    'disk used by podman root (KiB)': Math.round((await duBytes(pmRoot)) / 1024),
    'daemon.log (KiB)': Math.round((logStat?.size ?? 0) / 1024),
  };
}

// ---------------------------------------------------------------------------------------------
// Set-up: a private daemon, the image, podman's private storage

async function must(cmd: string, args: string[], timeoutMs = 300_000): Promise<string> {
  const r = await run(cmd, args, { timeoutMs });
  if (r.code !== 0) throw new Error(`${cmd} ${args.slice(0, 8).join(' ')} ... exited ${r.code}: ${r.stderr.trim().slice(-400)}`);
  return r.stdout;
}

const cleanups: (() => Promise<unknown>)[] = [];
// SIGINT/SIGTERM end the cycles early: what was measured so far is still printed, and cleaned up
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { if (stopping) process.exit(130); stopping = true; console.error('soak: stopping after the current step (again to quit at once)'); });
try {
  await mkdir(root, { recursive: true });
  // trust the soak's pods, so `--isolation runc` really runs runc
  await writeFile(join(work, 'config.toml'), '[policy]\ndefault_trust = "trusted"\n[policy.levels.trusted]\nmin_isolation = "process"\n');
  const fh = await open(daemonLog, 'w');
  const daemon = spawn(BULKHEAD, bh(['daemon', '--log-level', 'debug']), { stdio: ['ignore', 'ignore', fh.fd], detached: true });
  await fh.close();
  daemon.unref();
  cleanups.push(async () => {
    const pid = daemonPid;
    if (!pid) return;
    try { process.kill(pid, 'SIGTERM'); } catch { return; }
    for (let i = 0; i < 100; i++) { try { process.kill(pid, 0); } catch { return; } await sleep(100); }
  });
  let up = false;
  for (let i = 0; i < 240 && !up; i++) { up = await socketAnswers(join(runDir, 'cri.sock'), 1000); if (!up) await sleep(500); }
  if (!up) throw new Error(`the bulkhead daemon did not come up; log ${daemonLog}`);
  // the node process under bin/bulkhead's exec: the pid is the daemon's own
  daemonPid = daemon.pid ?? 0;
  const archive = join(work, 'image.tar');
  await writeBusyboxArchive(archive, IMAGE);
  await must(BULKHEAD, bh(['load', '-i', archive]));
  let podmanNote = '';
  if (plan.some((p) => p.podman)) {
    await must('podman', [...pm, 'load', '-i', archive]);
    // podman's own default network, as its users run it; fall back to none when it has none here
    // (crun, podman's default runtime here, cannot run on this host's hybrid cgroups: runc, as bulkhead)
    const probe = await run('podman', [...pm, 'run', '--rm', ...pmLimits, '--runtime', 'runc', ...(values.network === 'none' ? ['--network', 'none'] : []), IMAGE, 'true'], { timeoutMs: 120_000 });
    if (probe.code !== 0) podmanNote = `podman's default network failed here (${probe.stderr.trim().split('\n').pop()}); podman runs use --network none`;
  }
  const podmanNet = podmanNote || values.network === 'none' ? ['--network', 'none'] : [];
  const wrapper = join(work, 'runsc-podman');
  await writeFile(wrapper, `#!/bin/sh\nexec ${resolveBinary('runsc')} --platform=ptrace --network=host "$@"\n`);
  await chmod(wrapper, 0o755);
  cleanups.push(async () => {
    await run('podman', [...pm, 'rm', '-a', '-f'], { timeoutMs: 120_000 });
    await run('podman', [...pm, 'rmi', '-a', '-f'], { timeoutMs: 120_000 });
  });

  // -------------------------------------------------------------------------------------------
  // The cycles

  const phases: { name: string; snap: Snapshot }[] = [];
  const mark = async (name: string): Promise<void> => {
    const snap = await snapshot();
    phases.push({ name, snap });
    // progress on stderr, so that a soak cut short still leaves its figures
    console.error(`soak ${new Date().toISOString()} ${name}: ${Object.entries(snap).map(([k, v]) => `${k}=${v}`).join(', ')}`);
  };
  await mark('start');
  const times = new Map<string, number[]>();
  const failures = new Map<string, string[]>();
  const timed = async (label: string, cmd: string, args: string[], timeoutMs = 300_000): Promise<boolean> => {
    const t0 = performance.now();
    const r = await run(cmd, args, { timeoutMs });
    const ms = performance.now() - t0;
    if (r.code !== 0) {
      const f = failures.get(label) ?? [];
      f.push(`exit ${r.code}: ${r.stderr.trim().split('\n').slice(-2).join(' | ').slice(0, 300)}`);
      failures.set(label, f);
      return false;
    }
    times.set(label, [...(times.get(label) ?? []), ms]);
    return true;
  };
  const net = values.network === 'none' ? ['--network', 'none'] : [];

  for (const p of plan) {
    const pmRuntime = p.podman === 'runsc' ? ['--runtime', wrapper] : p.podman === 'runc' ? ['--runtime', 'runc'] : [];
    if (stopping) break;
    for (let i = 0; i < p.runs && !stopping; i++) {
      // interleaved, so drift on a shared host hits both alike
      await timed(`bulkhead run --rm (${p.handler})`, BULKHEAD, bh(['run', '--rm', ...net, '--isolation', p.handler, IMAGE, 'true']));
      if (p.podman) await timed(`podman run --rm (${p.podman})`, 'podman', [...pm, 'run', '--rm', ...pmLimits, ...podmanNet, ...pmRuntime, IMAGE, 'true']);
      if (i + 1 === Math.floor(p.runs / 2)) await mark(`${p.handler} ${i + 1} runs`);
      if ((failures.get(`bulkhead run --rm (${p.handler})`)?.length ?? 0) >= 10 && (times.get(`bulkhead run --rm (${p.handler})`)?.length ?? 0) === 0) break;
    }
    await mark(`${p.handler} ${times.get(`bulkhead run --rm (${p.handler})`)?.length ?? 0} runs`);
    for (let i = 0; i < p.pods && !stopping; i++) {
      const name = `soak-${p.handler}-${i}`;
      const t0 = performance.now();
      let ok = await timed('-', BULKHEAD, bh(['run', '-d', '--name', name, ...net, '--isolation', p.handler, IMAGE, 'sleep', '300']));
      ok = ok && await timed('-', BULKHEAD, bh(['exec', name, 'true']));
      ok = ok && await timed('-', BULKHEAD, bh(['logs', name]));
      ok = ok && await timed('-', BULKHEAD, bh(['stop', '-t', '0', name]));
      ok = ok && await timed('-', BULKHEAD, bh(['rm', name]));
      if (ok) times.set(`bulkhead pod cycle (${p.handler})`, [...(times.get(`bulkhead pod cycle (${p.handler})`) ?? []), performance.now() - t0]);
      else { failures.set(`bulkhead pod cycle (${p.handler})`, [...(failures.get(`bulkhead pod cycle (${p.handler})`) ?? []), ...(failures.get('-') ?? []).slice(-1)]); await run(BULKHEAD, bh(['rm', '-f', name]), { timeoutMs: 120_000 }); }
      if (p.podman) {
        const t1 = performance.now();
        let pok = await timed('-', 'podman', [...pm, 'run', '-d', '--name', name, ...pmLimits, ...podmanNet, ...pmRuntime, IMAGE, 'sleep', '300']);
        pok = pok && await timed('-', 'podman', [...pm, 'exec', name, 'true']);
        pok = pok && await timed('-', 'podman', [...pm, 'logs', name]);
        pok = pok && await timed('-', 'podman', [...pm, 'stop', '-t', '0', name]);
        pok = pok && await timed('-', 'podman', [...pm, 'rm', name]);
        if (pok) times.set(`podman pod cycle (${p.podman})`, [...(times.get(`podman pod cycle (${p.podman})`) ?? []), performance.now() - t1]);
        else { failures.set(`podman pod cycle (${p.podman})`, [...(failures.get(`podman pod cycle (${p.podman})`) ?? []), ...(failures.get('-') ?? []).slice(-1)]); await run('podman', [...pm, 'rm', '-f', name], { timeoutMs: 120_000 }); }
      }
    }
    const podsDone = times.get(`bulkhead pod cycle (${p.handler})`)?.length ?? 0;
    if (podsDone > 0) await mark(`${p.handler} +${podsDone} pods`);
  }

  // -------------------------------------------------------------------------------------------
  // Figures

  const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };
  const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
  console.log(`\nsoak: ${plan.map((p) => `${p.handler} ${p.runs} runs + ${p.pods} pod cycles`).join(', ')}; network ${values.network}; work dir ${work}`);
  if (podmanNote) console.log(podmanNote);
  console.log(`\n${'variant'.padEnd(30)}${'ok'.padStart(6)}${'failed'.padStart(8)}${'median ms'.padStart(11)}${'total s'.padStart(9)}`);
  for (const [label, t] of times) {
    if (label === '-') continue;
    console.log(`${label.padEnd(30)}${String(t.length).padStart(6)}${String(failures.get(label)?.length ?? 0).padStart(8)}${median(t).toFixed(0).padStart(11)}${(sum(t) / 1000).toFixed(1).padStart(9)}`);
  }
  for (const [label, f] of failures) if (label !== '-' && !times.has(label)) console.log(`${label.padEnd(30)}${'0'.padStart(6)}${String(f.length).padStart(8)}`);
  console.log('\ntime ratio bulkhead/podman (median)');
  for (const p of plan) {
    if (!p.podman) continue;
    const r = (a: string, b: string): string => { const x = times.get(a); const y = times.get(b); return x?.length && y?.length ? `${(median(x) / median(y)).toFixed(2)}x` : '-'; };
    console.log(`  ${p.handler.padEnd(8)} run --rm ${r(`bulkhead run --rm (${p.handler})`, `podman run --rm (${p.podman})`)}   pod cycle ${r(`bulkhead pod cycle (${p.handler})`, `podman pod cycle (${p.podman})`)}`);
  }
  const keys = Object.keys(phases[0]!.snap);
  const width = Math.max(...keys.map((k) => k.length)) + 2;
  const cols = phases.map((ph) => Math.max(ph.name.length, 8) + 2);
  console.log('\ncounts (after a settle of ' + settleMs + ' ms at each point)');
  console.log('metric'.padEnd(width) + phases.map((ph, i) => ph.name.padStart(cols[i]!)).join('') + '   end-start');
  for (const k of keys) {
    const vals = phases.map((ph) => ph.snap[k] ?? NaN);
    const d = vals[vals.length - 1]! - vals[0]!;
    console.log(k.padEnd(width) + vals.map((v, i) => String(Number.isNaN(v) ? '-' : v).padStart(cols[i]!)).join('') + `   ${d > 0 ? '+' : ''}${Number.isNaN(d) ? '-' : d}`);
  }
  for (const [label, f] of failures) {
    if (label === '-' || f.length === 0) continue;
    console.log(`\n${label}: ${f.length} failed; first: ${f[0]}`);
  }
} finally {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  // whatever is still mounted under the work dir (podman's overlay, a leaked rootfs) goes
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(work)).sort((a, b) => b.length - a.length);
  for (const m of mounts) await run('umount', ['-l', m], { timeoutMs: 10_000 }).catch(() => {});
  for (const e of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(e)) continue;
    const cmd = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    const cwd = await readlink(`/proc/${e}/cwd`).catch(() => '');
    if (cmd.includes(work) || cwd.startsWith(work)) { try { process.kill(Number(e), 'SIGKILL'); } catch { /* gone */ } }
  }
  if (values.keep) console.log(`kept ${work} (daemon stopped)`);
  else await rm(work, { recursive: true, force: true, maxRetries: 3 }).catch(() => {});
}
