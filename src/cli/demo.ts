// `bulkhead demo`: the main job. A private daemon (its own root, socket and a demo trust policy)
// runs the same small workload in every sandbox this host offers, side by side — which kernel it
// saw, what its sandbox allowed, how long it took — and then shows the policy failing closed: an
// untrusted pod that asks for plain runc is moved into a sandbox, a privileged one is refused.
// Needs no registry: the image is built here from busybox-static and loaded.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { Command, CommandContext, GlobalOptions } from './command.ts';
import { ensureDaemon } from './daemon.ts';
import { runWith, type RunRequest } from './run.ts';
import { writeBusyboxArchive } from './demo-image.ts';
import { table, writeJson } from './format.ts';
import type { CriClient } from '../cri/client.ts';

export const DEMO_IMAGE = 'bulkhead.local/demo:latest';
const TRUSTED_NS = 'bulkhead-demo-trusted';
const UNTRUSTED_NS = 'bulkhead-demo';

const PROBE = [
  'echo "kernel: $(uname -r)"',
  'grep -E "^(CapEff|Seccomp|NoNewPrivs):" /proc/self/status | tr "\\t" " "',
  'if mount -t tmpfs none /mnt 2>/dev/null; then echo "mount: allowed"; else echo "mount: blocked"; fi',
  // a masked /proc/kcore is /dev/null bound over it (readable, and empty)
  'if [ -c /proc/kcore ]; then echo "kcore: masked"; elif cat /proc/kcore >/dev/null 2>&1; then echo "kcore: readable"; else echo "kcore: blocked"; fi',
  'echo "hello from $(hostname)"',
].join('; ');

/** The demo's own trust policy: one namespace is trusted (any handler), everything else is not. */
export const DEMO_POLICY = `# Written by 'bulkhead demo'. Pods in ${TRUSTED_NS} are trusted and may use any handler;
# everything else is untrusted: at least a user-space kernel, nothing privileged.
default_trust = "untrusted"

[levels.trusted]
min_isolation = "process"

[[rules]]
name = "demo trusted namespace"
trust = "trusted"
namespaces = ["${TRUSTED_NS}"]
`;

class Collect extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: string, cb: () => void): void { this.text += chunk.toString(); cb(); }
}

export interface DemoRun {
  namespace: string;
  requested: string;
  ranOn: string;
  exitCode: number;
  seconds: number;
  output: Record<string, string>;
  error?: string;
  /** The workload's whole stdout (only when asked for: `bulkhead report` parses it itself). */
  raw?: string;
}

function baseRequest(name: string, isolation: string, namespace: string, args: string[]): RunRequest {
  return {
    image: DEMO_IMAGE, args, name, isolation, namespace,
    detach: false, remove: true, interactive: false, tty: false, env: [], volumes: [], publish: [],
    network: 'none', readOnly: false, privileged: false, capAdd: [], capDrop: [], labels: ['io.bulkhead.demo=true'],
  };
}

/** `global` is the demo daemon's: the pod's log directory is chosen under its root, which that daemon allows. */
export async function demoRun(client: CriClient, ctx: CommandContext, global: GlobalOptions, req: RunRequest, keepRaw = false): Promise<DemoRun> {
  const out = new Collect();
  const err = new Collect();
  const sub: CommandContext = { ...ctx, global, stdout: out, stderr: err, flags: { quiet: true } };
  let ranOn = '';
  const t0 = performance.now();
  let exitCode: number;
  let error: string | undefined;
  try {
    exitCode = await runWith(client, req, sub, {
      onPod: async (podId) => { ranOn = (await client.podSandboxStatus(podId)).status.runtimeHandler; },
    });
  } catch (e) {
    exitCode = -1;
    error = (e as Error).message;
  }
  const output: Record<string, string> = {};
  for (const line of out.text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) output[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  if (err.text.trim() && !error && exitCode !== 0) error = err.text.trim();
  return { namespace: req.namespace ?? '', requested: req.isolation, ranOn, exitCode, seconds: (performance.now() - t0) / 1000, output, ...(error ? { error } : {}), ...(keepRaw ? { raw: out.text } : {}) };
}

/** Where the demo's private daemon lives, beside the default one. */
export function demoGlobal(global: GlobalOptions): GlobalOptions {
  const root = join(global.root, 'demo');
  const runDir = join(global.runDir, 'demo');
  return { ...global, root, runDir, socket: join(runDir, 'cri.sock'), config: join(root, 'config.toml') };
}

const command: Command = {
  name: 'demo',
  synopsis: 'bulkhead demo [--json] [--keep-daemon]',
  summary: 'Run the same workload in every sandbox this host offers, then show the trust policy failing closed',
  flags: { 'keep-daemon': { type: 'boolean' } },
  async run(ctx) {
    const say = (s: string): void => { if (!ctx.global.json) ctx.stdout.write(s + '\n'); };
    const g = demoGlobal(ctx.global);
    await mkdir(g.root, { recursive: true, mode: 0o700 });
    await writeFile(join(g.root, 'policy.toml'), DEMO_POLICY);
    // the microVM guest assets are the node's (scripts/setup.sh builds them under the main root)
    await writeFile(g.config, [
      "# Written by 'bulkhead demo': a private daemon for the demo.",
      `policy_file = ${JSON.stringify(join(g.root, 'policy.toml'))}`,
      '[runtime.handlers.microvm]',
      'backend = "microvm"',
      `runtime_args = ["--assets", ${JSON.stringify(ctx.global.root)}]`,
      '',
    ].join('\n'));
    say(`Starting a private Bulkhead daemon for the demo (root ${g.root}, socket ${g.socket})`);
    let { client } = await ensureDaemon(g, { signal: ctx.signal });
    let info = await client.info();
    // a daemon already on the demo's socket that was not started with the demo's config (a CLI call
    // with this root started one with the node's config) would judge every pod by another policy:
    // the demo's own daemon replaces it (the root and socket are the demo's private ones)
    if (info.config !== g.config) {
      say(`A daemon (pid ${info.pid}) already serves the demo's socket with another config (${info.config || 'none'}): stopping it and starting the demo's`);
      client.close();
      try { process.kill(info.pid, 'SIGTERM'); } catch { /* already gone */ }
      for (const until = Date.now() + 30_000; Date.now() < until && alive(info.pid);) await new Promise((r) => setTimeout(r, 100));
      if (alive(info.pid)) throw new Error(`the daemon (pid ${info.pid}) on ${g.socket} did not stop; stop it and run the demo again`);
      ({ client } = await ensureDaemon(g, { signal: ctx.signal }));
      info = await client.info();
    }
    let daemonPid = 0;
    try {
      daemonPid = info.pid;
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
      say('\nSandboxes (RuntimeClass handlers) on this host:');
      if (!ctx.global.json) ctx.stdout.write(table(['HANDLER', 'ISOLATION', 'WORKS', 'DETAILS'], info.handlers.map((h) => [
        h.name, h.isolation, h.available ? 'yes' : 'no',
        h.available ? Object.entries(h.details).map(([k, v]) => `${k}=${v}`).join(' ').slice(0, 100) : h.reason.slice(0, 140),
      ])));
      // a strict handler enforces what a training run (strict-learn) of the same command learned: train first
      const available = info.handlers.filter((h) => h.available).sort((a, b) => Number(b.backend === 'strict-learn') - Number(a.backend === 'strict-learn'));
      const runs: DemoRun[] = [];
      for (const h of available) {
        say(`\n=== ${h.name} (${h.isolation}), trusted pod: sh -c '<probe>' ===`);
        const r = await demoRun(client, ctx, g, baseRequest(`demo-${h.name}`, h.name, TRUSTED_NS, ['sh', '-c', PROBE]));
        runs.push(r);
        say(Object.entries(r.output).map(([k, v]) => `  ${k}: ${v}`).join('\n') + (r.error ? `\n  error: ${r.error}` : '') + `\n  exit ${r.exitCode} in ${r.seconds.toFixed(2)}s`);
      }
      say('\n=== the policy fails closed: untrusted pods ===');
      const moved = await demoRun(client, ctx, g, baseRequest('demo-untrusted-runc', 'runc', UNTRUSTED_NS, ['sh', '-c', 'echo "kernel: $(uname -r)"']));
      runs.push(moved);
      say(moved.exitCode === 0
        ? `  asked for runc, ran on ${moved.ranOn} (kernel ${moved.output.kernel ?? '?'}): moved into a sandbox by policy`
        : `  asked for runc: ${moved.error ?? `exit ${moved.exitCode}`}`);
      const priv = await demoRun(client, ctx, g, { ...baseRequest('demo-untrusted-priv', '', UNTRUSTED_NS, ['true']), privileged: true });
      runs.push(priv);
      say(priv.exitCode === 0 ? '  a privileged untrusted pod ran: THIS SHOULD NOT HAPPEN' : `  asked for privileged mode: refused — ${priv.error ?? `exit ${priv.exitCode}`}`);

      if (ctx.global.json) {
        writeJson(ctx.stdout, { handlers: info.handlers, runs, hostKernel: release() });
      } else {
        say('\nSummary (same image, same command):');
        ctx.stdout.write(table(['POD', 'ASKED FOR', 'RAN ON', 'RESULT', 'KERNEL SEEN', 'SECCOMP', 'MOUNT', 'TIME'], runs.map((r) => [
          r.namespace === TRUSTED_NS ? 'trusted' : 'untrusted', r.requested || '(default)', r.ranOn || '-',
          r.exitCode === 0 ? 'ok' : r.exitCode === -1 ? 'refused' : `exit ${r.exitCode}`,
          r.output.kernel ?? '', r.output.Seccomp ?? '', r.output.mount ?? '', `${r.seconds.toFixed(2)}s`,
        ])));
        say(`Host kernel: ${release()}`);
      }
      // each trusted pod ran, and on the handler it asked for (the demo's policy trusts its namespace)
      const sandboxOk = runs.slice(0, available.length).every((r) => r.exitCode === 0 && r.ranOn === r.requested);
      const policyOk = moved.exitCode === 0 && moved.ranOn !== 'runc' && priv.exitCode !== 0;
      return available.length > 0 && sandboxOk && policyOk ? 0 : 1;
    } finally {
      client.close();
      if (!ctx.flags['keep-daemon'] && daemonPid > 0) {
        try { process.kill(daemonPid, 'SIGTERM'); } catch { /* already gone */ }
      }
    }
  },
};
export default command;

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}
