// `bulkhead report`'s density bench: N idle pods at once on one handler, the proportional memory
// (PSS) of everything each pod adds to the node, and the start latency of the Nth pod. A pod's
// processes are found from /proc, not from what the daemon says about itself: every process whose
// cgroup (any hierarchy) is the pod's or one of its containers', or whose command line names the
// pod or one of its containers (conmon, runsc's sandbox and gofer, bulkhead-vm and QEMU, helpers),
// and all their descendants. PSS shares each page among the processes that map it, so N pods'
// PSS added up is what the N pods cost together (a shared runtime binary is counted once).
// Afterwards everything is removed and checked gone: processes, mounts and cgroup directories that
// name a pod or container.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { CriClient } from '../cri/client.ts';
import type { CommandContext, GlobalOptions } from './command.ts';
import { runWith, type RunRequest } from './run.ts';

export interface ProcInfo { pid: number; ppid: number; comm: string; cmdline: string; cgroups: string[] }

/** What N idle pods on one handler cost, as report.json records it. */
export interface DensityReport {
  pods: number;
  /** Seconds each `run -d IMAGE sleep` took, in order; the last is the Nth pod's. */
  startSeconds: number[];
  nthStartSeconds?: number;
  /** PSS of all the pods' processes together, and per pod (total / pods). */
  pssTotalBytes?: number;
  pssPerPodBytes?: number;
  /** Processes the handler keeps for all its pods (a standby VM supervisor): in the total, in no pod. */
  sharedPssBytes?: number;
  sharedProcesses?: string[];
  /** Each pod's PSS and the names of the processes it was summed over. */
  perPod: { pssBytes: number; processes: string[] }[];
  /** What was still there after removal (processes, mounts, cgroups naming a pod); [] = nothing. */
  leftovers: string[];
  /** The pods' ids, in start order. */
  podIds: string[];
  error?: string;
}

async function text(path: string): Promise<string> {
  return await readFile(path, 'utf8').catch(() => '');
}

/** Every process of the node as /proc shows it (the ones that end while it is read are skipped). */
export async function readProcs(proc = '/proc'): Promise<ProcInfo[]> {
  const out: ProcInfo[] = [];
  for (const d of await readdir(proc).catch(() => [] as string[])) {
    if (!/^\d+$/.test(d)) continue;
    const stat = await text(join(proc, d, 'stat'));
    // comm is in parentheses and may hold spaces or parentheses: the fields after the last ')' are fixed
    const close = stat.lastIndexOf(')');
    if (close < 0) continue;
    const ppid = Number(stat.slice(close + 2).split(' ')[1]);
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const cmdline = (await text(join(proc, d, 'cmdline'))).split('\0').join(' ').trim().slice(0, 4096);
    const cgroups = (await text(join(proc, d, 'cgroup'))).split('\n').map((l) => l.split(':').slice(2).join(':')).filter(Boolean);
    out.push({ pid: Number(d), ppid, comm, cmdline, cgroups });
  }
  return out;
}

/**
 * The pids that belong to a pod: a cgroup path holding one of `cgroupKeys` or a command line
 * holding one of `idKeys` (ids are long hex strings, so they match nothing else), plus descendants.
 * `exclude` (the daemon, this process) is never counted, nor anything below it that matched nothing.
 */
export function podPids(procs: readonly ProcInfo[], idKeys: readonly string[], cgroupKeys: readonly string[], exclude: ReadonlySet<number> = new Set()): number[] {
  const ids = idKeys.filter((k) => k.length >= 12);
  const cgs = cgroupKeys.filter((k) => k.length > 1);
  const seeds = new Set<number>();
  for (const p of procs) {
    if (exclude.has(p.pid)) continue;
    if (ids.some((k) => p.cmdline.includes(k)) || p.cgroups.some((c) => cgs.some((k) => c === k || c.startsWith(`${k}/`) || ids.some((i) => c.includes(i))))) seeds.add(p.pid);
  }
  const children = new Map<number, number[]>();
  for (const p of procs) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  const all = new Set<number>();
  const walk = (pid: number): void => {
    if (all.has(pid) || exclude.has(pid)) return;
    all.add(pid);
    for (const c of children.get(pid) ?? []) walk(c);
  };
  for (const s of seeds) walk(s);
  return [...all].sort((a, b) => a - b);
}

/** A process's name for the report: argv[0]'s last part (runsc re-executes itself as "exe"), else comm; bounded. */
export function processName(p: ProcInfo | undefined): string | undefined {
  if (!p) return undefined;
  const argv = p.cmdline.split(' ');
  const base = (s: string | undefined): string => s?.split('/').at(-1) ?? '';
  // a Node.js program (bulkhead-vm's supervisor) by its script's name
  const name = base(argv[0]) === 'node' && argv[1] && !argv[1].startsWith('-') ? base(argv[1]) : base(argv[0]);
  return (name || p.comm).slice(0, 64);
}

/** A process's PSS in bytes (smaps_rollup); 0 when it is gone or not readable. */
export async function pssBytes(pid: number, proc = '/proc'): Promise<number> {
  const m = /^Pss:\s+(\d+) kB$/m.exec(await text(join(proc, String(pid), 'smaps_rollup')));
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * The /run/netns name prefix of a pod's network namespace: `bulkhead-` and the id's first 12
 * characters (src/network names them `bulkhead-<12 (CNI) or 16 (loopback) of the id>-<random>`).
 */
export function netnsPrefix(podId: string): string {
  return `bulkhead-${podId.replace(/[^0-9a-zA-Z]/g, '').slice(0, 12)}`;
}

/**
 * What names one of `keys` after removal: processes, mounts (this process's view), cgroup
 * directories, and network namespaces in `netnsDir` named for one of them (a netns is named by the
 * start of its pod's id, not the whole id).
 */
export async function leftovers(keys: readonly string[], exclude: ReadonlySet<number>, proc = '/proc', netnsDir = '/run/netns'): Promise<string[]> {
  const ids = keys.filter((k) => k.length >= 12);
  if (!ids.length) return [];
  const out: string[] = [];
  const netns = ids.map(netnsPrefix);
  for (const pid of podPids(await readProcs(proc), ids, [], exclude)) out.push(`process ${pid}`);
  for (const line of (await text(join(proc, 'self', 'mountinfo'))).split('\n')) {
    const mp = line.split(' ')[4] ?? '';
    if (ids.some((k) => mp.includes(k)) || netns.some((n) => mp.includes(`/${n}`))) out.push(`mount ${mp}`);
  }
  for (const n of await readdir(netnsDir).catch(() => [] as string[])) if (netns.some((p) => n.startsWith(p))) out.push(`netns ${join(netnsDir, n)}`);
  for (const line of (await text(join(proc, 'self', 'mountinfo'))).split('\n')) {
    const f = line.split(' ');
    if (f[f.indexOf('-') + 1] !== 'cgroup' && f[f.indexOf('-') + 1] !== 'cgroup2') continue;
    const root = f[4] ?? '';
    const stack = [root];
    // cgroup trees are shallow; walk at most a few thousand directories per hierarchy
    for (let seen = 0; stack.length && seen < 5000; seen++) {
      const dir = stack.pop()!;
      const ents = await readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const e of ents) {
        if (!e.isDirectory()) continue;
        const p = join(dir, e.name);
        if (ids.some((k) => e.name.includes(k))) out.push(`cgroup ${p}`);
        else stack.push(p);
      }
    }
  }
  return [...new Set(out)];
}

/**
 * A microVM pod's host processes that neither name the pod nor sit in its cgroups nor descend from
 * its conmon: the supervisor (`_vmd`, started ahead of the pod by the daemon, or the node-wide
 * `_vmhost`), QEMU and virtiofsd, recorded as `<podDir>/<role>.proc` (src/vm/procs.ts). Found from
 * each container's bulkhead-vm state (`<state root>/<container id>/state.json` names the pod dir)
 * under the conmon runtimes' state roots `<runDir>/runtime/<handler>/state`.
 */
export async function vmPodPids(runDir: string, containerIds: readonly string[]): Promise<{ pid: number; role: string }[]> {
  const out = new Map<number, string>();
  const roots = (await readdir(join(runDir, 'runtime')).catch(() => [] as string[])).map((h) => join(runDir, 'runtime', h, 'state'));
  for (const root of roots) {
    for (const id of containerIds) {
      if (!/^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$/.test(id)) continue;
      let podDir: unknown;
      try { podDir = (JSON.parse(await readFile(join(root, id, 'state.json'), 'utf8')) as { podDir?: unknown }).podDir; } catch { continue; }
      if (typeof podDir !== 'string' || !podDir.startsWith(`${root}/`)) continue;
      for (const f of await readdir(podDir).catch(() => [] as string[])) {
        if (!f.endsWith('.proc')) continue;
        try {
          const pid = (JSON.parse(await readFile(join(podDir, f), 'utf8')) as { pid?: unknown }).pid;
          if (typeof pid === 'number' && Number.isInteger(pid) && pid > 1) out.set(pid, f.slice(0, -'.proc'.length));
        } catch { /* written as we read */ }
      }
    }
  }
  return [...out].map(([pid, role]) => ({ pid, role }));
}

/**
 * Processes a handler keeps for all its pods under `runDir`: a microVM supervisor started ahead
 * (`_vmd --standby`), and the node-wide host's standby clone VMMs (QEMU spawned ahead in
 * `<state root>/standby/`, src/vm/standby-vmm.ts; its slot files are named on its command line).
 */
export function handlerPids(procs: readonly ProcInfo[], runDir: string): number[] {
  return procs.filter((p) => (p.cmdline.includes(' _vmd --standby') && p.cmdline.includes(`--root ${runDir}/`))
    || (p.cmdline.includes(`file=${runDir}/runtime/`) && /\/state\/standby\/[^/ ]+\/slot0\.img/.test(p.cmdline))).map((p) => p.pid);
}

class Discard extends Writable {
  override _write(_c: Buffer, _e: string, cb: () => void): void { cb(); }
}

export interface DensityOptions {
  client: CriClient;
  ctx: CommandContext;
  global: GlobalOptions;
  /** The run request of one idle pod (`sleep`, detached, not removed); each gets its own name. */
  request: (i: number) => RunRequest;
  pods: number;
  daemonPid: number;
  settleMs?: number;
  progress: (s: string) => void;
  label: string;
  /** Called with each pod's counted processes while the pods run (benches look closer: smaps). */
  inspect?: (pods: { pids: number[] }[], procs: readonly ProcInfo[]) => Promise<void> | void;
}

/** Starts `pods` idle pods, measures them, removes them all and reports what was left. */
export async function measureDensity(o: DensityOptions): Promise<DensityReport> {
  const podIds: string[] = [];
  const r: DensityReport = { pods: o.pods, startSeconds: [], perPod: [], leftovers: [], podIds };
  const keys: string[] = [];
  const exclude = new Set([process.pid, o.daemonPid]);
  const sub: CommandContext = { ...o.ctx, global: o.global, stdout: new Discard(), stderr: new Discard(), flags: { quiet: true } };
  try {
    for (let i = 0; i < o.pods; i++) {
      o.progress(`${o.label}: density pod ${i + 1}/${o.pods}`);
      const t0 = performance.now();
      const code = await runWith(o.client, o.request(i), sub, { onPod: async (id) => { podIds.push(id); keys.push(id); } });
      if (code !== 0) throw new Error(`idle pod ${i + 1} did not start (exit ${code})`);
      r.startSeconds.push((performance.now() - t0) / 1000);
    }
    r.nthStartSeconds = r.startSeconds.at(-1)!;
    await new Promise((res) => setTimeout(res, o.settleMs ?? 3000));
    const per: { ids: string[]; cgroups: string[] }[] = [];
    for (const id of podIds) {
      const ids = [id];
      const cgroups: string[] = [];
      const st = await o.client.podSandboxStatus(id, true);
      const info = JSON.parse(st.info.info ?? '{}') as { cgroupParent?: string };
      if (info.cgroupParent && info.cgroupParent.includes(id)) cgroups.push(info.cgroupParent);
      for (const c of await o.client.listContainers({ podSandboxId: id })) {
        ids.push(c.id);
        keys.push(c.id);
        const cs = await o.client.containerStatus(c.id, true);
        const ci = JSON.parse(cs.info.info ?? '{}') as { cgroupsPath?: string };
        if (ci.cgroupsPath) cgroups.push(ci.cgroupsPath.includes(':') ? ci.cgroupsPath.split(':').at(-1)! : ci.cgroupsPath);
      }
      per.push({ ids, cgroups });
    }
    const procs = await readProcs();
    const byPid = new Map(procs.map((p) => [p.pid, p]));
    const counted = new Set<number>();
    const seen: { pids: number[] }[] = [];
    // a microVM pod's supervisor and VMM are found by their pid records; with their descendants
    const children = new Map<number, number[]>();
    for (const p of procs) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
    const withChildren = (pids: number[]): number[] => {
      const all = new Set<number>();
      const walk = (x: number): void => { if (all.has(x) || exclude.has(x) || !byPid.has(x)) return; all.add(x); for (const c of children.get(x) ?? []) walk(c); };
      for (const x of pids) walk(x);
      return [...all];
    };
    for (const p of per) {
      // a process is counted once, for the first pod that claims it (a node-wide VM supervisor: the first pod)
      // (the node-wide one's children are every pod's VMMs: itself only)
      const vm = await vmPodPids(o.global.runDir, p.ids);
      const found = new Set([...podPids(procs, p.ids, p.cgroups, exclude), ...withChildren(vm.filter((v) => v.role !== 'host').map((v) => v.pid)), ...vm.filter((v) => v.role === 'host' && byPid.has(v.pid)).map((v) => v.pid)]);
      const pids = [...found].sort((a, b) => a - b).filter((x) => !counted.has(x));
      for (const x of pids) counted.add(x);
      seen.push({ pids });
      let sum = 0;
      for (const x of pids) sum += await pssBytes(x);
      r.perPod.push({ pssBytes: sum, processes: pids.map((x) => processName(byPid.get(x)) ?? String(x)) });
    }
    // what the handler keeps for all its pods (a standby supervisor) is part of what they cost
    const shared = withChildren(handlerPids(procs, o.global.runDir)).filter((x) => !counted.has(x));
    r.sharedPssBytes = 0;
    for (const x of shared) r.sharedPssBytes += await pssBytes(x);
    r.sharedProcesses = shared.map((x) => processName(byPid.get(x)) ?? String(x));
    r.pssTotalBytes = r.perPod.reduce((a, p) => a + p.pssBytes, 0) + r.sharedPssBytes;
    r.pssPerPodBytes = Math.round(r.pssTotalBytes / Math.max(1, r.perPod.length));
    await o.inspect?.(seen, procs);
  } catch (e) {
    r.error = (e as Error).message;
  } finally {
    o.progress(`${o.label}: removing ${podIds.length} density pods`);
    for (const id of podIds) await o.client.removePodSandbox(id).catch(() => {});
    // a pod's processes may take a moment to go after RemovePodSandbox returns (a VM's QEMU, a daemonized conmon)
    for (let i = 0; i < 20; i++) {
      r.leftovers = await leftovers(keys, exclude);
      if (!r.leftovers.length) break;
      await new Promise((res) => setTimeout(res, 500));
    }
  }
  return r;
}
