/**
 * Shared setup for the engine's integration tests: a real registry (fixture) with busybox images,
 * pulled through image/'s real ImageService (which the Engine takes as it is), real runc/runsc
 * backends under conmon, and an Engine over temp dirs.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, rmdir, readFile, readdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { run } from '../../src/util/exec.ts';
import { silentLogger, createLogger, type Logger } from '../../src/util/log.ts';
import { createBackend } from '../../src/runtime/backends.ts';
import type { Backend } from '../../src/runtime/backend.ts';
import { Engine, type EngineImages, type EngineOptions } from '../../src/engine/engine.ts';
import { createImageService, type ImageService } from '../../src/image/image-service.ts';
import { sharedRegistry, type TestRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages, busyboxLayers, pushImage, type ImageConfigInput } from '../../harness/images.ts';
import type * as cri from '../../src/api/cri.ts';

/** Opens the image service over `dir` (also used by the crash child on the same dir). */
export async function openImages(dir: string, logger: Logger = silentLogger): Promise<ImageService> {
  return await createImageService({ root: dir, registries: { mirrors: {}, insecure: [] }, logger });
}

/** Active (per-container) snapshots the image service holds under `imagesDir`. */
export async function activeSnapshots(imagesDir: string): Promise<string[]> {
  try { return await readdir(join(imagesDir, 'snapshots', 'active')); } catch { return []; }
}

// The engine's seam must be satisfied by the real service with no adapter: checked by tsc here.
const _seam: (s: ImageService) => EngineImages = (s) => s;
void _seam;

/** Backends for `handlers` over `runDir` (same construction in the crash child). */
export function makeBackends(handlers: string[], runDir: string, logger: Logger): Map<string, Backend> {
  const m = new Map<string, Backend>();
  for (const h of handlers) {
    // conmon wants an absolute runtime path
    const binary = h === 'gvisor' ? '/usr/bin/runsc' : h === 'runc' ? '/usr/sbin/runc' : undefined;
    const b = createBackend(h, { runDir: join(runDir, h), logger, ...(binary ? { binary } : {}), ...(h === 'gvisor' ? { runtimeArgs: ['--platform=ptrace'] } : {}) });
    if (!b) throw new Error(`no backend ${h}`);
    m.set(h, b);
  }
  return m;
}

export interface TestEnv {
  dir: string;
  root: string;
  runDir: string;
  images: ImageService;
  /** Root of the image service (content, snapshots, image db). */
  imagesDir: string;
  registry: TestRegistry;
  busybox: string;
  /** An image whose StopSignal is SIGUSR1 (to see the engine use it). */
  usr1: string;
  logger: Logger;
  backends(): Map<string, Backend>;
  engine(extra?: Partial<EngineOptions>): Promise<Engine>;
  cleanup(): Promise<void>;
}

/** One temp tree per test file; `engine()` builds Engines over it (several = restarts). */
export async function testEnv(handlers: string[] = ['runc']): Promise<TestEnv> {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-engine-'));
  const root = join(dir, 'root');
  const runDir = join(dir, 'run');
  const imagesDir = join(dir, 'images');
  const registry = await sharedRegistry();
  const pushed = await buildAndPushTestImages(registry);
  const usr1Ref = (await pushImage(registry, 'test/engine-usr1', 'latest', { layers: busyboxLayers('gzip'), config: { StopSignal: 'SIGUSR1', Cmd: ['sh'] } as ImageConfigInput })).ref;
  const logger = process.env.BULKHEAD_TEST_LOG ? createLogger({ level: 'debug' }) : silentLogger;
  const images = await openImages(imagesDir, logger);
  await images.pull(pushed.busybox);
  await images.pull(usr1Ref);
  const engines: Engine[] = [];
  const backends = (): Map<string, Backend> => makeBackends(handlers, runDir, logger);
  return {
    dir, root, runDir, images, imagesDir, registry, busybox: pushed.busybox, usr1: usr1Ref, logger, backends,
    async engine(extra = {}) {
      const e = new Engine({
        root, runDir, logger, images, backends: backends(), defaultHandler: handlers[0]!,
        // leaks.test.ts plays the kubelet with its own cgroup parent outside /bulkhead and /kubepods
        cgroupParent: `/bulkhead-test-${process.pid}`, cgroupRoots: ['/'], sweepIntervalMs: 500, ...extra,
      });
      await e.recover();
      engines.push(e);
      return e;
    },
    async cleanup() {
      for (const e of engines) {
        try {
          for (const p of e.listPodSandbox()) await e.removePodSandbox(p.id);
        } catch { /* closed already */ }
        await e.close().catch(() => undefined);
      }
      await images.close().catch(() => undefined);
      await hardCleanup(runDir, handlers, root);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

let seq = 0;
/** A pod config with a unique name. */
export function podConfig(over: Partial<cri.PodSandboxConfig> = {}): cri.PodSandboxConfig {
  seq++;
  const name = `pod-${process.pid}-${seq}`;
  return { metadata: { name, namespace: 'test', uid: `uid-${name}`, attempt: 0 }, hostname: `h${seq}`, labels: { app: 'engine-test' }, ...over };
}

export function containerConfig(image: string, name: string, command: string[], over: Partial<cri.ContainerConfig> = {}): cri.ContainerConfig {
  return { metadata: { name, attempt: 0 }, image: { image }, command, ...over };
}

/** Polls `fn` until it returns a truthy value (or throws after `ms`). */
export async function waitFor<T>(fn: () => Promise<T | undefined | null | false> | T | undefined | null | false, ms = 20_000, what = 'condition'): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Mount points under `dir` (from /proc/self/mountinfo). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text.split('\n').map((l) => l.split(' ')[4] ?? '').filter((mp) => mp === dir || mp.startsWith(dir + '/'));
}

/** Netns names in /run/netns made for this pod id by the loopback network. */
export async function netnsOf(podId: string): Promise<string[]> {
  try { return (await readdir('/run/netns')).filter((n) => n.startsWith(`bulkhead-${podId.slice(0, 16)}-`)); } catch { return []; }
}

/** Pids of conmon processes whose command line mentions `needle`. */
export async function conmonsWith(needle: string): Promise<number[]> {
  const out: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = (await readFile(`/proc/${p}/cmdline`, 'utf8')).split('\0');
      if (cmd[0]?.endsWith('conmon') && cmd.join(' ').includes(needle)) out.push(Number(p));
    } catch { /* gone */ }
  }
  return out;
}

export { existsSync };

/** Pids of processes (conmon, runsc-sandbox, runsc-gofer, runc init, ...) whose command line mentions `needle`. */
export async function procsWith(needle: string): Promise<{ pid: number; cmd: string }[]> {
  const out: { pid: number; cmd: string }[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const cmd = (await readFile(`/proc/${p}/cmdline`, 'utf8')).split('\0').join(' ').trim();
      if (cmd.includes(needle)) out.push({ pid: Number(p), cmd });
    } catch { /* gone */ }
  }
  return out;
}

/** Cgroup dirs (relative to each hierarchy) under `parent`, in every hierarchy. */
export async function cgroupDirsUnder(parent: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    let entries: import('node:fs').Dirent[];
    try { entries = await readdir(dir, { withFileTypes: true }); } catch { return; }
    for (const e of entries) if (e.isDirectory()) { out.push(`${rel}/${e.name}`); await walk(join(dir, e.name), `${rel}/${e.name}`); }
  };
  for (const h of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    const d = join('/sys/fs/cgroup', h, parent);
    if (existsSync(d)) { out.push(`${h}:${parent}`); await walk(d, `${h}:${parent}`); }
  }
  return out;
}

/**
 * Last-resort teardown after a test file, whatever state it failed in: runtime containers
 * (runsc sandboxes, runc), conmon and runtime processes started under `runDir`, mounts under it,
 * this process's netns and cgroups. Only things this test process made are touched.
 */
export async function hardCleanup(runDir: string, handlers: string[], root?: string): Promise<void> {
  // pods the engine still has records of (a failed test may have left them): their netns
  if (root && existsSync(join(root, 'state.db'))) {
    try {
      const { DatabaseSync } = await import('node:sqlite');
      const db = new DatabaseSync(join(root, 'state.db'));
      const ids = (db.prepare('SELECT id FROM pods').all() as { id: string }[]).map((r) => r.id);
      db.close();
      for (const id of ids) for (const ns of await netnsOf(id)) await run('ip', ['netns', 'delete', ns], { timeoutMs: 10_000 }).catch(() => undefined);
    } catch { /* no store */ }
  }
  for (const h of handlers) {
    const bin = h === 'gvisor' ? '/usr/bin/runsc' : h === 'runc' ? '/usr/sbin/runc' : undefined;
    if (!bin) continue;
    const root = join(runDir, h, 'state');
    if (!existsSync(root)) continue;
    const extra = h === 'gvisor' ? ['--platform=ptrace'] : [];
    const list = await run(bin, ['--root', root, ...extra, 'list', '-q'], { timeoutMs: 20_000 }).catch(() => undefined);
    for (const id of (list?.stdout ?? '').split('\n').map((l) => l.trim()).filter(Boolean)) {
      await run(bin, ['--root', root, ...extra, 'delete', '--force', id], { timeoutMs: 30_000 }).catch(() => undefined);
    }
  }
  for (const p of await procsWith(runDir)) { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } }
  const mounts = (await mountsUnder(runDir)).sort((a, b) => b.length - a.length);
  for (const m of mounts) await run('umount', ['-l', m], { timeoutMs: 10_000 }).catch(() => undefined);
  const parent = `bulkhead-test-${process.pid}`;
  for (const h of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    await rmdirDeep(join('/sys/fs/cgroup', h, parent));
  }
}

async function rmdirDeep(dir: string): Promise<void> {
  let entries: import('node:fs').Dirent[] = [];
  try { entries = await readdir(dir, { withFileTypes: true }); } catch { return; }
  for (const e of entries) if (e.isDirectory()) await rmdirDeep(join(dir, e.name));
  await rmdir(dir).catch(() => undefined);
}

export interface CrashChildOut { podId?: string; runner?: string; quick?: string; killedAt?: string; error?: string }

/** Runs crash-child.ts (a daemon-like Engine owner); resolves with its first JSON line and a promise of its exit. */
export async function crashChild(env: TestEnv, handler: string, mode: string, extra: Record<string, unknown> = {}): Promise<{ out: CrashChildOut; kill: () => Promise<void>; exited: Promise<NodeJS.Signals | number | null> }> {
  const cfg = {
    root: env.root, runDir: env.runDir, imagesDir: env.imagesDir, busybox: env.busybox,
    handler, mode, cgroupParent: `/bulkhead-test-${process.pid}`, ...extra,
  };
  const c = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', join(import.meta.dirname, 'crash-child.ts'), JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => c.on('exit', (code, sig) => resolve(sig ?? code)));
  const rl = createInterface({ input: c.stdout! });
  const line = await new Promise<string>((resolve, reject) => {
    rl.once('line', resolve);
    c.once('exit', () => reject(new Error(`crash child (${mode}) exited without output`)));
  });
  return { out: JSON.parse(line) as CrashChildOut, exited, kill: async () => { c.kill('SIGKILL'); await exited; } };
}

/**
 * A container stopped with its image's StopSignal (SIGUSR1, trapped: exit 7), and one that ignores
 * SIGTERM killed after the grace period (137); the same case for every handler. Each signal is
 * sent once the workload's shell has set its trap (it touches a file after the `trap`): the shell
 * is PID 1 of its namespace, which drops a signal it has no handler for yet (a fixed settle time
 * lost that race on a loaded host).
 */
export async function stopSignalAndGrace(env: TestEnv, engine: Engine, handler: string): Promise<void> {
  const trapped = async (id: string): Promise<void> => {
    await waitFor(async () => (await engine.execSync(id, ['test', '-e', '/tmp/trapped'], 10)).exitCode === 0, 60_000, `the trap of ${id}`);
  };
  const pod = podConfig();
  const podId = await engine.runPodSandbox(pod, handler);
  const u = await engine.createContainer(podId, containerConfig(env.usr1, 'usr1', ['sh', '-c', "trap 'exit 7' USR1; touch /tmp/trapped; while true; do sleep 0.1; done"]), pod);
  await engine.startContainer(u);
  await trapped(u);
  await engine.stopContainer(u, 20);
  const su = (await engine.containerStatus(u)).status;
  assert.equal(su.state, 'CONTAINER_EXITED');
  assert.equal(su.exitCode, 7);

  const t = await engine.createContainer(podId, containerConfig(env.busybox, 'stubborn', ['sh', '-c', "trap '' TERM; touch /tmp/trapped; while true; do sleep 0.1; done"]), pod);
  await engine.startContainer(t);
  await trapped(t);
  await engine.stopContainer(t, 1);
  const st = (await engine.containerStatus(t)).status;
  assert.equal(st.state, 'CONTAINER_EXITED');
  assert.equal(st.exitCode, 137, 'killed by SIGKILL after the grace period');
  await engine.stopContainer(t, 1); // idempotent
  await engine.removePodSandbox(podId);
}

/** ExecSync in a running container: output, exit code, and a timeout that kills the process. */
export async function execSyncBasics(engine: Engine, id: string): Promise<void> {
  const r = await engine.execSync(id, ['sh', '-c', 'echo out; echo err >&2; exit 4'], 10);
  assert.equal(r.stdout.toString(), 'out\n');
  assert.equal(r.stderr.toString(), 'err\n');
  assert.equal(r.exitCode, 4);
  await assert.rejects(engine.execSync(id, ['sleep', '30'], 1), { code: 'DeadlineExceeded' });
  // the timed-out process is killed, not left running in the container
  await waitFor(async () => !(await engine.execSync(id, ['ps', '-o', 'args'], 10)).stdout.toString().includes('sleep 30'), 20_000, 'the timed-out exec to be killed');
}
