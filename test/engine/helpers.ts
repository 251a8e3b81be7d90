/**
 * Shared setup for the engine's integration tests: a real registry (fixture) with busybox images,
 * pulled through image/'s real ImageService (which the Engine takes as it is), real runc/runsc
 * backends under conmon, and an Engine over temp dirs.
 */
import { mkdtemp, rm, rmdir, readFile, readdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger, createLogger, type Logger } from '../../src/util/log.ts';
import { createBackend } from '../../src/runtime/backends.ts';
import type { Backend } from '../../src/runtime/backend.ts';
import { Engine, type EngineImages, type EngineOptions } from '../../src/engine/engine.ts';
import { createImageService, type ImageService } from '../../src/image/image-service.ts';
import { sharedRegistry, type TestRegistry } from '../fixtures/registry.ts';
import { buildAndPushTestImages, busyboxLayers, pushImage, type ImageConfigInput } from '../fixtures/images.ts';
import type * as cri from '../../src/engine/types.ts';

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
        cgroupParent: `/bulkhead-test-${process.pid}`, sweepIntervalMs: 500, ...extra,
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
      await rm(dir, { recursive: true, force: true });
      // the shared cgroup parent of this test process (pods below it are removed by the engine)
      for (const h of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
        await rmdir(join('/sys/fs/cgroup', h, `bulkhead-test-${process.pid}`)).catch(() => undefined);
      }
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
