// Pod network benchmark: Bulkhead's CniPodNetwork against podman's default bridge network
// (netavark). One run; prints figures side by side with ratios. Needs root, iperf3, podman.
//
//   node bench/net.ts [iterations=5] [iperf-seconds=5]
//
// Bulkhead: time of setup()+teardown() of one bridge pod; iperf3 TCP between two pods (the
// host's iperf3 run in the pod netns with nsenter). Podman: `podman run --rm --rootfs DIR` with
// --network bridge minus the same with --network none (so only the network part is counted);
// iperf3 between two containers on podman's bridge. podman switches on net.ipv4.ip_forward; the
// previous value is restored at the end.
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CniPodNetwork } from '../src/network/cni-pod-network.ts';
import type { PodNetworkRequest } from '../src/network/pod-network.ts';
import { run } from '../src/util/exec.ts';
import { silentLogger } from '../src/util/log.ts';

const iterations = Number(process.argv[2] ?? 5);
const seconds = Number(process.argv[3] ?? 5);
const tag = randomBytes(3).toString('hex');
const sig = (): AbortSignal => AbortSignal.timeout(120_000);
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? NaN; };
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

async function must(cmd: string, args: string[], timeoutMs = 120_000): Promise<string> {
  const r = await run(cmd, args, { timeoutMs });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

/** iperf3 client with retries until the server listens; returns Gbit/s received. */
async function iperfClient(prefix: string[], server: string): Promise<number> {
  let last = '';
  for (let i = 0; i < 40; i++) {
    const r = await run(prefix[0]!, [...prefix.slice(1), 'iperf3', '-c', server, '-t', String(seconds), '-J'], { timeoutMs: (seconds + 30) * 1000 });
    if (r.code === 0) {
      const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
      return j.end.sum_received.bits_per_second / 1e9;
    }
    last = r.stdout.slice(0, 500) + r.stderr.slice(0, 500);
    await new Promise((res) => setTimeout(res, 250));
  }
  throw new Error(`iperf3 client could not reach ${server}: ${last}`);
}

const pod = (id: string): PodNetworkRequest => ({ id, name: id, namespace: 'bench', uid: id, portMappings: [], trust: 'untrusted', egressGuard: true, mode: 'bridge' });

async function benchBulkhead(): Promise<{ setupMs: number; gbps: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'bh-netbench-'));
  const net = await CniPodNetwork.create({ cni: { confDir: join(dir, 'net.d'), binDirs: ['/usr/lib/cni'], cacheDir: join(dir, 'cache') }, logger: silentLogger }, sig());
  try {
    // warm-up creates the bridge and guard tables, as a running node would have them
    await net.setup(pod(`bw${tag}`), sig());
    const times: number[] = [];
    for (let i = 0; i < iterations; i++) {
      const t0 = process.hrtime.bigint();
      await net.setup(pod(`bi${tag}${i}`), sig());
      await net.teardown(`bi${tag}${i}`, sig());
      times.push(ms(t0));
    }
    const a = await net.setup(pod(`ba${tag}`), sig());
    const b = await net.setup(pod(`bb${tag}`), sig());
    const server = spawn('nsenter', [`--net=${a.netnsPath}`, '--', 'iperf3', '-s'], { stdio: 'ignore' });
    try {
      const gbps = await iperfClient(['nsenter', `--net=${b.netnsPath}`, '--'], a.ips[0]!);
      return { setupMs: median(times), gbps };
    } finally {
      server.kill('SIGKILL');
    }
  } finally {
    for (const id of await net.list()) await net.teardown(id, sig());
    await net.close(sig());
    await rm(dir, { recursive: true, force: true });
  }
}

/** A tiny rootfs: busybox and iperf3 with the libraries ldd names. */
async function makeRootfs(dir: string): Promise<void> {
  await mkdir(join(dir, 'bin'), { recursive: true });
  await mkdir(join(dir, 'etc'), { recursive: true });
  await mkdir(join(dir, 'tmp'), { recursive: true, mode: 0o1777 }); // iperf3 makes its buffers there
  await copyFile('/bin/busybox', join(dir, 'bin', 'busybox'));
  await copyFile('/usr/bin/iperf3', join(dir, 'bin', 'iperf3'));
  const libs = (await must('ldd', ['/usr/bin/iperf3'])).match(/\/\S+/g) ?? [];
  for (const l of libs) {
    await mkdir(join(dir, dirname(l)), { recursive: true });
    await copyFile(l, join(dir, l)); // keeps the mode: the loader must stay executable
  }
  for (const f of ['hosts', 'resolv.conf']) await writeFile(join(dir, 'etc', f), '');
  await writeFile(join(dir, 'etc', 'passwd'), 'root:x:0:0::/:/bin/sh\n');
  await must('chmod', ['755', join(dir, 'bin', 'busybox'), join(dir, 'bin', 'iperf3')]);
}

async function benchPodman(): Promise<{ bridgeMs: number; noneMs: number; gbps: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'bh-netbench-podman-'));
  const rootfs = join(dir, 'rootfs');
  await makeRootfs(rootfs);
  // Debian's podman here: cgroupfs (no systemd), runc (crun refuses the v1 hybrid), and low
  // rlimits (no CAP_SYS_RESOURCE to raise them to podman's defaults).
  const P = ['--cgroup-manager=cgroupfs', '--events-backend=file', '--runtime', 'runc', '--root', join(dir, 'storage'), '--runroot', join(dir, 'run')];
  const R = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--rootfs', rootfs];
  const srv = `bh-netbench-${tag}`;
  try {
    const timeRun = async (netMode: string): Promise<number> => {
      const t0 = process.hrtime.bigint();
      await must('podman', [...P, 'run', '--rm', '--network', netMode, ...R, '/bin/busybox', 'true']);
      return ms(t0);
    };
    await timeRun('bridge'); // warm-up (creates podman0)
    const bridge: number[] = [];
    const none: number[] = [];
    for (let i = 0; i < iterations; i++) { bridge.push(await timeRun('bridge')); none.push(await timeRun('none')); }
    await must('podman', [...P, 'run', '-d', '--name', srv, '--network', 'bridge', ...R, '/bin/iperf3', '-s']);
    const ip = (await must('podman', [...P, 'inspect', '-f', '{{.NetworkSettings.IPAddress}}', srv])).trim();
    if (!ip) throw new Error(`podman iperf3 server has no IP: ${(await run('podman', [...P, 'logs', srv])).stdout}${await must('podman', [...P, 'ps', '-a'])}`);
    const gbps = await iperfClient(['podman', ...P, 'run', '--rm', '--network', 'bridge', ...R], ip);
    return { bridgeMs: median(bridge), noneMs: median(none), gbps };
  } finally {
    await run('podman', [...P, 'rm', '-f', srv], { timeoutMs: 60_000 });
    await rm(dir, { recursive: true, force: true });
  }
}

const fwdBefore = (await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim();
let bh: Awaited<ReturnType<typeof benchBulkhead>>;
let pm: Awaited<ReturnType<typeof benchPodman>>;
try {
  bh = await benchBulkhead();
  pm = await benchPodman();
} finally {
  await writeFile('/proc/sys/net/ipv4/ip_forward', fwdBefore);
}
const pmNet = pm.bridgeMs - pm.noneMs;
const f = (x: number, d = 1): string => x.toFixed(d).padStart(9);
console.log(`pod network benchmark (${iterations} iterations, median; iperf3 ${seconds} s, one stream)`);
console.log(`                                 bulkhead     podman   bulkhead/podman`);
console.log(`setup+teardown, ms            ${f(bh.setupMs)}  ${f(pmNet)}   ${f(bh.setupMs / pmNet, 2)}   (podman: run --network bridge ${pm.bridgeMs.toFixed(1)} ms - none ${pm.noneMs.toFixed(1)} ms)`);
console.log(`TCP pod-to-pod, Gbit/s        ${f(bh.gbps, 2)}  ${f(pm.gbps, 2)}   ${f(bh.gbps / pm.gbps, 2)}`);
