// Density: N idle pods at once per handler (`bulkhead run -d IMAGE sleep`, as `bulkhead report`
// does), the proportional memory (PSS) of everything each pod adds to the node, and how long pods
// take to start as the node fills: p50/p99 over the N starts and the Nth pod's. Then every pod is
// removed and the node checked for what is left (processes, mounts, cgroups naming a pod).
// The measuring is src/cli/report-density.ts's (the same numbers `bulkhead report` records).
//
//   node bench/density.ts [--handlers runc,gvisor] [--pods N] [--settle-ms 3000] [--vm-supervisor pod|node]
//
// N defaults to 20 for runc and gVisor and 10 for microvm (issue #13); on a loaded host pass a
// smaller --pods and say so with the figures.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Writable } from 'node:stream';
import { startTestDaemon } from '../harness/daemon.ts';
import { writeBusyboxArchive } from '../src/cli/demo-image.ts';
import { measureDensity, type DensityReport } from '../src/cli/report-density.ts';
import type { CommandContext, GlobalOptions } from '../src/cli/command.ts';
import type { RunRequest } from '../src/cli/run.ts';
import { run } from '../src/util/exec.ts';

const { values } = parseArgs({
  options: {
    handlers: { type: 'string', default: 'runc,gvisor' },
    pods: { type: 'string' },
    'settle-ms': { type: 'string', default: '3000' },
    // microvm: one supervisor per pod (pod, the default) or one for the node (node: bulkhead-vm --supervisor node)
    'vm-supervisor': { type: 'string', default: 'pod' },
  },
});
if (!['pod', 'node'].includes(values['vm-supervisor'])) throw new Error('--vm-supervisor must be pod or node');
// the daemon's runtime calls inherit it (conmon passes its environment to bulkhead-vm)
process.env.BULKHEAD_VM_SUPERVISOR = values['vm-supervisor'];
const handlers = values.handlers.split(',').map((s) => s.trim()).filter(Boolean);
const podsFor = (h: string): number => {
  const n = values.pods !== undefined ? Number(values.pods) : h === 'microvm' ? 10 : 20;
  if (!Number.isInteger(n) || n < 1 || n > 200) throw new Error(`--pods must be an integer 1..200, not ${values.pods}`);
  return n;
};
const IMAGE = 'bulkhead.local/demo:latest';
const BULKHEAD = new URL('../bin/bulkhead', import.meta.url).pathname;

const table: Record<string, { backend: string }> = {};
for (const h of handlers) table[h] = { backend: h };
const d = await startTestDaemon({ name: 'bulkhead-bench-density-', handlers: table, defaultHandler: handlers[0]!, logLevel: 'info' });
class Discard extends Writable { override _write(_c: Buffer, _e: string, cb: () => void): void { cb(); } }
const results: { handler: string; r: DensityReport }[] = [];
try {
  const global: GlobalOptions = { root: d.root, runDir: d.runDir, socket: d.socket, config: d.configPath, json: false, debug: false };
  const archive = join(d.base, 'demo.tar');
  await writeBusyboxArchive(archive, IMAGE);
  const load = await run(BULKHEAD, ['--root', d.root, '--run-dir', d.runDir, '--socket', d.socket, 'load', '-i', archive], { timeoutMs: 120_000 });
  if (load.code !== 0) throw new Error(`bulkhead load failed: ${load.stderr.trim()}`);
  const ctx: CommandContext = { global, flags: { quiet: true }, args: [], stdout: new Discard(), stderr: new Discard(), signal: new AbortController().signal };
  const request = (handler: string, i: number): RunRequest => ({
    image: IMAGE, args: ['sleep', '3600'], name: `density-${handler}-${i}`, isolation: handler,
    detach: true, remove: false, interactive: false, tty: false, env: [], volumes: [], publish: [],
    network: 'none', readOnly: false, privileged: false, capAdd: [], capDrop: [], labels: [],
  });
  for (const handler of handlers) {
    const pods = podsFor(handler);
    const r = await measureDensity({
      client: d.client, ctx, global, pods, daemonPid: d.pid, label: handler, settleMs: Number(values['settle-ms']) || 3000,
      progress: (s) => process.stderr.write(s + '\n'), request: (i) => request(handler, i),
    });
    results.push({ handler, r });
  }
} finally {
  await d.close();
}

const pct = (xs: number[], p: number): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!; };
const mib = (b: number | undefined): string => (b === undefined ? '-' : (b / 1048576).toFixed(1));
console.log(`\nidle pods per handler (run -d IMAGE sleep, --network none; microvm supervisor: ${values['vm-supervisor']}); PSS in MiB, start in ms`);
console.log(`${'handler'.padEnd(10)}${'pods'.padStart(6)}${'PSS total'.padStart(11)}${'PSS/pod'.padStart(9)}${'start p50'.padStart(11)}${'p99'.padStart(8)}${'Nth pod'.padStart(9)}  left after removal`);
for (const { handler, r } of results) {
  const ms = r.startSeconds.map((s) => s * 1000);
  const line = `${handler.padEnd(10)}${String(r.perPod.length).padStart(6)}${mib(r.pssTotalBytes).padStart(11)}${mib(r.pssPerPodBytes).padStart(9)}` +
    `${(ms.length ? pct(ms, 50).toFixed(0) : '-').padStart(11)}${(ms.length ? pct(ms, 99).toFixed(0) : '-').padStart(8)}${(r.nthStartSeconds !== undefined ? (r.nthStartSeconds * 1000).toFixed(0) : '-').padStart(9)}` +
    `  ${r.leftovers.length ? r.leftovers.join(', ') : 'nothing'}`;
  console.log(line);
  if (r.error) console.log(`  ${handler}: ${r.error}`);
  const first = r.perPod[0];
  if (first) console.log(`  ${handler}: pod 1's processes: ${first.processes.join(' ')}`);
}
if (process.env.BULKHEAD_BENCH_JSON) await writeFile(process.env.BULKHEAD_BENCH_JSON, JSON.stringify(results, null, 2));
if (results.some(({ r }) => r.error || r.leftovers.length)) process.exitCode = 1;
