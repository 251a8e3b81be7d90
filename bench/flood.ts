// RunPodSandbox flood, Bulkhead side by side with containerd 1.6 (its CRI plugin, runc), in ONE
// run: N concurrent RunPodSandbox calls (host-network pods, from a separate client process, as
// the kubelet's) while this process calls Version every 50 ms. Prints pods/s (all N made, no
// deadline), Version p50/p99/max during the flood, and the ratios Bulkhead/containerd.
//
//   node bench/flood.ts [--pods 200] [--skip containerd]
//
// containerd runs on a private root, state dir and socket under a temp dir (its CRI stream server
// on 127.0.0.1), its pause image served by a local registry on 127.0.0.1 (built from the host's
// static busybox, like Bulkhead's pause rootfs); it is killed, and everything it made removed,
// at the end. Needs root, runc, containerd (Debian's `containerd` package) and busybox-static.
// Bounded: every wait has a deadline; the whole bench gives up after --limit-min minutes.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connect, type CriClient } from '../src/cri/client.ts';
import { socketAnswers } from '../src/util/socket.ts';
import { findStaticBusybox } from '../src/runtime/pause.ts';
import { run } from '../src/util/exec.ts';
import { startTestDaemon } from '../harness/daemon.ts';
import { floodPodConfig, runFlood, type FloodResult } from '../harness/flood.ts';
import { buildLayer } from '../harness/images.ts';
import { pushImage } from '../harness/images.ts';
import { startRegistry } from '../harness/registry.ts';

const { values: args } = parseArgs({ options: { pods: { type: 'string', default: '200' }, skip: { type: 'string', default: '' }, 'limit-min': { type: 'string', default: '30' } } });
const PODS = Number(args.pods);
const skip = new Set(args.skip.split(',').filter(Boolean));
setTimeout(() => { console.error(`bench/flood: gave up after ${args['limit-min']} min`); process.exit(2); }, Number(args['limit-min']) * 60_000).unref();

interface Figures { podsPerSec: number; made: number; floodMs: number; versionP50: number; versionP99: number; versionMax: number; samples: number; codes: Record<string, number> }

const pct = (xs: number[], p: number): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? NaN; };

/** Warm-up pod, then the flood from a child process while Version is sampled; then everything removed. */
async function measure(name: string, client: CriClient, socket: string, logDir: string): Promise<Figures> {
  const warm = floodPodConfig(`warm-${randomUUID().slice(0, 6)}`, 0, logDir);
  const w = await client.runPodSandbox(warm, '', { timeoutMs: 300_000 });
  await client.stopPodSandbox(w);
  await client.removePodSandbox(w);
  const ns = `flood-${randomUUID().slice(0, 8)}`;
  let stop = false;
  const lat: number[] = [];
  const sampler = (async () => {
    while (!stop) {
      const t = performance.now();
      await client.version({ timeoutMs: 60_000 });
      lat.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  let r: FloodResult;
  try {
    r = await runFlood(socket, PODS, 20 * 60_000, ns, logDir);
  } finally {
    stop = true;
    await sampler;
  }
  const mine = (await client.listPodSandbox({}, { timeoutMs: 120_000 })).filter((p) => p.metadata?.namespace === ns);
  const removeAll = async (): Promise<void> => {
    const queue = [...mine];
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let p = queue.shift(); p; p = queue.shift()) {
        await client.stopPodSandbox(p.id, { timeoutMs: 120_000 });
        await client.removePodSandbox(p.id, { timeoutMs: 120_000 });
      }
    }));
  };
  await removeAll();
  const f: Figures = {
    podsPerSec: r.made / (r.ms / 1000), made: r.made, floodMs: r.ms,
    versionP50: pct(lat, 0.5), versionP99: pct(lat, 0.99), versionMax: pct(lat, 1), samples: lat.length, codes: r.codes,
  };
  console.log(`${name.padEnd(10)} ${r.made}/${PODS} pods in ${r.ms} ms = ${f.podsPerSec.toFixed(1)} pods/s; Version during flood p50 ${f.versionP50.toFixed(1)} ms, p99 ${f.versionP99.toFixed(1)} ms, max ${f.versionMax.toFixed(1)} ms (${f.samples} calls)${Object.keys(r.codes).length ? `; failed ${JSON.stringify(r.codes)}` : ''}`);
  return f;
}

async function benchBulkhead(): Promise<Figures> {
  const d = await startTestDaemon({ name: 'bulkhead-flood-bench-', handlers: { runc: { backend: 'runc' } }, logLevel: 'info' });
  try {
    return await measure('bulkhead', d.client, d.socket, join(d.base, 'logs'));
  } finally {
    await d.close();
  }
}

async function waitExit(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => { const t = setTimeout(resolve, ms); child.once('exit', () => { clearTimeout(t); resolve(); }); });
}

async function benchContainerd(): Promise<Figures> {
  const which = await run('sh', ['-c', 'command -v containerd containerd-shim-runc-v2'], { timeoutMs: 5000 });
  if (which.code !== 0) throw new Error('containerd or containerd-shim-runc-v2 not found (apt-get install containerd)');
  const reg = await startRegistry();
  const base = await mkdtemp(join(tmpdir(), 'bh-flood-ctrd-'));
  let child: ChildProcess | undefined;
  let client: CriClient | undefined;
  try {
    // pause image: the static busybox sleeping, as Bulkhead's pause
    const busybox = await readFile(await findStaticBusybox());
    const pause = await pushImage(reg, 'bench/pause', 'flood', {
      layers: [buildLayer([{ type: 'dir', path: 'bin', mode: 0o755 }, { type: 'file', path: 'bin/busybox', mode: 0o755, content: busybox }])],
      config: { Entrypoint: ['/bin/busybox', 'sleep', '2147483647'], Cmd: [] },
    });
    const sock = join(base, 'containerd.sock');
    await mkdir(join(base, 'certs.d', reg.host), { recursive: true });
    await writeFile(join(base, 'certs.d', reg.host, 'hosts.toml'), `server = "${reg.url}"\n[host."${reg.url}"]\n  capabilities = ["pull", "resolve"]\n`);
    await writeFile(join(base, 'config.toml'), [
      'version = 2', `root = "${base}/root"`, `state = "${base}/state"`,
      'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]',
      '[grpc]', `  address = "${sock}"`, '[ttrpc]', `  address = "${sock}.ttrpc"`, '[debug]', '  address = ""', '  level = "warn"', '[metrics]', '  address = ""',
      '[plugins."io.containerd.internal.v1.opt"]', `  path = "${base}/opt"`,
      '[plugins."io.containerd.grpc.v1.cri"]', `  sandbox_image = "${pause.ref}"`, '  stream_server_address = "127.0.0.1"', '  stream_server_port = "0"',
      '  enable_selinux = false', '  restrict_oom_score_adj = true',
      '  [plugins."io.containerd.grpc.v1.cri".containerd]', '    snapshotter = "overlayfs"', '    default_runtime_name = "runc"',
      '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]', '      runtime_type = "io.containerd.runc.v2"',
      '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]', '        BinaryName = "/usr/sbin/runc"', `        Root = "${base}/state/runc"`, '        SystemdCgroup = false',
      '  [plugins."io.containerd.grpc.v1.cri".cni]', `    bin_dir = "/usr/lib/cni"`, `    conf_dir = "${base}/net.d"`,
      '  [plugins."io.containerd.grpc.v1.cri".registry]', `    config_path = "${base}/certs.d"`,
    ].join('\n') + '\n');
    const log = await open(join(base, 'containerd.log'), 'a');
    child = spawn('containerd', ['--config', join(base, 'config.toml')], { stdio: ['ignore', log.fd, log.fd] });
    await log.close();
    const deadline = Date.now() + 60_000;
    while (!(await socketAnswers(sock, 500))) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`containerd did not start; log:\n${(await readFile(join(base, 'containerd.log'), 'utf8')).slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    client = await connect(sock);
    return await measure('containerd', client, sock, join(base, 'logs'));
  } finally {
    // whatever is left (a failed run) goes through containerd itself, so its shims exit
    for (const p of await client?.listPodSandbox({}, { timeoutMs: 60_000 }).catch(() => []) ?? []) {
      await client?.stopPodSandbox(p.id, { timeoutMs: 60_000 }).catch(() => {});
      await client?.removePodSandbox(p.id, { timeoutMs: 60_000 }).catch(() => {});
    }
    client?.close();
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await waitExit(child, 15_000);
      if (child.exitCode === null && child.signalCode === null) { child.kill('SIGKILL'); await waitExit(child, 5000); }
    }
    // containerd's overlay snapshots stay mounted only while containers exist; unmount leftovers
    const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p.startsWith(base)).sort((a, b) => b.length - a.length);
    for (const m of mounts) await run('umount', ['-l', m], { timeoutMs: 10_000 });
    await rm(base, { recursive: true, force: true });
    await reg.close();
  }
}

const b = skip.has('bulkhead') ? undefined : await benchBulkhead();
let c: Figures | undefined;
if (!skip.has('containerd')) {
  try { c = await benchContainerd(); } catch (err) { console.log(`containerd  not measured: ${err instanceof Error ? err.message : String(err)}`); }
}
if (b && c) {
  console.log(`ratio bulkhead/containerd: pods/s ${(b.podsPerSec / c.podsPerSec).toFixed(2)}x; Version p99 during the flood ${(b.versionP99 / c.versionP99).toFixed(2)}x (max ${(b.versionMax / c.versionMax).toFixed(2)}x)`);
}
