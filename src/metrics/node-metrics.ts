/**
 * The daemon's Prometheus metrics (one prom-client Registry per daemon, never the global one).
 *
 * What is counted as it happens: CRI RPC latency (`observeRpc`, hooked once in the CRI server),
 * image pulls and their layer bytes (`instrumentImages`), pod sandbox start failures
 * (`instrumentEngine`). What is read at scrape time from the owner's own state, never counted
 * from events: pods and containers by handler and state (the engine's list views), policy
 * decisions (the policy's counters), warm-pool levels (only once a pool owner registers them).
 *
 * Every label value is bounded: methods come from the service definitions, handlers from the
 * configured handler names (anything else is "other"), codes from the gRPC/Bulkhead code tables,
 * rules from the loaded policy. No pod name, namespace, image or path is ever a label.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { BulkheadError } from '../errors.ts';

/** The engine's list views, as much of them as the metrics read. */
export interface MetricsViews {
  listPodSandbox(filter?: { id?: string } | null): Promise<ViewPod[]> | ViewPod[];
  listContainers(filter?: { id?: string } | null): Promise<ViewContainer[]> | ViewContainer[];
}
export interface ViewPod { id: string; state?: string; runtimeHandler?: string }
export interface ViewContainer { id: string; podSandboxId: string; state?: string }

/** One kind of policy decision and how often it was made (the policy keeps these; see policy/enforce.ts). */
export interface DecisionCount { kind: string; outcome: string; rule: string; count: number }

/** A warm pool's levels and counts, as its owner reports them at scrape time (level: a trust level name from the config). */
export interface WarmPoolLevel { handler: string; level?: string; ready: number; target: number; hits?: number; misses?: number }

/** Watches a unary call: called as it starts, the result once it ends with the gRPC code name ("OK", "NOT_FOUND", ...). */
export type RpcObserver = (method: string, request: unknown) => (code: string, response: unknown) => void;

export interface NodeMetricsOptions {
  version: string;
  /** The configured handler names: the only handler label values besides "" and "other". */
  handlers: readonly string[];
  /** Process and Node.js runtime metrics (process_*, nodejs_*); default true. */
  processMetrics?: boolean;
}

/** Seconds: CRI calls take milliseconds (lists) to minutes (a pull, a microVM under TCG). */
const RPC_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const POD_STATES = ['ready', 'notready'] as const;
const CONTAINER_STATES = ['created', 'running', 'exited', 'unknown'] as const;
/** Bound of distinct label sets a request-derived label may add (codes × methods is far below). */
const MAX_CODE_LEN = 32;

const podState = (s: string | undefined): string => (s === 'SANDBOX_READY' ? 'ready' : 'notready');
const containerState = (s: string | undefined): string => {
  const v = (s ?? '').replace(/^CONTAINER_/, '').toLowerCase();
  return (CONTAINER_STATES as readonly string[]).includes(v) ? v : 'unknown';
};

/** The code name of a thrown value, for labels ("NotFound", "Internal"). */
export function errorCode(err: unknown): string {
  const code = err instanceof BulkheadError ? err.code : 'Internal';
  return /^[A-Za-z]+$/.test(code) && code.length <= MAX_CODE_LEN ? code : 'Internal';
}

/** `target` with some methods replaced; every other method is the target's own, bound to it (private fields keep working). */
function withOverrides<T extends object>(target: T, overrides: Partial<T>): T {
  return new Proxy(target, {
    get(t, p) {
      if (Object.hasOwn(overrides, p)) return (overrides as Record<PropertyKey, unknown>)[p];
      const v: unknown = Reflect.get(t, p, t);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}

export class NodeMetrics {
  readonly registry = new Registry();
  readonly #handlers: ReadonlySet<string>;
  readonly #rpc: Histogram<'method' | 'handler' | 'code'>;
  readonly #pulls: Counter<'outcome'>;
  readonly #pullBytes: Counter;
  readonly #startFailures: Counter<'handler' | 'code'>;
  #views: MetricsViews | undefined;
  #decisions: (() => Iterable<DecisionCount>) | undefined;
  #pools: (() => Iterable<WarmPoolLevel>)[] = [];

  constructor(opts: NodeMetricsOptions) {
    this.#handlers = new Set(opts.handlers);
    const registers = [this.registry];
    const self = this;
    new Gauge({ name: 'bulkhead_build_info', help: 'Bulkhead version of this daemon (always 1).', labelNames: ['version'], registers })
      .set({ version: opts.version }, 1);
    this.#rpc = new Histogram({
      name: 'bulkhead_cri_request_duration_seconds',
      help: 'Duration of unary CRI and Bulkhead RPCs by method, runtime handler of the pod concerned ("" = none) and gRPC status code.',
      labelNames: ['method', 'handler', 'code'], buckets: RPC_BUCKETS, registers,
    });
    new Gauge({
      name: 'bulkhead_pods', help: 'Pod sandboxes by runtime handler and state, from the engine at scrape time.',
      labelNames: ['handler', 'state'], registers,
      async collect() {
        this.reset();
        const pods = self.#views ? await self.#views.listPodSandbox(null) : [];
        for (const h of self.#handlers) for (const s of POD_STATES) this.set({ handler: h, state: s }, 0);
        for (const p of pods) this.inc({ handler: self.#handler(p.runtimeHandler), state: podState(p.state) });
      },
    });
    new Gauge({
      name: 'bulkhead_containers', help: 'Containers by runtime handler of their pod and state, from the engine at scrape time.',
      labelNames: ['handler', 'state'], registers,
      async collect() {
        this.reset();
        const views = self.#views;
        for (const h of self.#handlers) for (const s of CONTAINER_STATES) this.set({ handler: h, state: s }, 0);
        if (!views) return;
        const handlerOf = new Map((await views.listPodSandbox(null)).map((p) => [p.id, self.#handler(p.runtimeHandler)]));
        for (const c of await views.listContainers(null)) this.inc({ handler: handlerOf.get(c.podSandboxId) ?? 'other', state: containerState(c.state) });
      },
    });
    new Counter({
      name: 'bulkhead_policy_decisions_total', help: 'Trust policy decisions by kind (pod, container), outcome (allowed, moved, denied) and deciding rule.',
      labelNames: ['kind', 'outcome', 'rule'], registers,
      collect() {
        this.reset();
        for (const d of self.#decisions?.() ?? []) this.inc({ kind: d.kind, outcome: d.outcome, rule: d.rule }, d.count);
      },
    });
    this.#pulls = new Counter({ name: 'bulkhead_image_pulls_total', help: 'Image pulls by outcome ("ok" or the error code).', labelNames: ['outcome'], registers });
    this.#pullBytes = new Counter({ name: 'bulkhead_image_pull_bytes_total', help: 'Layer bytes downloaded from registries by pulls (layers already present are not downloaded).', registers });
    this.#startFailures = new Counter({
      name: 'bulkhead_sandbox_start_failures_total', help: 'Pod sandboxes (containers, gVisor sandboxes, microVMs) that failed to start, by handler and error code; policy refusals are not counted here.',
      labelNames: ['handler', 'code'], registers,
    });
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  #handler(h: string | undefined): string {
    if (h === undefined || h === '') return '';
    return this.#handlers.has(h) ? h : 'other';
  }

  /** The engine's views, read at scrape time (pods, containers) and to label RPCs by handler. */
  setViews(views: MetricsViews): void { this.#views = views; }

  /** The policy's decision counts, read at scrape time. */
  setDecisions(read: () => Iterable<DecisionCount>): void { this.#decisions = read; }

  /**
   * Hook for warm pools: a pool owner registers how to read its levels. The gauges
   * `bulkhead_warm_pool_ready` / `bulkhead_warm_pool_target` and the counters
   * `bulkhead_warm_pool_hits_total` / `bulkhead_warm_pool_misses_total` (by handler and trust level;
   * levels come from the daemon config, a bounded set) exist only from the first call.
   */
  addWarmPools(read: () => Iterable<WarmPoolLevel>): void {
    this.#pools.push(read);
    if (this.registry.getSingleMetric('bulkhead_warm_pool_ready')) return;
    const self = this;
    const levels = (): WarmPoolLevel[] => self.#pools.flatMap((r) => [...r()]);
    const labels = (l: WarmPoolLevel): { handler: string; level: string } => ({ handler: self.#handler(l.handler), level: l.level ?? '' });
    const labelNames = ['handler', 'level'] as const;
    new Gauge({
      name: 'bulkhead_warm_pool_ready', help: 'Warm sandboxes ready to take a pod, by handler and trust level.', labelNames, registers: [this.registry],
      collect() { this.reset(); for (const l of levels()) this.inc(labels(l), l.ready); },
    });
    new Gauge({
      name: 'bulkhead_warm_pool_target', help: 'Warm sandboxes each pool aims to keep ready, by handler and trust level.', labelNames, registers: [this.registry],
      collect() { this.reset(); for (const l of levels()) this.inc(labels(l), l.target); },
    });
    new Counter({
      name: 'bulkhead_warm_pool_hits_total', help: 'Pod sandboxes that took a warm pool member, by handler and trust level.', labelNames, registers: [this.registry],
      collect() { this.reset(); for (const l of levels()) this.inc(labels(l), l.hits ?? 0); },
    });
    new Counter({
      name: 'bulkhead_warm_pool_misses_total', help: 'Pod sandboxes of a pooled handler and level that started cold (pool empty, or the pod asked for what members lack), by handler and trust level.',
      labelNames, registers: [this.registry],
      collect() { this.reset(); for (const l of levels()) this.inc(labels(l), l.misses ?? 0); },
    });
  }

  /** The Prometheus text exposition of every metric. */
  async scrape(): Promise<string> { return await this.registry.metrics(); }
  get contentType(): string { return this.registry.contentType; }

  /** The handler label of a call, from the pod or container it names (looked up before the call: RemovePodSandbox deletes it). */
  async #handlerOfRequest(req: unknown): Promise<string> {
    const views = this.#views;
    if (!views || typeof req !== 'object' || req === null) return '';
    const r = req as { podSandboxId?: unknown; containerId?: unknown };
    const one = <T extends { id: string }>(list: T[], id: string): T | undefined => (list.length === 1 && list[0]!.id.startsWith(id) ? list[0] : undefined);
    try {
      if (typeof r.podSandboxId === 'string' && r.podSandboxId !== '') {
        return this.#handler(one(await views.listPodSandbox({ id: r.podSandboxId }), r.podSandboxId)?.runtimeHandler);
      }
      if (typeof r.containerId === 'string' && r.containerId !== '') {
        const c = one(await views.listContainers({ id: r.containerId }), r.containerId);
        if (!c) return '';
        return this.#handler(one(await views.listPodSandbox({ id: c.podSandboxId }), c.podSandboxId)?.runtimeHandler);
      }
    } catch { /* a look-up failure never fails the call */ }
    return '';
  }

  /** The RPC observer the CRI server calls for each unary call (cri/status.ts serveService). */
  readonly observeRpc: RpcObserver = (path, req) => {
    const started = performance.now();
    const method = path.slice(path.lastIndexOf('/') + 1);
    const before = this.#handlerOfRequest(req);
    return (code, res) => {
      const seconds = (performance.now() - started) / 1000;
      void (async () => {
        let handler = await before;
        if (method === 'RunPodSandbox') {
          // the pod's handler is the one the policy chose; on failure, the one asked for (if configured)
          const id = (res as { podSandboxId?: unknown } | undefined)?.podSandboxId;
          const asked = (req as { runtimeHandler?: unknown } | undefined)?.runtimeHandler;
          handler = typeof id === 'string' && id !== '' ? await this.#handlerOfRequest({ podSandboxId: id })
            : typeof asked === 'string' && this.#handlers.has(asked) ? asked : '';
        }
        this.#rpc.observe({ method, handler, code: code.length <= MAX_CODE_LEN ? code : 'UNKNOWN' }, seconds);
      })();
    };
  };

  /** The image service with `pull` counted (outcome, layer bytes downloaded). */
  instrumentImages<T extends { pull(ref: string, opts: PullOpts): Promise<unknown> }>(images: T): T {
    const pull = async (ref: string, opts: PullOpts): Promise<unknown> => {
      const layerBytes = new Map<string, number>();
      const onProgress = (ev: PullEvent): void => {
        if (ev.status === 'downloading' || ev.status === 'verifying') layerBytes.set(ev.id, Math.max(layerBytes.get(ev.id) ?? 0, ev.current ?? 0));
        opts.onProgress?.(ev);
      };
      try {
        const rec = await images.pull(ref, { ...opts, onProgress });
        this.#pulls.inc({ outcome: 'ok' });
        return rec;
      } catch (err) {
        this.#pulls.inc({ outcome: errorCode(err) });
        throw err;
      } finally {
        let n = 0;
        for (const b of layerBytes.values()) n += b;
        if (n > 0) this.#pullBytes.inc(n);
      }
    };
    return withOverrides(images, { pull } as unknown as Partial<T>);
  }

  /** The engine with failed `runPodSandbox` calls counted by handler and code. */
  instrumentEngine<T extends { runPodSandbox(config: never, handler: string, ...rest: never[]): Promise<string> }>(engine: T): T {
    const run = engine.runPodSandbox.bind(engine) as (...a: unknown[]) => Promise<string>;
    const runPodSandbox = async (config: unknown, handler: string, ...rest: unknown[]): Promise<string> => {
      try {
        return await run(config, handler, ...rest);
      } catch (err) {
        this.#startFailures.inc({ handler: this.#handler(handler), code: errorCode(err) });
        throw err;
      }
    };
    return withOverrides(engine, { runPodSandbox } as unknown as Partial<T>);
  }
}

interface PullEvent { id: string; status: string; current?: number; total?: number }
interface PullOpts { signal?: AbortSignal; onProgress?: (ev: PullEvent) => void }
