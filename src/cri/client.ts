/**
 * The typed CRI client the CLI, the tests and the benches use: promise-returning methods for every
 * RuntimeService and ImageService RPC and for Bulkhead's extension service; server streams are
 * async iterables. Errors come back as the classes of src/errors.ts (status → class in
 * src/wire/grpc-status.ts, the table the server's status.ts uses too).
 *
 * It speaks gRPC itself (src/wire/grpc-transport.ts over wire/h2.ts, wire/proto-codec.ts from the committed
 * descriptor) instead of loading @grpc/grpc-js and protobuf.js, which cost every CLI call ~300 ms
 * of start-up; messages have exactly the shapes @grpc/proto-loader gives (see codec.test.ts).
 *
 * Lifecycle: `connect(socket)` checks that a server answers (UnavailableError otherwise), then
 * every call goes over one shared HTTP/2 connection until `close()`.
 */
import { DeadlineExceededError, UnavailableError } from '../errors.ts';
import type {
  Container, ContainerConfig, ContainerEventResponse, ContainerFilter, ContainerStats, ContainerStatsFilter,
  ContainerStatusResponse, ExecSyncResponse, LinuxContainerResources, PodSandbox, PodSandboxConfig, PodSandboxFilter,
  PodSandboxStats, PodSandboxStatsFilter, PodSandboxStatusResponse, StringMap,
} from '../api/cri.ts';
import type {
  AttachRequest, AuthConfig, DiskUsageResponse, ExecRequest, Image, ImageFsInfoResponse, ImageStatusResponse, InfoResponse, PruneImagesResponse,
  LoadImageResponse, MetricDescriptor, PodSandboxMetrics, PullProgressEvent, RuntimeConfigResponse, StatusResponse,
  VersionResponse,
} from '../api/cri-messages.ts';
import { Codec } from '../wire/proto-codec.ts';
import { criSchema } from './schema.ts';
import type { Method, Service } from '../wire/proto-schema.ts';
import { errorFromStatus, GrpcStatus } from '../wire/grpc-status.ts';
import { GrpcCallError, GrpcChannel, LOCAL_DEADLINE, type CallOptions as WireCallOptions } from '../wire/grpc-transport.ts';

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

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Each client's channel, for connect() (not part of the client's API). */
const channels = new WeakMap<CriClient, GrpcChannel>();

export class CriClient {
  readonly socket: string;
  readonly #channel: GrpcChannel;
  readonly #codec: Codec;
  readonly #runtime: Service;
  readonly #image: Service;
  readonly #ext: Service;
  readonly #callTimeoutMs: number;

  private constructor(socket: string, channel: GrpcChannel, codec: Codec, callTimeoutMs: number) {
    this.socket = socket;
    this.#channel = channel;
    this.#codec = codec;
    this.#runtime = codec.schema.service('runtime.v1.RuntimeService');
    this.#image = codec.schema.service('runtime.v1.ImageService');
    this.#ext = codec.schema.service('bulkhead.v1.Bulkhead');
    this.#callTimeoutMs = callTimeoutMs;
    channels.set(this, channel);
  }

  /** @internal use connect(). */
  static create(socket: string, opts: ConnectOptions): CriClient {
    const channel = new GrpcChannel(socket, { maxReceiveMessageLength: 32 * 1024 * 1024 });
    return new CriClient(socket, channel, new Codec(criSchema()), opts.callTimeoutMs ?? 300_000);
  }

  close(): void {
    this.#channel.close();
  }

  /** Resolves when the channel is connected; rejects after `deadline` (ms since the epoch). */
  waitForReady(deadline: number): Promise<void> {
    return this.#channel.waitForReady(deadline);
  }

  #method(svc: Service, method: string): Method {
    const m = svc.methods.get(method);
    if (!m) throw new GrpcCallError(GrpcStatus.UNIMPLEMENTED, `${svc.fullName.slice(1)} has no method ${method}`);
    return m;
  }

  /** The request's bytes; a value the encoder refuses fails the call as grpc-js fails it (INTERNAL). */
  #encode(m: Method, req: object): Buffer {
    try {
      return this.#codec.encode(m.request, req);
    } catch (err) {
      throw new GrpcCallError(GrpcStatus.INTERNAL, `Request message serialization failure: ${errorMessage(err)}`);
    }
  }

  #decode<T>(m: Method, buf: Buffer): T {
    try {
      return this.#codec.decode(m.response, buf) as T;
    } catch (err) {
      throw new GrpcCallError(GrpcStatus.INTERNAL, `Response message parsing error: ${errorMessage(err)}`);
    }
  }

  #unary<T>(svc: Service, method: string, req: object, opts: CallOptions = {}, defaultTimeout: number | null = this.#callTimeoutMs): Promise<T> {
    opts.signal?.throwIfAborted();
    const timeout = opts.timeoutMs ?? defaultTimeout;
    const callOpts: WireCallOptions = {};
    if (timeout !== null) callOpts.deadline = Date.now() + timeout;
    if (opts.signal) callOpts.signal = opts.signal;
    let m: Method;
    let body: Buffer;
    try {
      m = this.#method(svc, method);
      body = this.#encode(m, req);
    } catch (err) {
      return Promise.reject(errorFromStatus(err));
    }
    return this.#channel.unary(m.path, body, callOpts).then(
      (buf) => { try { return this.#decode<T>(m, buf); } catch (err) { throw errorFromStatus(err); } },
      (err: unknown) => {
        // this client's own deadline (not a limit the daemon hit, whose error names its setting): said so
        if (err instanceof GrpcCallError && err.code === GrpcStatus.DEADLINE_EXCEEDED && err.details === LOCAL_DEADLINE && timeout !== null) {
          throw new DeadlineExceededError(`${m.path.split('/').pop() ?? method} got no answer within ${timeout} ms, this client's deadline for the call (the daemon stops its work on it once it sees the call gone)`, { cause: err });
        }
        throw errorFromStatus(err);
      },
    );
  }

  async *#stream<T>(svc: Service, method: string, req: object, opts: CallOptions = {}): AsyncGenerator<T> {
    opts.signal?.throwIfAborted();
    const callOpts: WireCallOptions = {};
    if (opts.timeoutMs !== undefined) callOpts.deadline = Date.now() + opts.timeoutMs;
    if (opts.signal) callOpts.signal = opts.signal;
    try {
      const m = this.#method(svc, method);
      const body = this.#encode(m, req);
      for await (const buf of this.#channel.serverStream(m.path, body, callOpts)) yield this.#decode<T>(m, buf);
    } catch (err) {
      throw errorFromStatus(err);
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
  /** `reprobe`: every handler probed again now, past cached answers (`bulkhead doctor`). */
  info(opts?: CallOptions, req: { reprobe?: boolean } = {}): Promise<InfoResponse> { return this.#unary(this.#ext, 'info', req.reprobe ? { reprobe: true } : {}, opts); }
  diskUsage(opts?: CallOptions): Promise<DiskUsageResponse> { return this.#unary(this.#ext, 'diskUsage', {}, opts, null); }
  pruneImages(all: boolean, opts?: CallOptions): Promise<PruneImagesResponse> { return this.#unary(this.#ext, 'pruneImages', { all }, opts, null); }
}

/**
 * Connects to the daemon on `socketPath`. Throws UnavailableError "no Bulkhead daemon answers on
 * <socket>" when nothing listens there.
 */
export async function connect(socketPath: string, opts: ConnectOptions = {}): Promise<CriClient> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const client = CriClient.create(socketPath, opts);
  try {
    // One connection, no separate probe: a socket nothing listens on fails the first attempt.
    await channels.get(client)!.waitForReady(Date.now() + timeoutMs, { failFast: true });
  } catch (err) {
    client.close();
    if (typeof (err as NodeJS.ErrnoException).code === 'string') throw new UnavailableError(`no Bulkhead daemon answers on ${socketPath}`, { cause: err });
    throw new UnavailableError(`no Bulkhead daemon answers on ${socketPath}: ${errorMessage(err)}`, { cause: err });
  }
  return client;
}
