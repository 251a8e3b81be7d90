/**
 * The typed CRI client the CLI, the tests and the benches use: promise-returning methods for every
 * RuntimeService and ImageService RPC and for Bulkhead's extension service; server streams are
 * async iterables. Errors come back as the classes of src/errors.ts (status → class in status.ts).
 *
 * Lifecycle: `connect(socket)` checks that a server answers (UnavailableError otherwise), then
 * every call goes over one shared channel until `close()`.
 */
import * as grpc from '@grpc/grpc-js';
import { UnavailableError } from '../errors.ts';
import type {
  Container, ContainerConfig, ContainerEventResponse, ContainerFilter, ContainerStats, ContainerStatsFilter,
  ContainerStatusResponse, ExecSyncResponse, LinuxContainerResources, PodSandbox, PodSandboxConfig, PodSandboxFilter,
  PodSandboxStats, PodSandboxStatsFilter, PodSandboxStatusResponse, StringMap,
} from '../engine/types.ts';
import type {
  AttachRequest, AuthConfig, ExecRequest, Image, ImageFsInfoResponse, ImageStatusResponse, InfoResponse,
  LoadImageResponse, MetricDescriptor, PodSandboxMetrics, PullProgressEvent, RuntimeConfigResponse, StatusResponse,
  VersionResponse,
} from './messages.ts';
import { loadProtos } from './proto.ts';
import { socketAnswers } from './socket.ts';
import { fromServiceError } from './status.ts';

export interface CallOptions {
  /** Deadline for this call; default the client's callTimeoutMs (none for pulls, loads and streams). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface ConnectOptions {
  /** How long to wait for the server to answer; default 5 s. */
  timeoutMs?: number;
  /** Default deadline of unary calls; default 5 minutes. */
  callTimeoutMs?: number;
}

type RawClient = grpc.Client & Record<string, Function>;

export class CriClient {
  readonly socket: string;
  readonly #runtime: RawClient;
  readonly #image: RawClient;
  readonly #ext: RawClient;
  readonly #callTimeoutMs: number;

  private constructor(socket: string, runtime: RawClient, image: RawClient, ext: RawClient, callTimeoutMs: number) {
    this.socket = socket;
    this.#runtime = runtime;
    this.#image = image;
    this.#ext = ext;
    this.#callTimeoutMs = callTimeoutMs;
  }

  /** @internal use connect(). */
  static create(socket: string, opts: ConnectOptions): CriClient {
    const protos = loadProtos();
    const target = `unix://${socket}`;
    const creds = grpc.credentials.createInsecure();
    const channelOpts = { 'grpc.max_receive_message_length': 32 * 1024 * 1024 };
    const runtime = new protos.RuntimeServiceClient(target, creds, channelOpts) as unknown as RawClient;
    const shared = { ...channelOpts, channelOverride: runtime.getChannel() as grpc.Channel };
    const image = new protos.ImageServiceClient(target, creds, shared) as unknown as RawClient;
    const ext = new protos.BulkheadClient(target, creds, shared) as unknown as RawClient;
    return new CriClient(socket, runtime, image, ext, opts.callTimeoutMs ?? 300_000);
  }

  close(): void {
    this.#runtime.close();
  }

  /** Resolves when the channel is connected; rejects after `deadline` (ms since the epoch). */
  waitForReady(deadline: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      grpc.waitForClientReady(this.#runtime, deadline, (err) => { if (err) reject(err); else resolve(); });
    });
  }

  #unary<T>(client: RawClient, method: string, req: object, opts: CallOptions = {}, defaultTimeout: number | null = this.#callTimeoutMs): Promise<T> {
    opts.signal?.throwIfAborted();
    const timeout = opts.timeoutMs ?? defaultTimeout;
    const callOpts: grpc.CallOptions = timeout === null ? {} : { deadline: Date.now() + timeout };
    return new Promise<T>((resolve, reject) => {
      const call = client[method]!.call(client, req, callOpts, (err: grpc.ServiceError | null, res: T) => {
        opts.signal?.removeEventListener('abort', onAbort);
        if (err) reject(fromServiceError(err)); else resolve(res);
      }) as grpc.ClientUnaryCall;
      const onAbort = (): void => call.cancel();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async *#stream<T>(client: RawClient, method: string, req: object, opts: CallOptions = {}): AsyncGenerator<T> {
    opts.signal?.throwIfAborted();
    const callOpts: grpc.CallOptions = opts.timeoutMs === undefined ? {} : { deadline: Date.now() + opts.timeoutMs };
    const call = client[method]!.call(client, req, callOpts) as grpc.ClientReadableStream<T>;
    const onAbort = (): void => call.cancel();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const msg of call) yield msg as T;
    } catch (err) {
      throw fromServiceError(err);
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      call.cancel();
    }
  }

  // RuntimeService

  version(opts?: CallOptions): Promise<VersionResponse> { return this.#unary(this.#runtime, 'version', { version: 'v1' }, opts); }
  status(verbose = false, opts?: CallOptions): Promise<StatusResponse> { return this.#unary(this.#runtime, 'status', { verbose }, opts); }
  runtimeConfig(opts?: CallOptions): Promise<RuntimeConfigResponse> { return this.#unary(this.#runtime, 'runtimeConfig', {}, opts); }
  async updateRuntimeConfig(podCidr: string, opts?: CallOptions): Promise<void> {
    await this.#unary(this.#runtime, 'updateRuntimeConfig', { runtimeConfig: { networkConfig: { podCidr } } }, opts);
  }

  async runPodSandbox(config: PodSandboxConfig, runtimeHandler = '', opts?: CallOptions): Promise<string> {
    const r = await this.#unary<{ podSandboxId: string }>(this.#runtime, 'runPodSandbox', { config, runtimeHandler }, opts);
    return r.podSandboxId;
  }
  async stopPodSandbox(podSandboxId: string, opts?: CallOptions): Promise<void> { await this.#unary(this.#runtime, 'stopPodSandbox', { podSandboxId }, opts); }
  async removePodSandbox(podSandboxId: string, opts?: CallOptions): Promise<void> { await this.#unary(this.#runtime, 'removePodSandbox', { podSandboxId }, opts); }
  podSandboxStatus(podSandboxId: string, verbose = false, opts?: CallOptions): Promise<PodSandboxStatusResponse> {
    return this.#unary(this.#runtime, 'podSandboxStatus', { podSandboxId, verbose }, opts);
  }
  async listPodSandbox(filter?: PodSandboxFilter, opts?: CallOptions): Promise<PodSandbox[]> {
    return (await this.#unary<{ items: PodSandbox[] }>(this.#runtime, 'listPodSandbox', filter ? { filter } : {}, opts)).items;
  }

  async createContainer(podSandboxId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig | null, opts?: CallOptions): Promise<string> {
    const req = sandboxConfig ? { podSandboxId, config, sandboxConfig } : { podSandboxId, config };
    return (await this.#unary<{ containerId: string }>(this.#runtime, 'createContainer', req, opts)).containerId;
  }
  async startContainer(containerId: string, opts?: CallOptions): Promise<void> { await this.#unary(this.#runtime, 'startContainer', { containerId }, opts); }
  /** `timeoutSec`: grace period before SIGKILL. The call's own deadline grows with it. */
  async stopContainer(containerId: string, timeoutSec = 10, opts: CallOptions = {}): Promise<void> {
    await this.#unary(this.#runtime, 'stopContainer', { containerId, timeout: timeoutSec }, { ...opts, timeoutMs: opts.timeoutMs ?? this.#callTimeoutMs + timeoutSec * 1000 });
  }
  async removeContainer(containerId: string, opts?: CallOptions): Promise<void> { await this.#unary(this.#runtime, 'removeContainer', { containerId }, opts); }
  async listContainers(filter?: ContainerFilter, opts?: CallOptions): Promise<Container[]> {
    return (await this.#unary<{ containers: Container[] }>(this.#runtime, 'listContainers', filter ? { filter } : {}, opts)).containers;
  }
  containerStatus(containerId: string, verbose = false, opts?: CallOptions): Promise<ContainerStatusResponse> {
    return this.#unary(this.#runtime, 'containerStatus', { containerId, verbose }, opts);
  }
  async updateContainerResources(containerId: string, linux: LinuxContainerResources, annotations: StringMap = {}, opts?: CallOptions): Promise<void> {
    await this.#unary(this.#runtime, 'updateContainerResources', { containerId, linux, annotations }, opts);
  }
  async reopenContainerLog(containerId: string, opts?: CallOptions): Promise<void> { await this.#unary(this.#runtime, 'reopenContainerLog', { containerId }, opts); }
  /** `timeoutSec` 0 = no timeout on the command. */
  execSync(containerId: string, cmd: string[], timeoutSec = 0, opts: CallOptions = {}): Promise<ExecSyncResponse> {
    const deadline = timeoutSec > 0 ? timeoutSec * 1000 + 30_000 : null;
    return this.#unary(this.#runtime, 'execSync', { containerId, cmd, timeout: timeoutSec }, opts, deadline);
  }
  async exec(req: ExecRequest, opts?: CallOptions): Promise<string> { return (await this.#unary<{ url: string }>(this.#runtime, 'exec', req, opts)).url; }
  async attach(req: AttachRequest, opts?: CallOptions): Promise<string> { return (await this.#unary<{ url: string }>(this.#runtime, 'attach', req, opts)).url; }
  async portForward(podSandboxId: string, ports: number[] = [], opts?: CallOptions): Promise<string> {
    return (await this.#unary<{ url: string }>(this.#runtime, 'portForward', { podSandboxId, port: ports }, opts)).url;
  }
  async containerStats(containerId: string, opts?: CallOptions): Promise<ContainerStats> {
    return (await this.#unary<{ stats: ContainerStats }>(this.#runtime, 'containerStats', { containerId }, opts)).stats;
  }
  async listContainerStats(filter?: ContainerStatsFilter, opts?: CallOptions): Promise<ContainerStats[]> {
    return (await this.#unary<{ stats: ContainerStats[] }>(this.#runtime, 'listContainerStats', filter ? { filter } : {}, opts)).stats;
  }
  async podSandboxStats(podSandboxId: string, opts?: CallOptions): Promise<PodSandboxStats> {
    return (await this.#unary<{ stats: PodSandboxStats }>(this.#runtime, 'podSandboxStats', { podSandboxId }, opts)).stats;
  }
  async listPodSandboxStats(filter?: PodSandboxStatsFilter, opts?: CallOptions): Promise<PodSandboxStats[]> {
    return (await this.#unary<{ stats: PodSandboxStats[] }>(this.#runtime, 'listPodSandboxStats', filter ? { filter } : {}, opts)).stats;
  }
  async checkpointContainer(containerId: string, location: string, opts?: CallOptions): Promise<void> {
    await this.#unary(this.#runtime, 'checkpointContainer', { containerId, location }, opts);
  }
  /** Container lifecycle events until the iteration stops or `signal` aborts. */
  getContainerEvents(opts?: CallOptions): AsyncGenerator<ContainerEventResponse> { return this.#stream(this.#runtime, 'getContainerEvents', {}, opts); }
  async listMetricDescriptors(opts?: CallOptions): Promise<MetricDescriptor[]> {
    return (await this.#unary<{ descriptors: MetricDescriptor[] }>(this.#runtime, 'listMetricDescriptors', {}, opts)).descriptors;
  }
  async listPodSandboxMetrics(opts?: CallOptions): Promise<PodSandboxMetrics[]> {
    return (await this.#unary<{ podMetrics: PodSandboxMetrics[] }>(this.#runtime, 'listPodSandboxMetrics', {}, opts)).podMetrics;
  }

  // ImageService

  async listImages(image?: string, opts?: CallOptions): Promise<Image[]> {
    return (await this.#unary<{ images: Image[] }>(this.#image, 'listImages', image ? { filter: { image: { image } } } : {}, opts)).images;
  }
  imageStatus(image: string, verbose = false, opts?: CallOptions): Promise<ImageStatusResponse> {
    return this.#unary(this.#image, 'imageStatus', { image: { image }, verbose }, opts);
  }
  /** Returns the image reference (its id). No default deadline. */
  async pullImage(image: string, auth?: AuthConfig, opts?: CallOptions): Promise<string> {
    const req = auth ? { image: { image }, auth } : { image: { image } };
    return (await this.#unary<{ imageRef: string }>(this.#image, 'pullImage', req, opts, null)).imageRef;
  }
  async removeImage(image: string, opts?: CallOptions): Promise<void> { await this.#unary(this.#image, 'removeImage', { image: { image } }, opts); }
  imageFsInfo(opts?: CallOptions): Promise<ImageFsInfoResponse> { return this.#unary(this.#image, 'imageFsInfo', {}, opts); }

  // Bulkhead extension service

  /** Layer progress events, then one `done` event. */
  pullImageWithProgress(image: string, auth?: AuthConfig, opts?: CallOptions): AsyncGenerator<PullProgressEvent> {
    return this.#stream(this.#ext, 'pullImageWithProgress', auth ? { image, auth } : { image }, opts);
  }
  /** Loads an image archive from a path on the daemon's host. No default deadline. */
  loadImage(path: string, opts?: CallOptions): Promise<LoadImageResponse> { return this.#unary(this.#ext, 'loadImage', { path }, opts, null); }
  info(opts?: CallOptions): Promise<InfoResponse> { return this.#unary(this.#ext, 'info', {}, opts); }
}

/**
 * Connects to the daemon on `socketPath`. Throws UnavailableError "no Bulkhead daemon answers on
 * <socket>" when nothing listens there.
 */
export async function connect(socketPath: string, opts: ConnectOptions = {}): Promise<CriClient> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  if (!(await socketAnswers(socketPath, timeoutMs))) throw new UnavailableError(`no Bulkhead daemon answers on ${socketPath}`);
  const client = CriClient.create(socketPath, opts);
  try {
    await client.waitForReady(Date.now() + timeoutMs);
  } catch (err) {
    client.close();
    throw new UnavailableError(`no Bulkhead daemon answers on ${socketPath}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return client;
}
