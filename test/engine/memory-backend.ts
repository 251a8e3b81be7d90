/**
 * An in-memory Backend for unit tests of the engine's decisions (recovery, stats aggregation):
 * containers are map entries whose state a test sets, nothing runs. Every call is counted per
 * method. Real backends are tested by the conformance suites; this one only answers the Backend
 * interface the way a real one would (NotFound for unknown ids, idempotent delete, wait until an
 * exit or an abort).
 */
import { NotFoundError, UnimplementedError } from '../../src/errors.ts';
import type {
  Backend, ContainerRecord, ContainerState, ContainerStats, CreateContainerOptions, ExecResult, InteractiveProcess,
  ProbeResult, RuntimeCommand,
} from '../../src/runtime/backend.ts';
import type { PodSandbox } from '../../src/runtime/sandbox/pod-sandbox.ts';
import { constants } from 'node:os';

interface MemoryContainer {
  state: ContainerState;
  podId: string;
  role: 'sandbox' | 'container';
  logPath: string;
  createdAt: Date;
  stats: Omit<ContainerStats, 'timestamp'>;
}

export class MemoryBackend implements Backend {
  readonly name: string;
  readonly isolation = 'process' as const;
  /** Pods hold nothing of their own here: no sandbox container, no namespace files. */
  readonly podSandbox: PodSandbox = {
    kind: 'namespaces-joined',
    plan: async () => ({ sandboxContainer: false }),
    create: async () => ({ sandboxId: '', namespacePaths: {} }),
    containerNamespaces: (req) => ({ network: req.pod.netnsPath ? { path: req.pod.netnsPath } : 'private', ipc: 'private', uts: 'private', pid: 'private' }),
    dial: async () => { throw new UnimplementedError('memory backend: no port-forward'); },
    stop: async () => undefined,
    destroy: async (_pod, _state, removeContainers) => { await removeContainers(); },
  };
  readonly #containers = new Map<string, MemoryContainer>();
  readonly #waiters = new Map<string, Set<(st: ContainerState) => void>>();
  /** Calls per method name. */
  readonly calls = new Map<string, number>();
  #nextPid = 100_000;

  constructor(opts: { name?: string } = {}) {
    this.name = opts.name ?? 'memory';
  }

  #count(method: string): void {
    this.calls.set(method, (this.calls.get(method) ?? 0) + 1);
  }

  #get(id: string): MemoryContainer {
    const c = this.#containers.get(id);
    if (!c) throw new NotFoundError(`container ${id} not found`);
    return c;
  }

  // --- test controls ------------------------------------------------------------------------------

  /** Puts a container in the runtime as if it had been created (and started, with status 'running'). */
  put(id: string, status: ContainerState['status'], opts: { podId?: string; role?: 'sandbox' | 'container'; exitCode?: number; stats?: Partial<ContainerStats> } = {}): void {
    const state: ContainerState = { id, status, pid: status === 'running' || status === 'created' ? this.#nextPid++ : 0 };
    if (status === 'stopped' && opts.exitCode !== undefined) { state.exitCode = opts.exitCode; state.exitedAt = new Date(); }
    this.#containers.set(id, {
      state, podId: opts.podId ?? '', role: opts.role ?? 'container', logPath: '', createdAt: new Date(),
      stats: { cpuUsageNs: 1_000_000, memoryWorkingSetBytes: 4096, memoryUsageBytes: 8192, pids: 1, oomKills: 0, ...opts.stats },
    });
  }

  /** The container's process exits with `code` (waiters resolve). */
  exit(id: string, code: number): void {
    const c = this.#get(id);
    c.state = { id, status: 'stopped', pid: 0, exitCode: code, exitedAt: new Date() };
    for (const w of this.#waiters.get(id) ?? []) w(c.state);
    this.#waiters.delete(id);
  }

  has(id: string): boolean {
    return this.#containers.has(id);
  }

  ids(): string[] {
    return [...this.#containers.keys()];
  }

  // --- Backend ----------------------------------------------------------------------------------

  async probe(): Promise<ProbeResult> {
    this.#count('probe');
    return { available: true, details: {} };
  }

  runtimeCommand(): RuntimeCommand {
    return { path: '/bin/false', globalArgs: [] };
  }

  async close(): Promise<void> { /* nothing held */ }

  async createContainer(opts: CreateContainerOptions): Promise<{ pid: number }> {
    this.#count('createContainer');
    this.put(opts.id, 'created', { podId: opts.pod.podId, role: opts.pod.role });
    const c = this.#get(opts.id);
    c.logPath = opts.logPath;
    return { pid: c.state.pid };
  }

  async start(id: string): Promise<void> {
    this.#count('start');
    const c = this.#get(id);
    c.state = { ...c.state, status: 'running' };
  }

  async state(id: string): Promise<ContainerState> {
    this.#count('state');
    return { ...this.#get(id).state };
  }

  async wait(id: string, signal?: AbortSignal): Promise<ContainerState> {
    this.#count('wait');
    const c = this.#get(id);
    if (c.state.status === 'stopped') return { ...c.state };
    signal?.throwIfAborted();
    return await new Promise<ContainerState>((resolve, reject) => {
      const set = this.#waiters.get(id) ?? new Set();
      this.#waiters.set(id, set);
      const onAbort = (): void => { set.delete(done); reject(signal?.reason ?? new Error('aborted')); };
      const done = (st: ContainerState): void => { signal?.removeEventListener('abort', onAbort); resolve({ ...st }); };
      set.add(done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async kill(id: string, signal: NodeJS.Signals | number): Promise<void> {
    this.#count('kill');
    const c = this.#get(id);
    if (c.state.status !== 'running') return;
    const n = typeof signal === 'number' ? signal : constants.signals[signal];
    this.exit(id, 128 + n);
  }

  async delete(id: string): Promise<void> {
    this.#count('delete');
    const c = this.#containers.get(id);
    if (c && c.state.status === 'running') this.exit(id, 137);
    this.#containers.delete(id);
  }

  async exec(): Promise<ExecResult> {
    this.#count('exec');
    throw new UnimplementedError('the memory backend runs no processes');
  }

  async execInteractive(): Promise<InteractiveProcess> {
    this.#count('execInteractive');
    throw new UnimplementedError('the memory backend runs no processes');
  }

  async attach(): Promise<InteractiveProcess> {
    this.#count('attach');
    throw new UnimplementedError('the memory backend runs no processes');
  }

  async resize(id: string): Promise<void> {
    this.#count('resize');
    this.#get(id);
  }

  async updateResources(id: string): Promise<void> {
    this.#count('updateResources');
    this.#get(id);
  }

  async stats(id: string): Promise<ContainerStats> {
    this.#count('stats');
    const c = this.#get(id);
    return { ...c.stats, timestamp: new Date() };
  }

  async reopenLog(id: string): Promise<void> {
    this.#count('reopenLog');
    this.#get(id);
  }

  async list(): Promise<ContainerRecord[]> {
    this.#count('list');
    return [...this.#containers].map(([id, c]) => ({ id, podId: c.podId, role: c.role, bundle: '', logPath: c.logPath, createdAt: c.createdAt }));
  }
}
