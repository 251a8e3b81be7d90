/**
 * Base class for backends driven through conmon: holds a ConmonDriver and delegates every
 * container operation to it; subclasses say what their runtime is (`runtimeCommand`), probe the
 * host, and adjust the spec for their runtime (`adjustSpec`). The microVM backend extends it too.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UnavailableError } from '../errors.ts';
import type { Logger } from '../util/log.ts';
import type {
  AttachOptions, Backend, BackendOptions, ContainerRecord, ContainerState, ContainerStats, CreateContainerOptions,
  ExecOptions, ExecResult, InteractiveExecOptions, InteractiveProcess, Isolation, ProbeOptions, ProbeResult, RuntimeCommand,
} from './backend.ts';
import { ConmonDriver, type ConmonDriverOptions, type InProcessRuntime, type RuntimeLimits } from './conmon/driver.ts';
import { DEFAULT_RUNTIME_LIMITS } from './conmon/shared.ts';
import type { OciLinuxResources, OciSpec } from '../oci/spec.ts';
import type { PodSandbox } from './sandbox/pod-sandbox.ts';

export const CONTAINER_TYPE_ANNOTATION = 'io.kubernetes.cri.container-type';
export const SANDBOX_ID_ANNOTATION = 'io.kubernetes.cri.sandbox-id';

export abstract class ConmonBackend implements Backend {
  abstract readonly name: string;
  abstract readonly isolation: Isolation;
  abstract readonly podSandbox: PodSandbox;
  protected readonly opts: BackendOptions;
  protected readonly log: Logger;
  private driverInstance: ConmonDriver | undefined;
  private probed: ProbeResult | undefined;

  constructor(opts: BackendOptions) {
    this.opts = opts;
    this.log = opts.logger;
  }

  /** Directory for the runtime's own state (`--root`). */
  protected get stateDir(): string { return join(this.opts.runDir, 'state'); }

  /** The runtime binary and flags conmon drives (diagnostics and tests read it; not part of Backend). */
  abstract runtimeCommand(): RuntimeCommand;
  protected abstract probeHost(signal?: AbortSignal, opts?: ProbeOptions): Promise<ProbeResult>;
  /** Runtime-specific spec changes; default none. Must not weaken the spec. */
  protected adjustSpec(spec: OciSpec, _opts: CreateContainerOptions): OciSpec { return spec; }
  /** Runtime path conmon runs for exec sessions, when it must differ from runtimeCommand().path. */
  protected execRuntimePath(): string | undefined { return undefined; }
  /** Runtime subcommands the backend runs in the daemon's process (ConmonDriverOptions.inProcess); default none. */
  protected inProcessRuntime(): InProcessRuntime | undefined { return undefined; }
  /**
   * For an inProcessRuntime: the container of a runtime call `delete --force ID` and its spec when
   * conmon recorded its exit (what an in-process delete of an ended container starts from); else
   * undefined, and the runtime deletes it.
   */
  protected endedDeleteOf(args: string[]): { id: string; spec: OciSpec } | undefined {
    if (args.length !== 3 || args[0] !== 'delete' || args[1] !== '--force') return undefined;
    const id = args[2]!;
    if (!existsSync(this.driver.exitFile(id))) return undefined;
    try { return { id, spec: JSON.parse(readFileSync(join(this.driver.bundleDir(id), 'config.json'), 'utf8')) as OciSpec }; } catch { return undefined; }
  }
  /**
   * How long one runtime call may take (the conmon driver's limits); default Bulkhead's own. A
   * backend whose runtime has limits of its own derives these from them (not part of Backend).
   */
  runtimeLimits(): RuntimeLimits { return DEFAULT_RUNTIME_LIMITS; }
  /** A create's work the backend does in the daemon's process before conmon runs (ConmonDriverOptions.prepareCreate); default none. */
  protected prepareCreate(): ConmonDriverOptions['prepareCreate'] { return undefined; }
  /** Kill a timed-out exec'd process by the pid its runtime reported (written to pidFile). */
  protected async killExecProcess(_id: string, pid: number, _pidFile: string): Promise<void> {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }

  protected get driver(): ConmonDriver {
    if (!this.driverInstance) {
      mkdirSync(this.opts.runDir, { recursive: true, mode: 0o700 });
      mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
      const execPath = this.execRuntimePath();
      const inProcess = this.inProcessRuntime();
      const prepareCreate = this.prepareCreate();
      this.driverInstance = new ConmonDriver({
        runDir: this.opts.runDir,
        conmon: this.opts.conmon ?? 'conmon',
        runtime: this.runtimeCommand(),
        logger: this.log,
        limits: this.runtimeLimits(),
        killExecProcess: (id, pid, pidFile) => this.killExecProcess(id, pid, pidFile),
        ...(execPath !== undefined ? { execRuntimePath: execPath } : {}),
        ...(inProcess !== undefined ? { inProcess } : {}),
        ...(prepareCreate !== undefined ? { prepareCreate } : {}),
      });
    }
    return this.driverInstance;
  }

  async probe(signal?: AbortSignal, opts: ProbeOptions = {}): Promise<ProbeResult> {
    if (this.probed?.available && !opts.fresh) return this.probed;
    this.probed = await this.probeHost(signal, opts);
    return this.probed;
  }

  protected async requireAvailable(signal?: AbortSignal): Promise<void> {
    const p = await this.probe(signal);
    if (!p.available) throw new UnavailableError(`${this.name} is not available on this host: ${p.reason ?? 'unknown reason'}`);
  }

  async createContainer(opts: CreateContainerOptions): Promise<{ pid: number }> {
    await this.requireAvailable(opts.signal);
    const spec = this.adjustSpec(structuredClone(opts.spec), opts);
    return await this.driver.createContainer({ ...opts, spec });
  }

  start(id: string, signal?: AbortSignal): Promise<void> { return this.driver.start(id, signal); }
  state(id: string, signal?: AbortSignal): Promise<ContainerState> { return this.driver.state(id, signal); }
  wait(id: string, signal?: AbortSignal): Promise<ContainerState> { return this.driver.wait(id, signal); }
  kill(id: string, signal: NodeJS.Signals | number, abort?: AbortSignal): Promise<void> { return this.driver.kill(id, signal, abort); }
  delete(id: string, signal?: AbortSignal): Promise<void> { return this.driver.delete(id, signal); }
  exec(id: string, opts: ExecOptions): Promise<ExecResult> { return this.driver.exec(id, opts); }
  execInteractive(id: string, opts: InteractiveExecOptions): Promise<InteractiveProcess> { return this.driver.execInteractive(id, opts); }
  attach(id: string, opts?: AttachOptions): Promise<InteractiveProcess> { return this.driver.attach(id, opts); }
  resize(id: string, width: number, height: number): Promise<void> { return this.driver.resize(id, width, height); }
  updateResources(id: string, resources: OciLinuxResources, signal?: AbortSignal): Promise<void> { return this.driver.updateResources(id, resources, signal); }
  stats(id: string, _signal?: AbortSignal): Promise<ContainerStats> { return this.driver.stats(id); }
  reopenLog(id: string): Promise<void> { return this.driver.reopenLog(id); }
  list(): Promise<ContainerRecord[]> { return this.driver.list(); }
  async close(): Promise<void> { /* nothing held in process: containers keep running */ }
}

/** First line matching /version/i of `<bin> --version`, for probe details. */
export function versionLine(stdout: string): string {
  return (stdout.split('\n').find((l) => /version/i.test(l)) ?? stdout.split('\n')[0] ?? '').trim();
}
