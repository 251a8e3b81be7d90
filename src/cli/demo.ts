// `bulkhead demo`: the main job — the same small workload in every sandbox this host offers, side by
// side: which kernel it saw, what its sandbox allowed, how long it took. Needs no registry: the image
// is built here from busybox-static and loaded.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { Command, CommandContext } from './command.ts';
import { withClient } from './client.ts';
import { runWith, type RunRequest } from './run.ts';
import { writeBusyboxArchive } from './demo-image.ts';
import { table, writeJson } from './format.ts';

export const DEMO_IMAGE = 'bulkhead.local/demo:latest';

const PROBE = [
  'echo "kernel: $(uname -r)"',
  'grep -E "^(CapEff|Seccomp|NoNewPrivs):" /proc/self/status | tr "\\t" " "',
  'if mount -t tmpfs none /mnt 2>/dev/null; then echo "mount: allowed"; else echo "mount: blocked"; fi',
  'if cat /proc/kcore >/dev/null 2>&1; then echo "kcore: readable"; else echo "kcore: blocked"; fi',
  'echo "hello from $(hostname)"',
].join('; ');

class Collect extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: string, cb: () => void): void { this.text += chunk.toString(); cb(); }
}

interface DemoRow { handler: string; isolation: string; available: boolean; exitCode?: number; seconds?: number; output?: Record<string, string>; reason?: string }

const command: Command = {
  name: 'demo',
  synopsis: 'bulkhead demo [--json]',
  summary: 'Run the same workload in every sandbox this host offers and compare',
  flags: {},
  async run(ctx) {
    return await withClient(ctx, async (client) => {
      const say = (s: string): void => { if (!ctx.global.json) ctx.stdout.write(s + '\n'); };
      if (!(await client.imageStatus(DEMO_IMAGE)).image) {
        say(`Building ${DEMO_IMAGE} from busybox-static and loading it`);
        const dir = await mkdtemp(join(tmpdir(), 'bulkhead-demo-'));
        try {
          const archive = join(dir, 'demo.tar');
          await writeBusyboxArchive(archive, DEMO_IMAGE);
          await client.loadImage(archive, { signal: ctx.signal });
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      }
      const info = await client.info();
      const rows: DemoRow[] = [];
      for (const h of info.handlers) {
        if (!h.available) { rows.push({ handler: h.name, isolation: h.isolation, available: false, reason: h.reason }); continue; }
        say(`\n=== ${h.name} (${h.isolation}) ===`);
        const out = new Collect();
        const err = new Collect();
        const req: RunRequest = {
          image: DEMO_IMAGE, args: ['sh', '-c', PROBE], name: `demo-${h.name}-${process.pid}`, isolation: h.name,
          detach: false, remove: true, interactive: false, tty: false, env: [], volumes: [], publish: [],
          network: 'none', readOnly: false, privileged: false, capAdd: [], capDrop: [], labels: ['io.bulkhead.demo=true'],
        };
        const sub: CommandContext = { ...ctx, stdout: out, stderr: err, flags: { quiet: true } };
        const t0 = performance.now();
        let exitCode: number;
        try {
          exitCode = await runWith(client, req, sub);
        } catch (e) {
          exitCode = -1;
          err.text += (e as Error).message + '\n';
        }
        const seconds = (performance.now() - t0) / 1000;
        say(out.text.trimEnd());
        if (err.text.trim()) say(err.text.trimEnd());
        const output: Record<string, string> = {};
        for (const line of out.text.split('\n')) {
          const i = line.indexOf(':');
          if (i > 0) output[line.slice(0, i).trim()] = line.slice(i + 1).trim();
        }
        rows.push({ handler: h.name, isolation: h.isolation, available: true, exitCode, seconds, output });
      }
      if (ctx.global.json) { writeJson(ctx.stdout, rows); }
      else {
        say('\nSummary (same image, same command, each sandbox):');
        ctx.stdout.write(table(['HANDLER', 'ISOLATION', 'RESULT', 'KERNEL SEEN', 'SECCOMP', 'MOUNT', 'TIME'], rows.map((r) => r.available
          ? [r.handler, r.isolation, r.exitCode === 0 ? 'ok' : `exit ${r.exitCode}`, r.output?.kernel ?? '?', r.output?.Seccomp ?? '?', r.output?.mount ?? '?', `${r.seconds!.toFixed(2)}s`]
          : [r.handler, r.isolation, 'unavailable', r.reason ?? '', '', '', ''])));
        say(`Host kernel: ${(await import('node:os')).release()}`);
      }
      const ran = rows.filter((r) => r.available);
      return ran.length > 0 && ran.every((r) => r.exitCode === 0) ? 0 : 1;
    });
  },
};
export default command;
