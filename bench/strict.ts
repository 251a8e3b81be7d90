// The strict handler against runc (the default seccomp profile) and gVisor: a private daemon with
// runc, strict, strict-learn and gvisor (ptrace platform), images from a local test registry.
//  1. allowed system calls: `sh -c 'echo hi'` and busybox `httpd -f` serving a page (probed with
//     wget from a second container of the training pod), learned with the real `bulkhead profile
//     learn`, beside the default profile's count (goals: ≤ 40 and ≤ 60);
//  2. start latency: RunPodSandbox → container exited for `sh -c 'echo hi'` (median of --runs);
//  3. a syscall-heavy loop (bench/strict-loop.c, static): getpid, file pwrite+pread, loopback TCP
//     ping-pong, per handler, with ratios to runc.
//
//   node bench/strict.ts [--runs 5] [--getpid 200000] [--file 20000] [--tcp 5000] [--no-gvisor]
//
// Printed side by side; never a test. Run on a quiet node.
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../harness/daemon.ts';
import { startRegistry } from '../harness/registry.ts';
import { buildLayer, busyboxLayers, pushImage } from '../harness/images.ts';
import { run } from '../src/util/exec.ts';
import { defaultProfileCount } from '../src/cli/profile.ts';
import type { StrictProfile } from '../src/runtime/strict/profile.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    getpid: { type: 'string', default: '200000' },
    file: { type: 'string', default: '20000' },
    tcp: { type: 'string', default: '5000' },
    'no-gvisor': { type: 'boolean', default: false },
  },
});
const RUNS = Math.max(1, Math.min(50, Number(values.runs) || 5));
const N = { getpid: Number(values.getpid) || 200000, file: Number(values.file) || 20000, tcp: Number(values.tcp) || 5000 };
const BIN = join(import.meta.dirname, '..', 'bin', 'bulkhead');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function cli(d: TestDaemon, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(BIN, ['--root', d.root, '--run-dir', d.runDir, '--socket', d.socket, '--config', d.configPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
    c.stderr.on('data', (b: Buffer) => { stderr += b.toString(); process.stderr.write(`  | ${b.toString().trimEnd().split('\n').join('\n  | ')}\n`); });
    const t = setTimeout(() => c.kill('SIGKILL'), 300_000);
    c.on('error', reject);
    c.on('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}

async function learn(d: TestDaemon, image: string, extra: string[], cmd: string[]): Promise<StrictProfile> {
  const r = await cli(d, ['profile', 'learn', '--json', ...extra, image, ...(cmd.length ? ['--', ...cmd] : [])]);
  if (r.code !== 0) throw new Error(`profile learn ${image} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as StrictProfile;
}

/** One container to its end in a fresh pod; wall ms from RunPodSandbox to EXITED, and its log. */
async function once(d: TestDaemon, handler: string, image: string, cmd: string[]): Promise<{ ms: number; log: string; exitCode: number }> {
  const name = `b${randomUUID().slice(0, 8)}`;
  const cfg = { metadata: { name, namespace: 'bench', uid: randomUUID(), attempt: 0 }, logDirectory: join(d.base, 'logs', name), annotations: { 'io.bulkhead.network': 'none' }, linux: {} };
  const t0 = performance.now();
  const podId = await d.client.runPodSandbox(cfg, handler);
  try {
    const id = await d.client.createContainer(podId, { metadata: { name, attempt: 0 }, image: { image }, command: cmd, logPath: 'c.log', linux: { securityContext: { seccomp: { profileType: 'RuntimeDefault' } } } }, cfg);
    await d.client.startContainer(id);
    let st;
    for (;;) {
      st = (await d.client.containerStatus(id)).status;
      if (st.state === 'CONTAINER_EXITED') break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const ms = performance.now() - t0;
    const log = (await readFile(join(d.base, 'logs', name, 'c.log'), 'utf8')).split('\n').map((l) => l.split(' ').slice(3).join(' ')).join('\n');
    await d.client.removeContainer(id);
    return { ms, log, exitCode: st.exitCode };
  } finally {
    await d.client.stopPodSandbox(podId).catch(() => {});
    await d.client.removePodSandbox(podId).catch(() => {});
  }
}

async function main(): Promise<void> {
  const tmp = await mkdtemp(join(tmpdir(), 'bulkhead-bench-strict-'));
  const loopBin = join(tmp, 'strict-loop');
  const cc = await run('gcc', ['-static', '-O2', '-o', loopBin, join(import.meta.dirname, 'strict-loop.c')], { timeoutMs: 120_000 });
  if (cc.code !== 0) throw new Error(`gcc: ${cc.stderr}`);
  const reg = await startRegistry();
  const extra = buildLayer([
    { type: 'file', path: 'loop', mode: 0o755, content: await readFile(loopBin) },
    { type: 'dir', path: 'www/' }, { type: 'file', path: 'www/index.html', content: '<p>strict bench</p>\n' },
  ]);
  // one image per workload: profiles are keyed by the manifest digest
  const layers = [...busyboxLayers(), extra];
  const echo = (await pushImage(reg, 'bench/echo', 'latest', { layers, config: { Labels: { w: 'echo' } } })).ref;
  const web = (await pushImage(reg, 'bench/web', 'latest', { layers, config: { Labels: { w: 'web' } } })).ref;
  const loop = (await pushImage(reg, 'bench/loop', 'latest', { layers, config: { Labels: { w: 'loop' } } })).ref;
  const handlers: Record<string, { backend: string; runtime_args?: string[] }> = { runc: { backend: 'runc' }, strict: { backend: 'strict' }, 'strict-learn': { backend: 'strict-learn' } };
  if (!values['no-gvisor']) handlers.gvisor = { backend: 'gvisor', runtime_args: ['--platform=ptrace'] };
  const d = await startTestDaemon({ name: 'bulkhead-bench-strict-', handlers, registries: { insecure: [reg.host] } });
  try {
    for (const img of [echo, web, loop]) await d.client.pullImage(img);
    const loopCmd = (k: number): string[] => ['sh', '-c', `/loop getpid ${Math.ceil(N.getpid / k)} && /loop file ${Math.ceil(N.file / k)} && /loop tcp ${Math.ceil(N.tcp / k)}`];

    console.error('learning profiles (bulkhead profile learn) ...');
    const pEcho = await learn(d, echo, ['--duration', '5s'], ['sh', '-c', 'echo hi']);
    const pWeb = await learn(d, web, ['--duration', '6s', '--probe', 'wget -qO- http://127.0.0.1:8080/'], ['httpd', '-f', '-p', '8080', '-h', '/www']);
    const pLoop = await learn(d, loop, ['--duration', '60s'], loopCmd(100));
    const dflt = defaultProfileCount();
    console.log('\n== allowed system calls (x86_64; "default": what Bulkhead\'s default profile allows, clone and personality counted though it checks their arguments)');
    console.log(`${'workload'.padEnd(32)}${'strict'.padStart(8)}${'default'.padStart(9)}${'goal'.padStart(7)}`);
    console.log(`${"sh -c 'echo hi'".padEnd(32)}${String(pEcho.syscalls.length).padStart(8)}${String(dflt).padStart(9)}${'≤ 40'.padStart(7)}`);
    console.log(`${'httpd -f serving a page'.padEnd(32)}${String(pWeb.syscalls.length).padStart(8)}${String(dflt).padStart(9)}${'≤ 60'.padStart(7)}`);
    console.log(`${'strict-loop getpid/file/tcp'.padEnd(32)}${String(pLoop.syscalls.length).padStart(8)}${String(dflt).padStart(9)}${''.padStart(7)}`);
    console.log(`  echo hi: ${pEcho.syscalls.join(' ')}`);
    console.log(`  httpd:   ${pWeb.syscalls.join(' ')}`);

    const hs = Object.keys(handlers).filter((h) => h !== 'strict-learn');
    const start: Record<string, number[]> = {};
    const loops: Record<string, Record<string, number[]>> = {};
    for (const h of hs) {
      start[h] = [];
      loops[h] = { getpid: [], file: [], tcp: [] };
      await once(d, h, echo, ['sh', '-c', 'echo hi']); // warm caches
    }
    console.error(`start latency: ${RUNS} runs per handler ...`);
    for (let i = 0; i < RUNS; i++) {
      for (const h of hs) {
        const r = await once(d, h, echo, ['sh', '-c', 'echo hi']);
        if (r.exitCode !== 0 || !/^hi$/m.test(r.log)) throw new Error(`${h}: echo hi failed (${r.exitCode}): ${r.log}`);
        start[h]!.push(r.ms);
      }
    }
    const loopRuns = Math.max(1, Math.min(3, RUNS));
    console.error(`syscall loops: ${loopRuns} runs per handler ...`);
    for (let i = 0; i < loopRuns; i++) {
      for (const h of hs) {
        const r = await once(d, h, loop, loopCmd(1));
        for (const m of r.log.matchAll(/^(getpid|file|tcp) (\d+) (\d+)$/gm)) loops[h]![m[1]!]!.push(Number(m[3]) / Number(m[2]));
        if (r.exitCode !== 0) throw new Error(`${h}: the loop failed (${r.exitCode}): ${r.log}`);
      }
    }
    const fmt = (v: number, unit: string): string => `${v < 10 ? v.toFixed(2) : v.toFixed(0)} ${unit}`;
    const row = (label: string, get: (h: string) => number, unit: string): void => {
      const base = get('runc');
      console.log(label.padEnd(26) + hs.map((h) => `${fmt(get(h), unit)} (${(get(h) / base).toFixed(2)}x)`.padStart(24)).join(''));
    };
    console.log(`\n== latency and throughput (medians; ratio to runc with its default profile)`);
    console.log(''.padEnd(26) + hs.map((h) => h.padStart(24)).join(''));
    row('start → exited, echo hi', (h) => median(start[h]!), 'ms');
    row(`getpid (${N.getpid})`, (h) => median(loops[h]!.getpid!), 'ns/call');
    row(`file 4K pwrite+pread (${N.file})`, (h) => median(loops[h]!.file!) / 1000, 'µs/op');
    row(`loopback TCP 64B rtt (${N.tcp})`, (h) => median(loops[h]!.tcp!) / 1000, 'µs/rt');
  } finally {
    await d.close();
    await reg.close();
    await rm(tmp, { recursive: true, force: true });
  }
}

await main();
