/**
 * `bulkhead report --peers`: the same probe and start timing under podman (runc, and runsc on the
 * ptrace platform through a wrapper), where podman is installed. podman gets its own storage and
 * run root in a temporary directory (removed afterwards) and a busybox rootfs made here; its
 * containers have no network (`--network none`: podman's own bridge would change the host's
 * network), so the reachability rows stay empty for peers.
 */
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../util/exec.ts';
import { parseProbe, type ProbeReport } from './report-probe.ts';

export interface PeerReport {
  handler: string;
  isolation: string;
  available: boolean;
  reason?: string;
  probe?: ProbeReport;
  probeError?: string;
  /** Seconds of each `run --rm IMAGE true`. */
  startSeconds: number[];
}

export interface PeerOptions {
  script: string;
  env: string[];
  runs: number;
  progress: (s: string) => void;
  busybox?: string;
}

async function which(cmd: string): Promise<string | undefined> {
  const r = await run('sh', ['-c', `command -v ${cmd}`], { timeoutMs: 5_000 }).catch(() => undefined);
  const p = r?.stdout.trim();
  return r?.code === 0 && p ? p : undefined;
}

/** A busybox rootfs: /bin/busybox, a link per applet, the directories a runtime mounts over. */
async function busyboxRootfs(dir: string, busybox: string): Promise<void> {
  for (const d of ['bin', 'proc', 'sys', 'dev', 'tmp', 'mnt', 'etc', 'run']) await mkdir(join(dir, d), { recursive: true });
  await copyFile(busybox, join(dir, 'bin', 'busybox'));
  await chmod(join(dir, 'bin', 'busybox'), 0o755);
  const list = await run(busybox, ['--list'], { timeoutMs: 10_000 });
  for (const a of list.stdout.split('\n').map((s) => s.trim()).filter((s) => /^[a-z0-9_.[-]+$/i.test(s) && s !== 'busybox')) {
    await symlink('busybox', join(dir, 'bin', a)).catch(() => {});
  }
}

/** podman/runc and podman/runsc: probe once, then `true` `runs` times each; [] when podman is not installed. */
export async function runPeers(o: PeerOptions): Promise<PeerReport[]> {
  const podman = await which('podman');
  if (!podman) { o.progress('peers: podman is not installed; no peers'); return []; }
  const work = await mkdtemp(join(tmpdir(), 'bulkhead-report-peers-'));
  const pm = ['--root', join(work, 'root'), '--runroot', join(work, 'runroot'), '--cgroup-manager', 'cgroupfs', '--events-backend', 'none'];
  const out: PeerReport[] = [];
  try {
    const rootfs = join(work, 'rootfs');
    await busyboxRootfs(rootfs, o.busybox ?? '/bin/busybox');
    const runtimes: [name: string, isolation: string, runtime: string | undefined][] = [['podman/runc', 'process', await which('runc')]];
    const runsc = await which('runsc');
    if (runsc) {
      const wrapper = join(work, 'runsc-podman');
      await writeFile(wrapper, `#!/bin/sh\nexec ${runsc} --platform=ptrace --network=host "$@"\n`);
      await chmod(wrapper, 0o755);
      runtimes.push(['podman/runsc', 'user-kernel', wrapper]);
    } else {
      runtimes.push(['podman/runsc', 'user-kernel', undefined]);
    }
    for (const [name, isolation, runtime] of runtimes) {
      const pr: PeerReport = { handler: name, isolation, available: runtime !== undefined, startSeconds: [] };
      out.push(pr);
      if (!runtime) { pr.reason = 'not installed'; continue; }
      // this host cannot raise rlimits (no CAP_SYS_RESOURCE): podman's defaults would be refused
      const base = [...pm, 'run', '--rm', '--network', 'none', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--runtime', runtime];
      o.progress(`${name}: probe`);
      const r = await run(podman, [...base, ...o.env.flatMap((e) => ['-e', e]), '--rootfs', rootfs, 'sh', '-c', o.script], { timeoutMs: 180_000 });
      if (r.code === 0) pr.probe = parseProbe(r.stdout);
      else pr.probeError = `podman exit ${r.code}: ${r.stderr.trim().split('\n').at(-1)?.slice(0, 300) ?? ''}`;
      for (let i = 0; i < o.runs; i++) {
        o.progress(`${name}: start ${i + 1}/${o.runs}`);
        const t0 = performance.now();
        const t = await run(podman, [...base, '--rootfs', rootfs, 'true'], { timeoutMs: 120_000 });
        if (t.code === 0) pr.startSeconds.push((performance.now() - t0) / 1000);
      }
    }
  } finally {
    // --rm unmounts each container's layers; whatever podman left mounted under the work dir goes before it
    const mounts = (await readFile('/proc/self/mountinfo', 'utf8').catch(() => '')).split('\n').map((l) => l.split(' ')[4] ?? '')
      .filter((m) => m.startsWith(work + '/')).sort((a, b) => b.length - a.length);
    for (const m of mounts) await run('umount', ['-l', m], { timeoutMs: 10_000 }).catch(() => undefined);
    await rm(work, { recursive: true, force: true }).catch(() => {});
  }
  return out;
}
