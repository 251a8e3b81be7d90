// `bulkhead report [--out DIR] [--handlers a,b] [--runs N]`: what each sandbox on this node blocks
// and what it costs. A private daemon (like the demo's) runs, per available handler, the in-sandbox
// probe (report-probe.ts) in a trusted pod on the pod network — kernel, capabilities, seccomp,
// no_new_privs, processes, devices, host paths, runtime sockets, /proc and /sys exposure,
// privileged operations with their errno, reachability of the node's own addresses through the
// egress guard (only this machine's addresses are contacted, on ports already listening here) —
// (with --peers the same under podman runc/runsc, report-peers.ts) and a start-latency bench (`true` N times: p50/p99 of a whole `bulkhead run --rm`). It writes
// report.json and a self-contained report.html (no network needed to open it); one progress line
// per step on stderr; an idle pod's memory as PodSandboxStats reports it; a syscall-heavy loop
// timed inside each sandbox; charts (report-charts.ts) inline in the HTML as SVG and as PNG files
// (DIR/report.png, all side by side, for a README; DIR/charts/NAME.png one each); N idle pods at
// once per handler with the PSS of all they add and the Nth pod's start (report-density.ts).
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command, CommandContext, GlobalOptions } from './command.ts';
import { UsageError } from './command.ts';
import { ensureDaemon } from './daemon.ts';
import { DEMO_IMAGE, DEMO_POLICY, demoRun, type DemoRun } from './demo.ts';
import { writeBusyboxArchive } from './demo-image.ts';
import { writeJson } from './format.ts';
import { runWith, type RunRequest } from './run.ts';
import type { CriClient } from '../cri/client.ts';
import { Writable } from 'node:stream';
import { nodeAddresses } from '../policy/host-ports.ts';
import { parseProbe, PROBE_SCRIPT, SYSCALL_LOOP_BYTES, type ProbeReport } from './report-probe.ts';
import { runPeers, type PeerReport } from './report-peers.ts';
import { measureDensity, type DensityReport } from './report-density.ts';
import { trimIdleMs } from '../vm/tb-trim.ts';

/** An SVG for inline use in HTML: no XML namespace attributes (the HTML parser places <svg> itself). */
export function inlineSvg(svg: string): string {
  return svg.replace(/^<svg\b([^>]*)>/, (_m, attrs: string) => `<svg${attrs.replace(/\s+xmlns(:xlink)?="[^"]*"/g, '')}>`);
}

/** A chart as the HTML embeds it. */
export interface RenderedChart { name: string; title: string; svg: string }

const NAMESPACE = 'bulkhead-demo-trusted';

/** A handler's row: what a peer's row has (handler, probe, start seconds of each run), and more. */
export interface HandlerReport extends PeerReport {
  startP50?: number;
  startP99?: number;
  /**
   * An idle pod (`sleep`) after a few seconds, as CRI PodSandboxStats reports it: the pod's own
   * host usage where the handler has one (a microVM's QEMU cgroup, a gVisor sandbox's cgroup),
   * else its containers'. Working set bytes, not PSS.
   */
  idlePodBytes?: number;
  idlePodError?: string;
  /** N idle pods at once: the PSS of all they add to the node and the Nth pod's start (report-density.ts). */
  density?: DensityReport;
}

/** Idle pods the density bench starts at once: fewer microVMs (each is a QEMU under TCG here). */
export function densityPods(isolation: string, flag: number | undefined): number {
  return flag ?? (isolation === 'vm' ? 2 : 5);
}

export interface Report {
  version: 1;
  generatedAt: string;
  hostKernel: string;
  /** The node's addresses and ports the probe tried from inside each sandbox. */
  targets: string[];
  handlers: HandlerReport[];
  notes: string[];
}

/** The report's private daemon, beside the default one. */
export function reportGlobal(global: GlobalOptions): GlobalOptions {
  const root = join(global.root, 'report');
  const runDir = join(global.runDir, 'report');
  return { ...global, root, runDir, socket: join(runDir, 'cri.sock'), config: join(root, 'config.toml') };
}

/** A TCP port listening on every IPv4 address of this node (/proc/net/tcp), the lowest; undefined when none. */
export async function wildcardTcpPort(procNet = '/proc/net'): Promise<number | undefined> {
  const text = await readFile(join(procNet, 'tcp'), 'utf8').catch(() => '');
  const ports: number[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    const [addr, port] = (f[1] ?? '').split(':');
    if (f[3] === '0A' && addr === '00000000' && port) ports.push(parseInt(port, 16));
  }
  return ports.sort((a, b) => a - b)[0];
}

/** This node's own non-loopback IPv4 addresses with a port that listens on all of them (at most 4). */
export async function probeTargets(): Promise<string[]> {
  const port = await wildcardTcpPort();
  if (port === undefined) return [];
  return [...nodeAddresses()].filter((a) => /^\d+\.\d+\.\d+\.\d+$/.test(a) && !a.startsWith('127.')).slice(0, 4).map((a) => `${a}:${port}`);
}

export function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

class Discard extends Writable {
  override _write(_c: Buffer, _e: string, cb: () => void): void { cb(); }
}

/** Starts an idle pod on `handler`, lets it settle, reads its PodSandboxStats memory, removes it. */
async function idlePodBytes(client: CriClient, ctx: CommandContext, global: GlobalOptions, handler: string, settleMs = 3000): Promise<number> {
  let podId = '';
  const req = { ...request(`report-idle-${handler}`, handler, ['sleep', '3600'], [], 'none'), detach: true, remove: false };
  const sub: CommandContext = { ...ctx, global, stdout: new Discard(), stderr: new Discard(), flags: { quiet: true } };
  try {
    const code = await runWith(client, req, sub, { onPod: async (id) => { podId = id; } });
    if (code !== 0) throw new Error(`the idle pod did not start (exit ${code})`);
    await new Promise((r) => setTimeout(r, settleMs));
    const s = await client.podSandboxStats(podId);
    return s.linux?.memory?.workingSetBytes?.value ?? 0;
  } finally {
    if (podId) await client.removePodSandbox(podId).catch(() => {});
  }
}

function request(name: string, handler: string, args: string[], env: string[], network: string): RunRequest {
  return {
    image: DEMO_IMAGE, args, name, isolation: handler, namespace: NAMESPACE,
    detach: false, remove: true, interactive: false, tty: false, env, volumes: [], publish: [],
    network, readOnly: false, privileged: false, capAdd: [], capDrop: [], labels: ['io.bulkhead.report=true'],
  };
}

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The report as one self-contained HTML page (inline CSS, no scripts, nothing fetched). */
export function renderHtml(r: Report, charts: readonly RenderedChart[] = []): string {
  const hs = r.handlers.filter((h) => h.probe);
  const th = (cells: string[]): string => `<tr><th></th>${cells.map((c) => `<th>${esc(c)}</th>`).join('')}</tr>`;
  const row = (label: string, cells: string[], cls: (i: number) => string = () => ''): string =>
    `<tr><th scope="row">${esc(label)}</th>${cells.map((c, i) => `<td class="${cls(i)}">${esc(c)}</td>`).join('')}</tr>`;
  const names = hs.map((h) => `${h.handler} (${h.isolation})`);
  const p = (f: (x: ProbeReport) => string): string[] => hs.map((h) => f(h.probe!));
  const facts = [
    row('kernel seen', p((x) => x.kernel)),
    row('capabilities', p((x) => `${x.capabilities.length}: ${x.capabilities.join(' ')}`)),
    row('seccomp', p((x) => (x.seccompMode === 2 ? `filter (${x.seccompFilters} filters)` : x.seccompMode === 0 ? 'disabled' : x.seccompMode === 1 ? 'strict' : 'not reported'))),
    row('no_new_privs', p((x) => (x.noNewPrivs ? 'on' : 'off'))),
    row('processes visible', p((x) => String(x.processes))),
    row('devices', p((x) => x.devices.join(' '))),
    row('host paths in mountinfo', p((x) => x.hostPaths.join(' ') || 'none')),
    row('runtime sockets', p((x) => x.runtimeSockets.join(' ') || 'none')),
    row('/proc/sys mount', p((x) => x.procSysMount || '-')),
    row('/sys mount', p((x) => x.sysMount || '-')),
    row('/proc/kcore', p((x) => x.kcore)),
    row('/sys/firmware', p((x) => x.sysFirmware)),
  ].join('\n');
  const opNames = hs[0]?.probe?.ops.map((o) => o.name) ?? [];
  const ops = opNames.map((n) => {
    const cells = hs.map((h) => h.probe!.ops.find((o) => o.name === n)!);
    return row(`${n}: ${cells[0]!.what}`, cells.map((o) => (o.allowed ? 'allowed' : `blocked ${o.errno || ''}`.trim())), (i) => (cells[i]!.allowed ? 'open' : 'shut'));
  }).join('\n');
  const reach = r.targets.map((t) => {
    const cells = hs.map((h) => h.probe!.reach[t] ?? 'not tried');
    return row(t, cells, (i) => (cells[i] === 'open' || cells[i] === 'refused' ? 'open' : 'shut'));
  }).join('\n');
  const sys = row(`syscall-heavy loop (${SYSCALL_LOOP_BYTES * 2} read/write calls)`, hs.map((h) => {
    const t = h.probe!.syscallLoopSeconds;
    return t <= 0 ? (t === 0 ? '< 10 ms' : '-') : `${t.toFixed(2)} s (${Math.round((SYSCALL_LOOP_BYTES * 2) / t / 1000)}k calls/s)`;
  }));
  const mib = (b: number | undefined): string => (b === undefined ? '-' : (b / 1048576).toFixed(1));
  const dens = (f: (d: DensityReport) => string): string[] => hs.map((h) => (h.density ? (h.density.error ? `failed: ${h.density.error}` : f(h.density)) : '-'));
  const density = [
    row('density: idle pods at once', dens((d) => String(d.pods))),
    row('PSS of all the pods (MiB)', dens((d) => mib(d.pssTotalBytes))),
    row('PSS per pod (MiB)', dens((d) => mib(d.pssPerPodBytes))),
    row('start of the Nth pod (s)', dens((d) => (d.nthStartSeconds === undefined ? '-' : d.nthStartSeconds.toFixed(2)))),
    row('processes of one pod', dens((d) => d.perPod[0]?.processes.join(' ') ?? '-')),
    row('left after removal', dens((d) => (d.leftovers.length ? d.leftovers.join(' ') : 'nothing'))),
  ].join('\n');
  const idle = row('idle pod memory (MiB, PodSandboxStats)', hs.map((h) => (h.idlePodBytes === undefined ? h.idlePodError ?? '-' : (h.idlePodBytes / 1048576).toFixed(1))));
  const start = row('start p50 / p99 (s)', hs.map((h) => (h.startP50 === undefined ? '-' : `${h.startP50.toFixed(2)} / ${h.startP99!.toFixed(2)} (n=${h.startSeconds.length})`)));
  const missing = r.handlers.filter((h) => !h.probe).map((h) => `<li>${esc(h.handler)}: ${esc(h.reason ?? h.probeError ?? 'not run')}</li>`).join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bulkhead report</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top;max-width:32em;word-break:break-word}
th[scope=row]{background:#f6f6f6;font-weight:normal}td.open{background:#fde2e2}td.shut{background:#e3f6e3}
figure.chart{display:inline-block;margin:0 1.5em 1.5em 0;vertical-align:top}figcaption{font-size:12px;color:#555}
</style></head><body>
<h1>What each sandbox blocks and costs on this node</h1>
<p>Generated ${esc(r.generatedAt)} · host kernel ${esc(r.hostKernel)} · the same probe in a trusted pod on each handler.</p>
<h2>What the workload sees</h2>
<table id="facts">${th(names)}
${facts}</table>
<h2>Privileged operations tried</h2>
<table id="ops">${th(names)}
${ops}</table>
<h2>This node's addresses from inside the pod</h2>
<table id="reach">${th(names)}
${reach || row('no target', hs.map(() => 'no port listens on all addresses here'))}</table>
<h2>Cost</h2>
<table id="cost">${th(names)}
${start}
${idle}
${density}
${sys}</table>
${charts.length ? `<h2>Charts</h2>\n${charts.map((c) => `<figure class="chart" id="chart-${esc(c.name)}" data-chart="${esc(c.name)}">${inlineSvg(c.svg)}<figcaption>${esc(c.title)}</figcaption></figure>`).join('\n')}` : ''}
${missing ? `<h2>Not measured</h2><ul>${missing}</ul>` : ''}
<p>${r.notes.map(esc).join('<br>')}</p>
</body></html>
`;
}

/** Renders each chart to SVG (for the HTML) and PNG (DIR/charts/NAME.png), and all of them side by side as DIR/report.png. */
export async function writeCharts(r: Report, out: string): Promise<RenderedChart[]> {
  // the charting libraries load here, not with the module: `bulkhead --help` loads every command's module
  const { chartSpecs, summarySpec, toPng, toSvg } = await import('./report-charts.ts');
  const charts = chartSpecs(r);
  const rendered: RenderedChart[] = [];
  if (!charts.length) return rendered;
  await mkdir(join(out, 'charts'), { recursive: true });
  for (const c of charts) {
    const svg = await toSvg(c.spec);
    await writeFile(join(out, 'charts', `${c.name}.png`), toPng(svg));
    rendered.push({ name: c.name, title: c.title, svg });
  }
  const summary = summarySpec(charts);
  // the README's picture: a little smaller, it holds all four
  if (summary) await writeFile(join(out, 'report.png'), toPng(await toSvg(summary), 1.5));
  return rendered;
}

const alive = (pid: number): boolean => {
  try { process.kill(pid, 0); return true; } catch { return false; }
};

/** Stops the report's private daemon and waits for it to be gone (nothing of the report outlives it); SIGKILL after 20 s. */
async function stopDaemon(pid: number): Promise<void> {
  try { process.kill(pid, 'SIGTERM'); } catch { return; }
  for (let i = 0; i < 200 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  if (alive(pid)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

const command: Command = {
  name: 'report',
  synopsis: 'bulkhead report [--out DIR] [--handlers a,b] [--runs N] [--density N] [--vm-assets DIR] [--peers] [--json]',
  summary: 'Probe and time every sandbox on this node; write report.json and report.html',
  flags: { out: { type: 'string' }, handlers: { type: 'string' }, runs: { type: 'string' }, density: { type: 'string' }, 'vm-assets': { type: 'string' }, peers: { type: 'boolean' }, 'keep-daemon': { type: 'boolean' } },
  async run(ctx: CommandContext) {
    const progress = (s: string): void => { ctx.stderr.write(`report: ${s}\n`); };
    const out = resolve(typeof ctx.flags.out === 'string' ? ctx.flags.out : 'bulkhead-report');
    const runs = typeof ctx.flags.runs === 'string' ? Number(ctx.flags.runs) : 5;
    if (!Number.isInteger(runs) || runs < 1 || runs > 100) throw new UsageError('--runs must be an integer 1..100');
    const densityFlag = typeof ctx.flags.density === 'string' ? Number(ctx.flags.density) : undefined;
    if (densityFlag !== undefined && (!Number.isInteger(densityFlag) || densityFlag < 0 || densityFlag > 50)) throw new UsageError('--density must be an integer 0..50 (0: no density bench)');
    const only = typeof ctx.flags.handlers === 'string' ? ctx.flags.handlers.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
    const g = reportGlobal(ctx.global);
    await mkdir(g.root, { recursive: true, mode: 0o700 });
    await mkdir(out, { recursive: true });
    await writeFile(join(g.root, 'policy.toml'), DEMO_POLICY);
    await writeFile(g.config, [
      "# Written by 'bulkhead report': a private daemon for the report.",
      `policy_file = ${JSON.stringify(join(g.root, 'policy.toml'))}`,
      '[runtime.handlers.microvm]',
      'backend = "microvm"',
      // the microVM guest assets are the node's (scripts/setup.sh builds them under the main root), or --vm-assets'
      `runtime_args = ["--assets", ${JSON.stringify(typeof ctx.flags['vm-assets'] === 'string' ? resolve(ctx.flags['vm-assets']) : ctx.global.root)}]`,
      '',
    ].join('\n'));
    progress(`starting a private daemon (root ${g.root})`);
    const { client } = await ensureDaemon(g, { signal: ctx.signal });
    let daemonPid = 0;
    try {
      const info = await client.info();
      daemonPid = info.pid;
      if (only) for (const n of only) if (!info.handlers.some((h) => h.name === n)) throw new UsageError(`--handlers: no handler "${n}" here (known: ${info.handlers.map((h) => h.name).join(', ')})`);
      if (!(await client.imageStatus(DEMO_IMAGE)).image) {
        progress(`building ${DEMO_IMAGE} from busybox-static`);
        const dir = await mkdtemp(join(tmpdir(), 'bulkhead-report-'));
        try {
          await writeBusyboxArchive(join(dir, 'img.tar'), DEMO_IMAGE);
          await client.loadImage(join(dir, 'img.tar'), { signal: ctx.signal });
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      }
      const targets = await probeTargets();
      const report: Report = {
        version: 1, generatedAt: new Date().toISOString(), hostKernel: release(), targets, handlers: [],
        notes: ['Start latency is a whole `bulkhead run --rm IMAGE true` (pod, container, removal) through the CLI.',
          'Idle pod memory is the working set CRI PodSandboxStats reports for a pod running `sleep` after 3 s: the VM\'s QEMU cgroup on microvm, the sandbox cgroup on gVisor, the container on runc.',
          'Density: N idle pods (sleep) at once per handler; PSS is summed from /proc/PID/smaps_rollup over every process of each pod (found by the pod\'s and its containers\' cgroups and by command lines naming them: conmon, runtime, sandbox, QEMU, helpers, and their children), so pages the pods share are split among them. Then all are removed and checked gone (processes, mounts, cgroups).',
          'Not measured: containerd as a peer; PSS of the peers.'],
      };
      for (const h of info.handlers.filter((x) => !only || only.includes(x.name))) {
        const hr: HandlerReport = { handler: h.name, isolation: h.isolation, available: h.available, startSeconds: [] };
        report.handlers.push(hr);
        if (!h.available) { hr.reason = h.reason; progress(`${h.name}: not available (${h.reason})`); continue; }
        progress(`${h.name}: probe`);
        const pr: DemoRun = await demoRun(client, ctx, g, request(`report-${h.name}`, h.name, ['sh', '-c', PROBE_SCRIPT], [`PROBE_TARGETS=${targets.join(' ')}`, `SYSCALL_LOOP_BYTES=${SYSCALL_LOOP_BYTES}`], 'bridge'), true);
        if (pr.exitCode !== 0 && !pr.raw) hr.probeError = pr.error ?? `exit ${pr.exitCode}`;
        else hr.probe = parseProbe(pr.raw ?? '');
        for (let i = 0; i < runs; i++) {
          progress(`${h.name}: start ${i + 1}/${runs}`);
          const t = await demoRun(client, ctx, g, request(`report-${h.name}-${i}`, h.name, ['true'], [], 'none'));
          if (t.exitCode === 0) hr.startSeconds.push(t.seconds);
        }
        progress(`${h.name}: idle pod memory`);
        try { hr.idlePodBytes = await idlePodBytes(client, ctx, g, h.name); } catch (e) { hr.idlePodError = (e as Error).message; }
        const pods = densityPods(h.isolation, densityFlag);
        if (pods > 0) {
          hr.density = await measureDensity({
            client, ctx, global: g, pods, daemonPid, progress, label: h.name,
            // a microVM pod is measured once idle as it stays: after the idle translation trim (src/vm/tb-trim.ts)
            ...(h.isolation === 'vm' && trimIdleMs() > 0 ? { settleMs: trimIdleMs() + 3000 } : {}),
            request: (i) => ({ ...request(`report-density-${h.name}-${i}`, h.name, ['sleep', '3600'], [], 'none'), detach: true, remove: false }),
          });
          const d = hr.density;
          const mb = (b: number | undefined): string => (b === undefined ? '?' : `${(b / 1048576).toFixed(1)} MiB`);
          progress(d.error ? `${h.name}: density failed: ${d.error}` : `${h.name}: ${d.pods} idle pods: PSS ${mb(d.pssTotalBytes)} in all, ${mb(d.pssPerPodBytes)} per pod (${d.perPod.map((p) => mb(p.pssBytes)).join(', ')}); pod ${d.pods} started in ${d.nthStartSeconds?.toFixed(2)} s`);
          if (d.leftovers.length) progress(`${h.name}: left after removal: ${d.leftovers.join(', ')}`);
        }
        const sorted = [...hr.startSeconds].sort((a, b) => a - b);
        const p50 = percentile(sorted, 50);
        const p99 = percentile(sorted, 99);
        if (p50 !== undefined) hr.startP50 = p50;
        if (p99 !== undefined) hr.startP99 = p99;
      }
      if (ctx.flags.peers) {
        for (const p of await runPeers({ script: PROBE_SCRIPT, env: [`SYSCALL_LOOP_BYTES=${SYSCALL_LOOP_BYTES}`], runs, progress })) {
          const sorted = [...p.startSeconds].sort((a, b) => a - b);
          const p50 = percentile(sorted, 50);
          const p99 = percentile(sorted, 99);
          report.handlers.push({ ...p, ...(p50 !== undefined ? { startP50: p50 } : {}), ...(p99 !== undefined ? { startP99: p99 } : {}) });
        }
      }
      progress('charts');
      const charts = await writeCharts(report, out);
      await writeFile(join(out, 'report.json'), JSON.stringify(report, null, 2) + '\n');
      await writeFile(join(out, 'report.html'), renderHtml(report, charts));
      progress(`wrote ${join(out, 'report.html')}, report.json and ${charts.length ? `report.png and ${charts.length} chart PNGs` : 'no charts (nothing measured)'}`);
      if (ctx.global.json) writeJson(ctx.stdout, report);
      else ctx.stdout.write(`${join(out, 'report.html')}\n`);
      return report.handlers.some((h) => h.probe) ? 0 : 1;
    } finally {
      client.close();
      if (!ctx.flags['keep-daemon'] && daemonPid > 0) await stopDaemon(daemonPid);
    }
  },
};
export default command;
