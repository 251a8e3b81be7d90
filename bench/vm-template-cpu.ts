// The CPU time a template clone's QEMU spends on a pod that runs `true` (restore, identity, the sandbox
// container — created and started in the guest, or taken from the template — the app container's
// create, start and run, then ~3 s idle), with the sandbox container in the template (handler
// `microvm`) and without (`--template-sandbox off`), interleaved on one daemon. CPU time, not wall
// time: on a host shared with other work the guest's own cost is what stays comparable. Prints
// figures, asserts nothing.
//
//   node bench/vm-template-cpu.ts [--reps 8]
import { join } from 'node:path';
import { readdirSync, readFileSync } from 'node:fs';
import { startTestDaemon } from '../harness/daemon.ts';
import { ASSETS } from '../harness/vm-assets.ts';
import { writeBusyboxArchive } from '../src/cli/demo-image.ts';
import { parseArgs } from 'node:util';
import { run } from '../src/util/exec.ts';
import { waitingStandby } from '../src/vm/standby-vmm.ts';
const { values } = parseArgs({ options: { reps: { type: 'string', default: '8' } } });
const reps = Math.max(1, Math.min(50, Number(values.reps) || 8));
const IMAGE = 'bulkhead.local/demo:latest';
const BULKHEAD = new URL('../bin/bulkhead', import.meta.url).pathname;
const d = await startTestDaemon({ name: 'bh-cpu-', logLevel: 'info', defaultHandler: 'microvm', handlers: { microvm: { backend: 'microvm', runtime_args: ['--assets', ASSETS] }, nosb: { backend: 'microvm', runtime_args: ['--assets', ASSETS, '--template-sandbox', 'off'] } } });
const cli = (args: string[]): string[] => ['--root', d.root, '--run-dir', d.runDir, '--socket', d.socket, ...args];
const seen = new Set<number>();
const qemuCpu = (): number[] => {
  const out: number[] = [];
  for (const n of readdirSync('/proc')) {
    if (!/^\d+$/.test(n) || seen.has(Number(n))) continue;
    let cmd = '';
    try { cmd = readFileSync(`/proc/${n}/cmdline`, 'utf8'); } catch { continue; }
    // a standby clone VMM not adopted yet is no pod's (looked at again once it is)
    if (!cmd.startsWith('qemu-system') || !cmd.includes(d.base) || !cmd.includes('-incoming') || waitingStandby(cmd)) continue;
    const f = readFileSync(`/proc/${n}/stat`, 'utf8').split(') ')[1]!.split(' ');
    seen.add(Number(n));
    out.push((Number(f[11]) + Number(f[12])) * 10);
  }
  return out;
};
const res: Record<string, number[]> = { microvm: [], nosb: [] };
try {
  const archive = join(d.base, 'demo.tar');
  await writeBusyboxArchive(archive, IMAGE);
  await run(BULKHEAD, cli(['load', '-i', archive]), { timeoutMs: 120_000 });
  for (let i = 0; i <= reps; i++) {
    for (const h of ['microvm', 'nosb']) {
      const r = await run(BULKHEAD, cli(['run', '-d', '--network', 'none', '--isolation', h, IMAGE, 'true']), { timeoutMs: 300_000 });
      if (r.code !== 0) throw new Error(r.stderr);
      // the container has exited well before (the QEMU of a pod that ran `true`, idle after)
      await new Promise((r2) => setTimeout(r2, 3000));
      const c = qemuCpu();
      if (i > 0) res[h]!.push(...c); // the first run of each builds its template
      for (const pod of await d.client.listPodSandbox(undefined, { timeoutMs: 30_000 })) {
        await d.client.stopPodSandbox(pod.id, { timeoutMs: 60_000 }).catch(() => {});
        await d.client.removePodSandbox(pod.id, { timeoutMs: 60_000 }).catch(() => {});
      }
    }
  }
} finally {
  await d.close();
}
const med = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
for (const [h, v] of Object.entries(res)) console.log(h, 'QEMU CPU ms per pod (restore .. app container exited):', v.join(' '), 'median', med(v));
