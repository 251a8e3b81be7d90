/**
 * Shared setup for the engine's integration tests: a real registry (fixture) with busybox images,
 * real runc/runsc backends under conmon, and an Engine over temp dirs.
 *
 * Images: until tests are switched to image/'s ImageService, `RegistryImages` pulls from the real
 * test registry with skopeo, unpacks once with umoci, and hands out per-container overlay mounts
 * (lower = the unpacked image, upper/work per container): the same contract as ImageService.
 */
import { mkdtemp, mkdir, rm, rmdir, readFile, readdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { NotFoundError } from '../../src/errors.ts';
import { silentLogger, createLogger, type Logger } from '../../src/util/log.ts';
import { createBackend } from '../../src/runtime/backends.ts';
import type { Backend } from '../../src/runtime/backend.ts';
import { Engine, type EngineImages, type EngineOptions } from '../../src/engine/engine.ts';
import type { EngineImage } from '../../src/engine/container-spec.ts';
import type { RootfsMount } from '../../src/engine/mounts.ts';
import { sharedRegistry, type TestRegistry } from '../fixtures/registry.ts';
import { buildAndPushTestImages, busyboxLayers, pushImage, type ImageConfigInput } from '../fixtures/images.ts';
import type * as cri from '../../src/engine/types.ts';

const pexec = promisify(execFile);

export class RegistryImages implements EngineImages {
  readonly dir: string;
  readonly #images = new Map<string, EngineImage & { rootfs: string }>();
  constructor(dir: string) { this.dir = dir; }

  /** Pulls `ref` from the (plain-HTTP, loopback) registry and unpacks it. Returns the image id. */
  async pull(ref: string): Promise<string> {
    const name = `img${this.#images.size}`;
    const layout = join(this.dir, 'layout');
    await mkdir(layout, { recursive: true });
    await pexec('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${layout}:${name}`], { timeout: 120_000 });
    const bundle = join(this.dir, 'unpacked', name);
    await mkdir(join(this.dir, 'unpacked'), { recursive: true });
    await pexec('umoci', ['unpack', '--image', `${layout}:${name}`, bundle], { timeout: 120_000 });
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
    const m = index.manifests.find((x) => x.annotations?.['org.opencontainers.image.ref.name'] === name)!;
    const manifest = JSON.parse(await readFile(join(layout, 'blobs', 'sha256', m.digest.slice(7)), 'utf8')) as { config: { digest: string } };
    const config = JSON.parse(await readFile(join(layout, 'blobs', 'sha256', manifest.config.digest.slice(7)), 'utf8')) as NonNullable<EngineImage['config']>;
    const img = { id: manifest.config.digest, repoDigests: [`${ref.replace(/:[^:/]+$/, '')}@${m.digest}`], repoTags: [ref], config, rootfs: join(bundle, 'rootfs') };
    this.#images.set(ref, img);
    this.#images.set(img.id, img);
    return img.id;
  }

  /** What a child process needs to rebuild this store (`load`). */
  toJSON(): [string, EngineImage & { rootfs: string }][] {
    return [...this.#images];
  }

  load(entries: [string, EngineImage & { rootfs: string }][]): void {
    for (const [k, v] of entries) this.#images.set(k, v);
  }

  get(refOrId: string): EngineImage {
    const img = this.#images.get(refOrId);
    if (!img) throw new NotFoundError(`image ${refOrId} not found`);
    return img;
  }

  async prepareRootfs(key: string, imageId: string): Promise<RootfsMount[]> {
    const img = this.get(imageId) as EngineImage & { rootfs: string };
    const snap = join(this.dir, 'snapshots', key);
    await mkdir(join(snap, 'upper'), { recursive: true });
    await mkdir(join(snap, 'work'), { recursive: true });
    return [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${img.rootfs}`, `upperdir=${snap}/upper`, `workdir=${snap}/work`] }];
  }

  async removeRootfs(key: string): Promise<void> {
    await rm(join(this.dir, 'snapshots', key), { recursive: true, force: true });
  }

  async snapshots(): Promise<string[]> {
    try { return await readdir(join(this.dir, 'snapshots')); } catch { return []; }
  }
}

export interface TestEnv {
  dir: string;
  root: string;
  runDir: string;
  images: RegistryImages;
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
  const images = new RegistryImages(join(dir, 'images'));
  const registry = await sharedRegistry();
  const pushed = await buildAndPushTestImages(registry);
  const usr1Ref = (await pushImage(registry, 'test/engine-usr1', 'latest', { layers: busyboxLayers('gzip'), config: { StopSignal: 'SIGUSR1', Cmd: ['sh'] } as ImageConfigInput })).ref;
  await images.pull(pushed.busybox);
  await images.pull(usr1Ref);
  const logger = process.env.BULKHEAD_TEST_LOG ? createLogger({ level: 'debug' }) : silentLogger;
  const engines: Engine[] = [];
  const backends = (): Map<string, Backend> => {
    const m = new Map<string, Backend>();
    for (const h of handlers) {
      // conmon wants an absolute runtime path
      const binary = h === 'gvisor' ? '/usr/bin/runsc' : h === 'runc' ? '/usr/sbin/runc' : undefined;
      const b = createBackend(h, { runDir: join(runDir, h), logger, ...(binary ? { binary } : {}), ...(h === 'gvisor' ? { runtimeArgs: ['--platform=ptrace'] } : {}) });
      if (!b) throw new Error(`no backend ${h}`);
      m.set(h, b);
    }
    return m;
  };
  return {
    dir, root, runDir, images, registry, busybox: pushed.busybox, usr1: usr1Ref, logger, backends,
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
