// `bulkhead doctor`: what this host offers and lacks — host checks done here, then each runtime
// handler's own probe as the daemon reports it — with exactly what to install or change.
import { access, readFile, constants } from 'node:fs/promises';
import { cgroupLayout, describeLayout } from '../cgroup/hierarchy.ts';
import type { Command } from './command.ts';
import { ensureDaemon } from './daemon.ts';
import { run } from '../util/exec.ts';
import { kataReadiness, kindTools } from '../runtime/backends.ts';
import { table, writeJson } from './format.ts';
import type { HandlerInfo } from '../api/cri-messages.ts';
import { findOnPath } from '../util/which.ts';

export interface Check { name: string; ok: boolean; detail: string; fix?: string }

async function which(bin: string): Promise<string | undefined> {
  return findOnPath(bin);
}

async function version(bin: string, args: string[] = ['--version']): Promise<string> {
  try {
    const r = await run(bin, args, { timeoutMs: 10_000 });
    return (r.stdout || r.stderr).split('\n')[0]?.trim() ?? '';
  } catch { return ''; }
}

export async function hostChecks(): Promise<Check[]> {
  const checks: Check[] = [];
  const major = Number(process.versions.node.split('.')[0]);
  checks.push({ name: 'node', ok: major >= 24, detail: `Node.js ${process.version}`, ...(major < 24 ? { fix: 'run scripts/setup.sh (installs Node.js 24 into /opt/bulkhead/node)' } : {}) });
  checks.push({ name: 'root', ok: process.getuid?.() === 0, detail: `uid ${process.getuid?.()}`, ...(process.getuid?.() !== 0 ? { fix: 'run Bulkhead as root: it creates namespaces, cgroups and mounts' } : {}) });
  const bins: [string, string, string][] = [
    ['conmon', 'conmon', 'apt-get install conmon'],
    // each backend kind's own program (the registry, runtime/backends.ts)
    ...kindTools().map((t): [string, string, string] => [t.name, t.bin, t.install]),
    ['ip', 'ip', 'apt-get install iproute2'],
    ['nft', 'nft', 'apt-get install nftables'],
    ['mkfs.ext4', 'mkfs.ext4', 'apt-get install e2fsprogs'],
    // microVM root images: erofs where installed (a fraction of ext4's mount work in the guest), else ext4
    ['mkfs.erofs', 'mkfs.erofs', 'apt-get install erofs-utils, then bin/bulkhead-vm setup (without it microVM container roots are ext4 images: a slower first mount in each VM)'],
    // builds bulkhead-pinns (pod namespaces without a pause container) and the microVM guest agent
    ['gcc', 'gcc', 'apt-get install gcc libc6-dev (without it runc pods each keep a pause container, and microVM guest assets cannot be built)'],
  ];
  for (const [name, bin, fix] of bins) {
    const p = await which(bin);
    // Debian 12's mkfs.erofs prints no version, only its usage
    checks.push(p ? { name, ok: true, detail: bin === 'mkfs.erofs' ? p : `${p} ${await version(bin, ['ip', 'nft', 'mkfs.ext4'].includes(bin) ? ['-V'] : ['--version'])}`.trim() } : { name, ok: false, detail: 'not found', fix });
  }
  const kata = kataReadiness();
  checks.push(kata.length === 0
    ? { name: 'kata', ok: true, detail: 'containerd-shim-kata-v2, a usable /dev/kvm and a Kata configuration are present (handler backend = "kata")' }
    : { name: 'kata', ok: false, detail: `the optional kata handler cannot run: missing ${kata.join('; ')}`, fix: 'install Kata Containers on a host with KVM, see docs/kata.md' });
  try {
    await access('/usr/lib/cni/bridge', constants.X_OK);
    checks.push({ name: 'cni plugins', ok: true, detail: '/usr/lib/cni (bridge, host-local, portmap, ...)' });
  } catch {
    checks.push({ name: 'cni plugins', ok: false, detail: 'no /usr/lib/cni/bridge', fix: 'apt-get install containernetworking-plugins' });
  }
  const layout = cgroupLayout();
  const cg = describeLayout();
  checks.push({
    name: 'cgroups', ok: layout !== 'none',
    detail: cg + (layout === 'v1-hybrid' ? ' — crun refuses this; runc and runsc work' : ''),
    ...(layout === 'none' ? { fix: 'mount the cgroup filesystems (cgroup2 on /sys/fs/cgroup, or the v1 controller hierarchies under it)' } : {}),
  });
  const fs = await readFile('/proc/filesystems', 'utf8').catch(() => '');
  checks.push({ name: 'overlayfs', ok: /\boverlay\b/.test(fs), detail: /\boverlay\b/.test(fs) ? 'available' : 'not in /proc/filesystems', ...(/\boverlay\b/.test(fs) ? {} : { fix: 'modprobe overlay' }) });
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
    checks.push({ name: '/dev/kvm', ok: true, detail: 'present (the microvm handler tests whether guests really run under it; see its probe)' });
  } catch {
    checks.push({ name: '/dev/kvm', ok: false, detail: 'absent: microVMs run under TCG (software emulation), slower', fix: 'enable virtualization (or nested virtualization) for this machine' });
  }
  return checks;
}

const command: Command = {
  name: 'doctor',
  synopsis: 'bulkhead doctor [--json]',
  summary: 'Check which sandboxes work on this host and what to install or change',
  flags: {},
  async run(ctx) {
    const checks = await hostChecks();
    let handlers: HandlerInfo[] = [];
    let daemonError = '';
    try {
      const { client, started } = await ensureDaemon(ctx.global, { signal: ctx.signal });
      if (started && !ctx.global.json) ctx.stderr.write(`bulkhead: started a Bulkhead daemon in the background (pid ${started.pid}, log ${started.log})\n`);
      // each handler probed now (not the daemon's cached answer: the host may just have been fixed)
      try { handlers = (await client.info(undefined, { reprobe: true })).handlers; } finally { client.close(); }
    } catch (err) {
      daemonError = err instanceof Error ? err.message : String(err);
    }
    if (ctx.global.json) {
      writeJson(ctx.stdout, { host: checks, handlers, ...(daemonError ? { daemonError } : {}) });
      return handlers.some((h) => h.available) ? 0 : 1;
    }
    ctx.stdout.write('Host\n');
    ctx.stdout.write(table(['CHECK', 'OK', 'DETAIL'], checks.map((c) => [c.name, c.ok ? 'yes' : 'NO', c.detail + (c.fix ? `  → fix: ${c.fix}` : '')])));
    ctx.stdout.write('\nSandboxes (RuntimeClass handlers)\n');
    if (daemonError) {
      ctx.stdout.write(`  cannot ask the daemon: ${daemonError}\n  → check the log under ${ctx.global.root}/daemon.log, or run 'bulkhead daemon' in the foreground\n`);
      return 1;
    }
    ctx.stdout.write(table(['HANDLER', 'ISOLATION', 'WORKS', 'DETAILS'], handlers.map((h) => [
      h.name + (h.isDefault ? ' (default)' : ''),
      h.isolation,
      h.available ? 'yes' : 'NO',
      h.available ? Object.entries(h.details).map(([k, v]) => `${k}=${v}`).join(' ') : `${h.reason}`,
    ])));
    return handlers.some((h) => h.available) ? 0 : 1;
  },
};
export default command;
