/**
 * The daemon's wiring: config → image service → backends (one per handler) → engine → CRI server.
 *
 * Lifecycle: `startDaemon(config, logger)` takes the pid locks of the run dir and of the root (two
 * daemons never share one), builds every part, recovers the engine's state (reattaching running
 * containers) and then listens on the CRI socket. `close()` stops serving and releases everything
 * in-process; containers keep running under conmon and are found again by the next daemon.
 * On a failure half-way, what was built is closed again and the locks released.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import type { Config } from './config.ts';
import { acquirePidLock, type PidLock } from './lock.ts';
import { DAEMON_STARTUP_MS } from './limits.ts';
import { removeEmptyCliPods } from './cli-pods.ts';
import { CriServer } from '../cri/server.ts';
import { RuntimeHandlers, type HandlerEntry } from '../runtime/handlers.ts';
import type { CriDeps } from '../cri/deps.ts';
import { Engine, type EngineImages } from '../engine/engine.ts';
import { InvalidArgumentError, NotFoundError } from '../errors.ts';
import { checkPolicyHandlers, policyFromConfig } from '../policy/load.ts';
import { criPolicy } from '../cri/policy-adapter.ts';
import { daemonProtectedPaths, withRealPaths } from '../policy/protected-paths.ts';
import { createImageService } from '../image/image-service.ts';
import { parseImageConfig } from '../image/config.ts';
import { backendKinds, createBackend } from '../runtime/backends.ts';
import { StreamServer } from '../stream/stream-server.ts';
import { CniPodNetwork } from '../network/cni-pod-network.ts';
import type { Backend, ProbeResult } from '../runtime/backend.ts';
import type { Logger } from '../util/log.ts';
import { DiskReserve } from '../util/disk-reserve.ts';
import { parseMetricsConfig } from '../metrics/config.ts';
import { NodeMetrics } from '../metrics/node-metrics.ts';
import { MetricsServer } from '../metrics/server.ts';
import { createCounters, type PolicyCounters } from '../policy/enforce.ts';
import { parsePoolsConfig } from './pools-config.ts';
import { sweepOrphanNetns } from '../network/netns-owner.ts';
import { sweepOrphanCgroups } from '../cgroup/owner.ts';

export interface Daemon {
  socket: string;
  close(): Promise<void>;
}

export function bulkheadVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

/** A handler whose backend kind this build does not know: listed, never usable. */
function unknownBackendEntry(name: string, kind: string): HandlerEntry {
  const probe: ProbeResult = { available: false, reason: `backend "${kind}" is not a known backend kind (${backendKinds().join(', ')})`, details: {} };
  return { name, backend: kind, isolation: 'process', probe: async () => probe };
}

export async function startDaemon(config: Config, logger: Logger): Promise<Daemon> {
  // what the daemon makes is never group- or world-writable, whatever umask it was started with (its
  // sockets are not connectable by others before they are made 0600: cri/server.ts). Set once, here,
  // before anything asynchronous: the umask is the process's, so no code may change it around an await.
  process.umask(process.umask() | 0o022);
  const cleanups: (() => Promise<void>)[] = [];
  const closeAll = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch (err) { logger.warn('shutdown step failed', { error: err instanceof Error ? err.message : String(err) }); }
    }
    cleanups.length = 0;
  };
  try {
    // a bad [metrics] table stops the daemon before anything is built
    const metricsConfig = parseMetricsConfig(config.sections.metrics);
    await mkdir(config.runDir, { recursive: true, mode: 0o700 });
    await mkdir(config.root, { recursive: true, mode: 0o700 });
    // on a full disk, the engine's disk reserve makes room to start (pid files, databases) and to remove
    new DiskReserve(config.root, { logger }).releaseIfFull('daemon start');
    const locks: PidLock[] = [];
    locks.push(await acquirePidLock(join(config.runDir, 'bulkhead.pid'), `run dir ${config.runDir}`));
    cleanups.push(async () => { await locks[0]!.release(); });
    locks.push(await acquirePidLock(join(config.root, 'bulkhead.pid'), `root ${config.root}`));
    cleanups.push(async () => { await locks[1]!.release(); });

    const images = await createImageService({ root: config.root, registries: config.registries, logger: logger.child({ part: 'image' }), config: parseImageConfig(config.sections.images) });
    cleanups.push(async () => { await images.close(); });

    const backends = new Map<string, Backend>();
    const entries: HandlerEntry[] = [];
    for (const [name, h] of Object.entries(config.runtime.handlers)) {
      const opts = {
        runDir: join(config.runDir, 'runtime', name),
        root: config.root,
        conmon: config.runtime.conmon,
        logger: logger.child({ part: 'runtime', handler: name }),
        ...(h.binary !== undefined ? { binary: h.binary } : {}),
        ...(h.runtimeArgs !== undefined ? { runtimeArgs: h.runtimeArgs } : {}),
        ...(config.sections.vm !== undefined ? { vm: config.sections.vm } : {}),
      };
      let backend: Backend | undefined;
      try {
        backend = createBackend(h.backend, opts);
      } catch (err) {
        logger.warn('handler has no usable backend', { handler: name, backend: h.backend, error: err instanceof Error ? err.message : String(err) });
      }
      if (!backend) { entries.push(unknownBackendEntry(name, h.backend)); continue; }
      backends.set(name, backend);
      const b = backend;
      entries.push({ name, backend: h.backend, isolation: b.isolation, probe: (signal, o) => b.probe(signal, o) });
      cleanups.push(async () => { await b.close(); });
    }
    const handlers = new RuntimeHandlers(config.runtime.defaultHandler, entries);
    handlers.warm();

    // An invalid policy stops the daemon: running without it would fail open.
    const policy = await policyFromConfig(config);
    const policyProblems = checkPolicyHandlers(policy, Object.keys(config.runtime.handlers));
    if (policyProblems.length > 0) throw new InvalidArgumentError(`policy (${policy.source}): ${policyProblems.join('; ')}`);
    // the daemon's own directories, sockets and files are protected whatever the policy lists
    for (const pp of daemonProtectedPaths({ root: config.root, runDir: config.runDir, socket: config.socket, config: config.config, policyFile: config.policyFile })) {
      if (!policy.protectedPaths.includes(pp)) policy.protectedPaths.push(pp);
    }
    logger.info('trust policy loaded', { source: policy.source, defaultTrust: policy.defaultTrust, rules: policy.rules.length });
    const pools = parsePoolsConfig(config.sections.pools, Object.keys(config.runtime.handlers), policy);

    const startup = AbortSignal.timeout(DAEMON_STARTUP_MS);
    const network = await CniPodNetwork.create({ cni: config.cni, network: config.sections.network, logger }, startup);
    // On shutdown the egress-guard tables and the managed bridge go, but only once no pod has a network.
    cleanups.push(async () => { await network.close(AbortSignal.timeout(30_000)); });
    // pod netns of daemons that died with their state deleted (a temporary root): nobody else finds them
    // and pod cgroups of such daemons (cgroup/owner.ts), their processes first: they may hold a netns
    await sweepOrphanCgroups(logger).catch((err: unknown) => logger.warn('sweeping orphaned pod cgroups failed', { err }));
    await sweepOrphanNetns(logger, startup).catch((err: unknown) => logger.warn('sweeping orphaned pod netns failed', { err }));

    // The engine wants a missing image to be NotFound; the image service answers undefined.
    const engineImages: EngineImages = {
      get: async (ref) => {
        const rec = await images.get(ref);
        if (!rec) throw new NotFoundError(`image "${ref}" is not present on this node; pull it first`, { reason: 'BH_IMAGE_NOT_PRESENT' });
        return rec;
      },
      prepareRootfs: (key, imageId) => images.prepareRootfs(key, imageId),
      removeRootfs: (key) => images.removeRootfs(key),
    };
    const engine = new Engine({
      root: config.root,
      runDir: config.runDir,
      logger,
      images: engineImages,
      backends,
      // the CRI layer's registry: one probe cache, one answer for an unknown or unusable handler
      handlers,
      defaultHandler: config.runtime.defaultHandler,
      network,
      defaultNetworkMode: network.config.defaultMode === 'none' ? 'none' : 'bridge',
      podLogRoots: [config.runtime.podLogRoot],
      cgroupRoots: config.runtime.cgroupRoots,
      seccompProfileRoot: config.runtime.seccompProfileRoot || join(policy.kubeletRoot, 'seccomp'),
      // the helper compares real paths: every protected path also by its real path (a symlinked /var/lib/kubelet)
      hostPathGuard: { kubeletRoot: policy.kubeletRoot, protect: withRealPaths([...policy.protectedPaths, policy.kubeletRoot]) },
      ...(pools.pools.length > 0 ? { warmPools: pools.pools, warmPoolParallelism: pools.fillParallelism } : {}),
    });
    cleanups.push(async () => { await engine.close(); });
    await engine.recover();
    await removeEmptyCliPods(engine, config.root, logger, AbortSignal.timeout(60_000));

    const stream = new StreamServer({ runtime: engine, logger: logger.child({ part: 'stream' }) });
    const bound = await stream.start({ address: config.stream.address, port: config.stream.port });
    cleanups.push(async () => { await stream.close(); });

    // /metrics (off unless [metrics] address is set): the CRI server times each call, pulls and
    // sandbox starts are counted, pods, containers and policy decisions are read at scrape time
    const metrics = metricsConfig.host !== '' ? new NodeMetrics({ version: bulkheadVersion(), handlers: Object.keys(config.runtime.handlers) }) : undefined;
    const policyCounters: PolicyCounters = { ...createCounters(), decisions: new Map() };
    if (metrics) {
      metrics.setViews(engine);
      metrics.setDecisions(() => policyCounters.decisions!.values());
      if (pools.pools.length > 0) metrics.addWarmPools(() => engine.warmPools());
      const server = await MetricsServer.listen(metricsConfig, metrics, logger.child({ part: 'metrics' }));
      cleanups.push(async () => { await server.close(); });
    }

    const deps: CriDeps = {
      engine: metrics ? metrics.instrumentEngine(engine) : engine,
      images: metrics ? metrics.instrumentImages(images) : images,
      handlers,
      logger,
      info: {
        version: bulkheadVersion(),
        root: config.root,
        runDir: config.runDir,
        socket: config.socket,
        config: config.config,
        streamAddress: bound.baseUrl,
      },
      streaming: stream,
      policy: criPolicy(policy, handlers, logger.child({ part: 'policy' }), policyCounters),
      networkStatus: async () => {
        const r = await network.ready();
        return r.ready ? { ready: true } : { ready: false, reason: 'NetworkPluginNotReady', message: r.reason ?? '' };
      },
      state: { podCidr: '' },
      ...(metrics ? { observeRpc: metrics.observeRpc } : {}),
    };
    const server = await CriServer.listen(config.socket, deps);
    cleanups.push(async () => { await server.close(); });

    let closed: Promise<void> | undefined;
    return {
      socket: config.socket,
      close: () => (closed ??= closeAll()),
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
