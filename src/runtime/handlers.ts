/**
 * The one handler registry: RuntimeClass handler names → backends, used by the CRI layer and by
 * the engine (so one condition is one error class wherever it is met; the daemon builds one and
 * passes it to both). "" means the configured default handler. An unknown handler is
 * InvalidArgument, a handler whose backend cannot run on this host is
 * FailedPrecondition naming the handler and the probe's reason: never a silent fallback.
 */
import { FailedPreconditionError, InvalidArgumentError } from '../errors.ts';
import type { Backend, Isolation, ProbeOptions, ProbeResult } from './backend.ts';

export interface HandlerEntry {
  name: string;
  /** Backend kind from config (runc, gvisor, ...). */
  backend: string;
  /** Taken from the backend (its `isolation`). */
  isolation: Isolation;
  probe(signal?: AbortSignal, opts?: ProbeOptions): Promise<ProbeResult>;
}

export interface HandlerStatus {
  name: string;
  backend: string;
  isolation: Isolation;
  isDefault: boolean;
  probe: ProbeResult;
}

/** An unavailable result is probed again after this long (default). */
const REPROBE_MS = 30_000;

interface ProbeSlot { promise: Promise<ProbeResult>; result?: ProbeResult; at: number; inflight: boolean }

export class RuntimeHandlers {
  readonly defaultHandler: string;
  readonly #entries: Map<string, HandlerEntry>;
  readonly #probes = new Map<string, ProbeSlot>();

  readonly #reprobeMs: number;

  constructor(defaultHandler: string, entries: HandlerEntry[], opts: { reprobeMs?: number } = {}) {
    this.defaultHandler = defaultHandler;
    this.#entries = new Map(entries.map((e) => [e.name, e]));
    this.#reprobeMs = opts.reprobeMs ?? REPROBE_MS;
  }

  /**
   * Starts (or reuses) the probe of one handler, shared by all callers (so no caller's signal can
   * abort it); a probe that throws counts as unavailable. The last result stays visible while a
   * new probe runs. `fresh`: a new probe, past every cache (one already running is fresh enough).
   */
  #probe(e: HandlerEntry, fresh = false): ProbeSlot {
    const cur = this.#probes.get(e.name);
    if (cur && (cur.inflight || (!fresh && (cur.result?.available || Date.now() - cur.at < this.#reprobeMs)))) return cur;
    const slot: ProbeSlot = { at: Date.now(), inflight: true, promise: Promise.resolve({ available: false, details: {} }) };
    if (cur?.result && !fresh) slot.result = cur.result;
    slot.promise = e.probe(undefined, fresh ? { fresh } : {}).catch((err: unknown): ProbeResult => ({
      available: false, reason: `probe failed: ${err instanceof Error ? err.message : String(err)}`, details: {},
    })).then((r) => { slot.result = r; slot.at = Date.now(); slot.inflight = false; return r; });
    this.#probes.set(e.name, slot);
    return slot;
  }

  /** Starts every handler's probe in the background (daemon start), so Status answers at once. */
  warm(): void {
    for (const e of this.#entries.values()) this.#probe(e);
  }

  names(): string[] { return [...this.#entries.keys()]; }

  get(name: string): HandlerEntry | undefined { return this.#entries.get(name); }

  /** The handler a request names ("" = default); InvalidArgument when no such handler is configured. */
  known(requested: string): HandlerEntry {
    const name = requested === '' ? this.defaultHandler : requested;
    const entry = this.#entries.get(name);
    if (!entry) {
      const known = this.names().join(', ') || 'none';
      throw new InvalidArgumentError(`unknown runtime handler "${name}" (configured handlers: ${known})`, { reason: 'BH_HANDLER_UNKNOWN' });
    }
    return entry;
  }

  /** The handler a request names ("" = default), checked to exist and to be usable here. */
  async resolve(requested: string, signal?: AbortSignal): Promise<HandlerEntry> {
    const entry = this.known(requested);
    const name = entry.name;
    signal?.throwIfAborted();
    const probe = await this.#probe(entry).promise;
    if (!probe.available) {
      throw new FailedPreconditionError(`runtime handler "${name}" (backend ${entry.backend}) cannot run on this host: ${probe.reason ?? 'its probe says unavailable'}`, { reason: 'BH_HANDLER_UNAVAILABLE' });
    }
    return entry;
  }

  /**
   * Every handler with its probe result. A handler probed again (its last result said unavailable,
   * REPROBE_MS ago) reports that last result while the new probe runs: the policy asks at every
   * RunPodSandbox, which would otherwise wait for the probes of every handler this host cannot run
   * (crun's three runs on cgroup v1: ~50 ms) once per REPROBE_MS, i.e. at nearly every `bulkhead
   * run` of a user who runs one now and then. With `wait: false` (Status, which the kubelet polls
   * with a short deadline) a first probe still running reports the handler as not yet available.
   * `fresh` (`bulkhead doctor`) probes every handler again and waits for the answers.
   */
  async statuses(opts: { wait?: boolean; fresh?: boolean } = {}): Promise<HandlerStatus[]> {
    return await Promise.all([...this.#entries.values()].map(async (e) => {
      const slot = this.#probe(e, opts.fresh);
      const probe: ProbeResult = (opts.fresh ? undefined : slot.result)
        ?? (opts.wait === false ? { available: false, reason: 'probe still running', details: {} } : await slot.promise);
      return { name: e.name, backend: e.backend, isolation: e.isolation, isDefault: e.name === this.defaultHandler, probe };
    }));
  }
}

/** A registry over handler name → Backend (the engine's own when it is given none; tests). */
export function handlersOf(defaultHandler: string, backends: ReadonlyMap<string, Backend>): RuntimeHandlers {
  return new RuntimeHandlers(defaultHandler, [...backends].map(([name, b]) => ({ name, backend: b.name, isolation: b.isolation, probe: (signal, o) => b.probe(signal, o) })));
}
