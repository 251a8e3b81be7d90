/**
 * RuntimeClass handler names → backends. "" means the configured default handler. An unknown
 * handler is InvalidArgument, a handler whose backend cannot run on this host is
 * FailedPrecondition naming the handler and the probe's reason: never a silent fallback.
 */
import { FailedPreconditionError, InvalidArgumentError } from '../errors.ts';
import type { Isolation, ProbeResult } from '../runtime/backend.ts';

export interface HandlerEntry {
  name: string;
  /** Backend kind from config (runc, gvisor, ...). */
  backend: string;
  isolation: Isolation;
  probe(signal?: AbortSignal): Promise<ProbeResult>;
}

export interface HandlerStatus {
  name: string;
  backend: string;
  isolation: Isolation;
  isDefault: boolean;
  probe: ProbeResult;
}

export class RuntimeHandlers {
  readonly defaultHandler: string;
  readonly #entries: Map<string, HandlerEntry>;

  constructor(defaultHandler: string, entries: HandlerEntry[]) {
    this.defaultHandler = defaultHandler;
    this.#entries = new Map(entries.map((e) => [e.name, e]));
  }

  names(): string[] { return [...this.#entries.keys()]; }

  get(name: string): HandlerEntry | undefined { return this.#entries.get(name); }

  /** The handler a request names ("" = default); InvalidArgument when no such handler is configured. */
  known(requested: string): HandlerEntry {
    const name = requested === '' ? this.defaultHandler : requested;
    const entry = this.#entries.get(name);
    if (!entry) {
      const known = this.names().join(', ') || 'none';
      throw new InvalidArgumentError(`unknown runtime handler "${name}" (configured handlers: ${known})`);
    }
    return entry;
  }

  /** The handler a request names ("" = default), checked to exist and to be usable here. */
  async resolve(requested: string, signal?: AbortSignal): Promise<HandlerEntry> {
    const entry = this.known(requested);
    const name = entry.name;
    const probe = await entry.probe(signal);
    if (!probe.available) {
      throw new FailedPreconditionError(`runtime handler "${name}" (backend ${entry.backend}) cannot run on this host: ${probe.reason ?? 'its probe says unavailable'}`);
    }
    return entry;
  }

  /** Every handler with its probe result (a probe that throws counts as unavailable). */
  async statuses(signal?: AbortSignal): Promise<HandlerStatus[]> {
    return await Promise.all([...this.#entries.values()].map(async (e) => {
      let probe: ProbeResult;
      try { probe = await e.probe(signal); } catch (err) {
        probe = { available: false, reason: `probe failed: ${err instanceof Error ? err.message : String(err)}`, details: {} };
      }
      return { name: e.name, backend: e.backend, isolation: e.isolation, isDefault: e.name === this.defaultHandler, probe };
    }));
  }
}
