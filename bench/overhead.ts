// Measures the fixed per-pod overhead of each runtime handler (what RuntimeClass overhead.podFixed
// should say): a real Bulkhead daemon on a temporary root starts N pods per handler over CRI, each
// with one idle container (`sleep`), since a pod may start no process of its own (a runc pod without
// a shared PID namespace holds its namespaces in files). The processes each pod adds are found in
// /proc: conmon and everything under it (pause, runsc sandbox, gofer and sub-container waiter), a
// containerd shim, a microVM pod's supervisor, QEMU and virtiofsd (from their pid records, as
// src/cli/report-density.ts finds them), and a share of what the handler runs for all its pods
// (a node-wide VM supervisor); the workload's own `sleep` process left out. Their memory is summed
// as PSS and their CPU use sampled while idle. A first pod per handler is started and removed
// before measuring (a microVM template is built then), so the figures are a node's steady state.
// Prints the figures side by side and writes the measurement file `bulkhead k8s manifests` reads.
//
//   node bench/overhead.ts [--handlers runc,gvisor,microvm] [--pods 3] [--idle-seconds 5] [--out FILE]
//
// Numbers are per pod, averaged over the pods; run it on an otherwise quiet node.
import { parseArgs } from 'node:util';
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startTestDaemon } from '../harness/daemon.ts';
import type { HandlerOverhead, OverheadMeasurements } from '../src/k8s/overhead.ts';
import { writeBusyboxArchive } from '../src/cli/demo-image.ts';
import { handlerPids, vmPodPids } from '../src/cli/report-density.ts';

const { values } = parseArgs({
  options: {
    handlers: { type: 'string', default: 'runc,gvisor,microvm' },
    pods: { type: 'string', default: '3' },
    'idle-seconds': { type: 'string', default: '5' },
    out: { type: 'string' },
  },
});
const handlers = values.handlers.split(',').map((s) => s.trim()).filter(Boolean);
const podsPer = Math.max(1, Math.min(10, Number(values.pods) || 3));
const idleSeconds = Math.max(1, Math.min(60, Number(values['idle-seconds']) || 5));
const CLK_TCK = 100; // Linux USER_HZ on x86_64
// the Node.js processes the daemon starts (a microVM pod's supervisor) load from the compile cache, as under bin/bulkhead
process.env.NODE_COMPILE_CACHE ??= '/var/cache/bulkhead/node';

interface Proc { pid: number; ppid: number; cmdline: string; ticks: number }

async function processes(): Promise<Map<number, Proc>> {
  const out = new Map<number, Proc>();
  for (const name of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      // Fields after the ")" that closes the command name: state ppid ... utime(14) stime(15).
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmdline = (await readFile(`/proc/${name}/cmdline`, 'utf8')).replaceAll('\0', ' ');
      out.set(Number(name), { pid: Number(name), ppid: Number(rest[1]), cmdline, ticks: Number(rest[11]) + Number(rest[12]) });
    } catch { /* the process exited */ }
  }
  return out;
}

/** conmon processes of the pod's sandbox and containers and all their descendants, less the workload itself. */
function podProcesses(all: Map<number, Proc>, ids: string[], shimPids: number[] = []): number[] {
  // a pod's processes hang under its conmon(s), or under its containerd shim (runc-shim, kata:
  // named by the sandbox id the shim groups the pod under, found in the container's record), or
  // (a microVM pod) under the supervisor and VMM its pid records name
  const roots = [...all.values()].filter((p) => p.cmdline.startsWith('conmon') && ids.some((id) => p.cmdline.includes(id.slice(0, 12)))).map((p) => p.pid);
  roots.push(...shimPids.filter((pid) => all.has(pid)));
  const children = new Map<number, number[]>();
  for (const p of all.values()) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  const seen = new Set<number>();
  const stack = [...roots];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return [...seen].filter((pid) => !all.get(pid)?.cmdline.startsWith('sleep '));
}

async function pssBytes(pid: number): Promise<number> {
  try {
    const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
    const m = /^Pss:\s+([0-9]+) kB/m.exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  } catch { return 0; }
}

const IMAGE = 'bulkhead.local/overhead:latest';
const d = await startTestDaemon({
  name: 'bulkhead-bench-overhead-', logLevel: 'warn',
  handlers: {
    runc: { backend: 'runc' },
    // containerd-shim-runc-v2 in place of conmon (src/runtime/shimv2/)
    'runc-shim': { backend: 'runc-shim' },
    gvisor: { backend: 'gvisor', runtime_args: ['--platform=ptrace'] },
    // The guest kernel and initramfs that scripts/setup.sh prepared.
    microvm: { backend: 'microvm', runtime_args: ['--assets', process.env.BULKHEAD_ROOT ?? '/var/lib/bulkhead'] },
  },
});
await writeBusyboxArchive(join(d.base, 'image.tar'), IMAGE);
await d.client.loadImage(join(d.base, 'image.tar'));
const results: Record<string, HandlerOverhead & { pods: number; processes: number }> = {};
const skipped: Record<string, string> = {};
try {
  const available = new Map((await d.client.info()).handlers.map((h) => [h.name, h]));
  for (const handler of handlers) {
    const h = available.get(handler);
    if (!h?.available) { skipped[handler] = h ? h.reason || 'unavailable' : 'not a handler of this bench\'s daemon'; continue; }
    const startPod = async (i: number | 'warmup'): Promise<string[]> => {
      const logDirectory = join(d.base, 'logs', `${handler}-${i}`);
      await mkdir(logDirectory, { recursive: true });
      const config = { metadata: { name: `overhead-${handler}-${i}`, namespace: 'bench', uid: randomUUID(), attempt: 0 }, logDirectory, linux: {} };
      const podId = await d.client.runPodSandbox(config, handler);
      const cid = await d.client.createContainer(podId, { metadata: { name: 'idle', attempt: 0 }, image: { image: IMAGE }, command: ['sleep', '3600'], logPath: 'idle.log' }, config);
      await d.client.startContainer(cid);
      return [podId, cid];
    };
    process.stderr.write(`${handler}: warm-up pod\n`);
    const [warm] = await startPod('warmup');
    await d.client.stopPodSandbox(warm!);
    await d.client.removePodSandbox(warm!);
    const ids: string[] = [];
    const members: string[][] = [];
    for (let i = 0; i < podsPer; i++) {
      process.stderr.write(`${handler}: pod ${i + 1}/${podsPer}\n`);
      const m = await startPod(i);
      ids.push(m[0]!);
      members.push(m);
    }
    await new Promise((r) => setTimeout(r, 2000)); // let start-up work settle
    const before = await processes();
    const shimPidsOf = async (m: string[]): Promise<number[]> => {
      const out: number[] = [];
      for (const id of m) {
        const rec = await readFile(join(d.runDir, 'runtime', handler, id, 'record.json'), 'utf8').catch(() => '');
        const pid = rec ? (JSON.parse(rec) as { shimPid?: number }).shimPid : undefined;
        if (pid) out.push(pid);
      }
      return out;
    };
    const pids: number[][] = [];
    const counted = new Set<number>();
    for (const m of members) {
      // a microVM pod's supervisor and VMM (their descendants with them); a node-wide supervisor ('host') once, in the first pod
      const vm = await vmPodPids(d.runDir, m);
      const roots = [...await shimPidsOf(m), ...vm.filter((v) => v.role !== 'host').map((v) => v.pid)];
      const mine = [...podProcesses(before, m, roots), ...vm.filter((v) => v.role === 'host' && before.has(v.pid)).map((v) => v.pid)];
      pids.push(mine.filter((pid) => !counted.has(pid)));
      for (const pid of mine) counted.add(pid);
    }
    // what the handler keeps for all its pods (a standby supervisor) is shared among them
    const procInfos = [...before.values()].map((p) => ({ ...p, comm: '', cgroups: [] }));
    pids[0]?.push(...handlerPids(procInfos, d.runDir).filter((pid) => !counted.has(pid)));
    await new Promise((r) => setTimeout(r, idleSeconds * 1000));
    const after = await processes();
    let mem = 0;
    let ticks = 0;
    for (const list of pids) {
      for (const pid of list) {
        mem += await pssBytes(pid);
        const a = after.get(pid);
        const b = before.get(pid);
        if (a && b) ticks += a.ticks - b.ticks;
      }
    }
    results[handler] = {
      memoryBytes: Math.round(mem / podsPer),
      cpuMillicores: Math.round(((ticks / CLK_TCK) / idleSeconds) * 1000 / podsPer * 10) / 10,
      pods: podsPer,
      processes: pids.reduce((n, l) => n + l.length, 0) / podsPer,
    };
    for (const id of ids) { await d.client.stopPodSandbox(id); await d.client.removePodSandbox(id); }
  }
} finally {
  await d.close();
}

const measured: OverheadMeasurements = {
  version: 1,
  measuredAt: new Date().toISOString(),
  handlers: Object.fromEntries(Object.entries(results).map(([h, r]) => [h, { memoryBytes: r.memoryBytes, cpuMillicores: r.cpuMillicores }])),
};
const out = values.out ?? join(process.env.BULKHEAD_ROOT ?? '/var/lib/bulkhead', 'overhead.json');
await mkdir(join(out, '..'), { recursive: true });
await writeFile(out, JSON.stringify(measured, null, 2) + '\n');

console.log(`per-pod overhead, ${podsPer} pod(s) per handler, each with one idle container, CPU sampled over ${idleSeconds} s idle`);
console.log(`${'handler'.padEnd(10)} ${'memory (PSS)'.padStart(14)} ${'cpu'.padStart(10)} ${'processes'.padStart(10)}`);
for (const [h, r] of Object.entries(results)) {
  console.log(`${h.padEnd(10)} ${`${(r.memoryBytes / 1048576).toFixed(1)} MiB`.padStart(14)} ${`${r.cpuMillicores} m`.padStart(10)} ${r.processes.toFixed(1).padStart(10)}`);
}
for (const [h, why] of Object.entries(skipped)) console.log(`${h.padEnd(10)} skipped: ${why}`);
console.log(`written to ${out}`);
