// `bulkhead run`: docker-run-like, through the CRI API: one pod per run, pulls the image if needed,
// and the workload's exit code becomes the command's.
import { closeSync, openSync, readSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command, CommandContext } from './command.ts';
import { UsageError } from './command.ts';
import type { CriClient } from '../cri/client.ts';
import type { ContainerConfig, ContainerStatus, KeyValue, Mount, PodSandboxConfig, PortMapping, LinuxContainerResources } from '../api/cri.ts';
import { explainDaemonError, findEmptyCliPod, withClient } from './client.ts';
import { parseSize } from './format.ts';
import { ensureImage } from './pull.ts';
import { readLogs } from './log-reader.ts';
import { NETWORK_ANNOTATION } from '../cri/annotations.ts';
import { VOLUMES_ANNOTATION } from '../vm/annotations.ts';
import { SINGLE_CONTAINER_ANNOTATION } from '../api/annotations.ts';
import { AlreadyExistsError, BulkheadError, errorReason, FailedPreconditionError } from '../errors.ts';

export { CLI_POD_LABEL as CLI_LABEL } from '../daemon/cli-pods.ts';
import { CLI_POD_LABEL as CLI_LABEL, cliLogDirectory, removeCliLogDirectory } from '../daemon/cli-pods.ts';

export interface RunRequest {
  image: string;
  args: string[];
  name: string;
  isolation: string;
  detach: boolean;
  remove: boolean;
  interactive: boolean;
  tty: boolean;
  env: string[];
  volumes: string[];
  publish: string[];
  memory?: string;
  cpus?: string;
  workdir?: string;
  user?: string;
  entrypoint?: string;
  hostname?: string;
  network: string;
  readOnly: boolean;
  privileged: boolean;
  capAdd: string[];
  capDrop: string[];
  labels: string[];
  /** `--sysctl K=V` (as docker has): the pod's sysctls, judged by the policy like a CRI pod's. */
  sysctls?: string[];
  /** Pod namespace; the trust policy may match on it. Default "bulkhead". */
  namespace?: string;
  /** `--vm-volumes copy|share`: how a microVM pod gets its -v volumes (default: shared when one is read-write, else the handler's mode). */
  vmVolumes?: string;
}

export interface RunHooks {
  /** Called once the pod exists (e.g. to read which handler the policy chose). */
  onPod?(podId: string): Promise<void>;
}

function list(v: unknown): string[] {
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).map(String);
}

export function parseEnv(items: string[], env: NodeJS.ProcessEnv): KeyValue[] {
  const out: KeyValue[] = [];
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq === 0) throw new UsageError(`invalid environment variable "${item}"`);
    if (eq < 0) { const v = env[item]; if (v !== undefined) out.push({ key: item, value: v }); }
    else out.push({ key: item.slice(0, eq), value: item.slice(eq + 1) });
  }
  return out;
}

export function parseVolume(spec: string, cwd: string): Mount {
  const parts = spec.split(':');
  if (parts.length < 2 || parts.length > 3 || !parts[0] || !parts[1]) throw new UsageError(`invalid volume "${spec}": use HOST_PATH:CONTAINER_PATH[:ro|rw]`);
  const [host, target, mode = 'rw'] = parts as [string, string, string?];
  if (!target.startsWith('/')) throw new UsageError(`invalid volume "${spec}": the container path must be absolute`);
  const opts = mode.split(',');
  for (const o of opts) if (!['ro', 'rw', 'z', 'Z', 'shared', 'slave', 'private', 'rshared', 'rslave', 'rprivate'].includes(o)) throw new UsageError(`invalid volume option "${o}" in "${spec}"`);
  const m: Mount = { hostPath: resolve(cwd, host), containerPath: target, readonly: opts.includes('ro') };
  if (opts.some((o) => o.endsWith('shared'))) m.propagation = 'PROPAGATION_BIDIRECTIONAL';
  else if (opts.some((o) => o.endsWith('slave'))) m.propagation = 'PROPAGATION_HOST_TO_CONTAINER';
  return m;
}

export function parsePublish(spec: string): PortMapping {
  // [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp|sctp]
  const [ports, proto = 'tcp'] = spec.split('/') as [string, string?];
  const parts = ports.split(':');
  const num = (s: string | undefined): number => {
    const n = Number(s);
    if (!s || !Number.isInteger(n) || n < 1 || n > 65535) throw new UsageError(`invalid port in "${spec}"`);
    return n;
  };
  if (!['tcp', 'udp', 'sctp'].includes(proto.toLowerCase())) throw new UsageError(`invalid protocol in "${spec}"`);
  let hostIp = '';
  let hostPort: number;
  let containerPort: number;
  if (parts.length === 2) { hostPort = num(parts[0]); containerPort = num(parts[1]); }
  else if (parts.length === 3) { hostIp = parts[0]!; hostPort = num(parts[1]); containerPort = num(parts[2]); }
  else throw new UsageError(`invalid port mapping "${spec}": use [HOST_IP:]HOST_PORT:CONTAINER_PORT`);
  return { protocol: proto.toUpperCase() as 'TCP' | 'UDP' | 'SCTP', hostPort, containerPort, hostIp };
}

/** --memory: a positive size (bytes, or with a unit k, m, g, t). */
export function parseMemory(text: string): number {
  let n: number;
  try { n = parseSize(text); } catch { n = NaN; }
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`invalid --memory ${JSON.stringify(text)}: give a positive size in bytes or with a unit k, m, g, t (examples: 64m, 1g)`);
  return n;
}

export function parseCpus(text: string): { cpuQuota: number; cpuPeriod: number } {
  const n = Number(text);
  if (!text.trim() || !Number.isFinite(n) || n <= 0 || n > 1024) throw new UsageError(`invalid --cpus ${JSON.stringify(text)}: give a number of CPUs above 0, at most 1024 (example: 0.5)`);
  return { cpuPeriod: 100_000, cpuQuota: Math.round(n * 100_000) };
}

function userContext(user: string | undefined): Record<string, unknown> {
  if (!user) return {};
  const [u, g] = user.split(':') as [string, string?];
  const out: Record<string, unknown> = /^\d+$/.test(u) ? { runAsUser: { value: Number(u) } } : { runAsUsername: u };
  if (g !== undefined) {
    if (!/^\d+$/.test(g)) throw new UsageError(`--user group must be numeric: "${user}"`);
    out.runAsGroup = { value: Number(g) };
  }
  return out;
}

/**
 * A --name the daemon will take: the CRI's limit (253 characters), no '/' or NUL, and short enough
 * that the pod's log directory `<namespace>_<name>_<uid>` fits in one 255-byte path component.
 */
export function checkRunName(name: string, namespace: string): void {
  const max = Math.min(253, 255 - Buffer.byteLength(namespace) - 38);
  const len = Buffer.byteLength(name);
  if (name === '') throw new UsageError('invalid --name "": a name must not be empty');
  if (len > max) throw new UsageError(`invalid --name: too long (${len} > ${max} characters, so that its log directory name fits the 255-byte limit): use a shorter name`);
  if (/[\0/]/.test(name)) throw new UsageError(`invalid --name ${JSON.stringify(name)}: a name may not contain '/' or a NUL byte`);
}

/** `--sysctl K=V` items → the pod's sysctls (the last of a name wins); malformed ones are a usage error. */
export function parseSysctls(items: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf('=');
    const k = eq < 0 ? '' : item.slice(0, eq);
    if (!/^[a-z0-9_-]+([./][a-z0-9_-]+)+$/.test(k)) throw new UsageError(`invalid --sysctl ${JSON.stringify(item.slice(0, 100))}: expected NAME=VALUE with a dotted name (example: --sysctl net.ipv4.ip_unprivileged_port_start=80)`);
    out[k] = item.slice(eq + 1);
  }
  return out;
}

/**
 * How a microVM pod gets the run's volumes (the pod annotation VOLUMES_ANNOTATION; other handlers
 * ignore it): no -v, none (the pod may start as a template's clone: src/vm/template.ts); --vm-volumes
 * as given; a read-write -v, shared (a handler that copies volumes would refuse a read-write directory
 * and never bring a copied file's writes back); only read-only ones, the handler's mode (copied when
 * it copies: a clone).
 */
function vmVolumesAnnotation(req: RunRequest, mounts: readonly Mount[]): Record<string, string> {
  if (req.vmVolumes !== undefined && req.vmVolumes !== 'copy' && req.vmVolumes !== 'share') throw new UsageError(`--vm-volumes must be copy or share`);
  if (mounts.length === 0) {
    if (req.vmVolumes !== undefined) throw new UsageError('--vm-volumes needs a -v volume');
    return { [VOLUMES_ANNOTATION]: 'none' };
  }
  if (req.vmVolumes !== undefined) return { [VOLUMES_ANNOTATION]: req.vmVolumes };
  return mounts.some((m) => !m.readonly) ? { [VOLUMES_ANNOTATION]: 'share' } : {};
}

/** The pod and container configs for a run request (pure, so it is tested on its own). */
export function buildConfigs(req: RunRequest, root: string, env: NodeJS.ProcessEnv, cwd: string): { pod: PodSandboxConfig; container: ContainerConfig } {
  if (!['bridge', 'none', 'host'].includes(req.network)) throw new UsageError(`--network must be bridge, none or host`);
  checkRunName(req.name, req.namespace ?? 'bulkhead');
  const labels: Record<string, string> = { [CLI_LABEL]: 'run' };
  for (const l of req.labels) {
    const eq = l.indexOf('=');
    labels[eq < 0 ? l : l.slice(0, eq)] = eq < 0 ? '' : l.slice(eq + 1);
  }
  const mounts = req.volumes.map((v) => parseVolume(v, cwd));
  const uid = uuid4();
  const pod: PodSandboxConfig = {
    metadata: { name: req.name, uid, namespace: req.namespace ?? 'bulkhead', attempt: 0 },
    hostname: req.hostname ?? req.name.slice(0, 63),
    logDirectory: cliLogDirectory(root, { namespace: req.namespace ?? 'bulkhead', name: req.name, uid })!,
    portMappings: req.publish.map(parsePublish),
    labels,
    annotations: {
      [NETWORK_ANNOTATION]: req.network, ...vmVolumesAnnotation(req, mounts),
      // a --rm run's pod holds its one container and goes with it: a gVisor pod on the loopback-only
      // network may then run it as the sandbox itself, one runsc sandbox as podman makes it
      ...(req.remove && !req.detach ? { [SINGLE_CONTAINER_ANNOTATION]: 'true' } : {}),
    },
    linux: {
      securityContext: {
        namespaceOptions: { network: req.network === 'host' ? 'NODE' : 'POD', pid: 'CONTAINER', ipc: 'POD' },
        privileged: req.privileged,
      },
      ...(req.sysctls?.length ? { sysctls: parseSysctls(req.sysctls) } : {}),
    },
  };
  const resources: LinuxContainerResources = {};
  if (req.memory !== undefined) {
    resources.memoryLimitInBytes = parseMemory(req.memory);
  }
  if (req.cpus !== undefined) Object.assign(resources, parseCpus(req.cpus));
  const container: ContainerConfig = {
    metadata: { name: req.name, attempt: 0 },
    image: { image: req.image, userSpecifiedImage: req.image },
    command: req.entrypoint !== undefined ? [req.entrypoint] : [],
    args: req.args,
    envs: parseEnv(req.env, env),
    mounts,
    labels,
    logPath: `${req.name}.log`,
    stdin: req.interactive,
    stdinOnce: req.interactive,
    tty: req.tty,
    linux: {
      resources,
      securityContext: {
        readonlyRootfs: req.readOnly,
        privileged: req.privileged,
        capabilities: { addCapabilities: req.capAdd, dropCapabilities: req.capDrop },
        ...userContext(req.user),
      },
    },
  };
  if (req.workdir !== undefined) container.workingDir = req.workdir;
  return { pod, container };
}

async function waitExit(client: CriClient, id: string, signal: AbortSignal): Promise<ContainerStatus> {
  let delay = 10;
  for (;;) {
    const { status } = await client.containerStatus(id);
    if (status.state === 'CONTAINER_EXITED' || status.state === 'CONTAINER_UNKNOWN') return status;
    if (signal.aborted) return status;
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 200);
  }
}

/**
 * Random bytes from the kernel. node:crypto would do, but importing it costs the CLI ~7-10 ms at
 * every `run`, for a name and a pod uid.
 */
function urandom(n: number): Buffer {
  const b = Buffer.alloc(n);
  const fd = openSync('/dev/urandom', 'r');
  try { readSync(fd, b, 0, n, null); } finally { closeSync(fd); }
  return b;
}

/** An RFC 4122 version-4 UUID. */
export function uuid4(): string {
  const b = urandom(16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function generateName(): string {
  return `bh-${urandom(4).toString('hex')}`;
}

const command: Command = {
  name: 'run',
  synopsis: 'bulkhead run [--isolation HANDLER] [--rm] [-d] [-i] [-t] [-e K=V] [-v SRC:DST[:ro]] [--vm-volumes copy|share] [-p HOST:CTR] [--memory SIZE] [--cpus N] [--sysctl K=V] [--name NAME] [--network bridge|none|host] IMAGE [CMD...]',
  summary: 'Run a command in a new sandboxed container (pulls the image if needed)',
  stopAtFirstPositional: true,
  // everything run starts is awaited (the pod removed, the log read to its end): the process ends
  // with it (the workload's exit code), not after Node has wound down the connection
  exitWhenDone: true,
  flags: {
    isolation: { type: 'string' },
    runtime: { type: 'string' },
    rm: { type: 'boolean' },
    detach: { type: 'boolean', short: 'd' },
    interactive: { type: 'boolean', short: 'i' },
    tty: { type: 'boolean', short: 't' },
    env: { type: 'string', short: 'e', multiple: true },
    volume: { type: 'string', short: 'v', multiple: true },
    publish: { type: 'string', short: 'p', multiple: true },
    memory: { type: 'string', short: 'm' },
    cpus: { type: 'string' },
    name: { type: 'string' },
    workdir: { type: 'string', short: 'w' },
    user: { type: 'string', short: 'u' },
    entrypoint: { type: 'string' },
    hostname: { type: 'string', short: 'h' },
    network: { type: 'string' },
    'read-only': { type: 'boolean' },
    privileged: { type: 'boolean' },
    'cap-add': { type: 'string', multiple: true },
    'cap-drop': { type: 'string', multiple: true },
    sysctl: { type: 'string', multiple: true },
    'vm-volumes': { type: 'string' },
    label: { type: 'string', short: 'l', multiple: true },
    quiet: { type: 'boolean', short: 'q' },
  },
  async run(ctx) {
    const f = ctx.flags;
    const [image, ...args] = ctx.args;
    if (!image) throw new UsageError('run needs an IMAGE (example: bulkhead run busybox echo hello)');
    const req: RunRequest = {
      image, args,
      name: (f.name as string | undefined) ?? generateName(),
      isolation: (f.isolation as string | undefined) ?? (f.runtime as string | undefined) ?? '',
      detach: Boolean(f.detach), remove: Boolean(f.rm), interactive: Boolean(f.interactive), tty: Boolean(f.tty),
      env: list(f.env), volumes: list(f.volume), publish: list(f.publish),
      network: (f.network as string | undefined) ?? 'bridge',
      readOnly: Boolean(f['read-only']), privileged: Boolean(f.privileged),
      capAdd: list(f['cap-add']), capDrop: list(f['cap-drop']), labels: list(f.label),
      sysctls: list(f.sysctl),
      ...(typeof f['vm-volumes'] === 'string' ? { vmVolumes: f['vm-volumes'] } : {}),
    };
    for (const k of ['memory', 'cpus', 'workdir', 'user', 'entrypoint', 'hostname'] as const) {
      const v = f[k];
      if (typeof v === 'string') req[k] = v;
    }
    if (req.detach && req.remove) throw new UsageError('--rm and -d cannot be combined here (a detached container is removed with bulkhead rm)');
    // bad flags are refused before any daemon is reached (or started) or any image pulled
    buildConfigs(req, ctx.global.root, process.env, process.cwd());
    return await withClient(ctx, (client) => runWith(client, req, ctx));
  },
};
export default command;

/** A microVM volume copy that cannot be made (src/vm/copy-volumes.ts) names what `run` can do instead. */
function copyRefusalHint(err: unknown): unknown {
  if (!(err instanceof BulkheadError) || err.code !== 'FailedPrecondition' || !err.message.includes(`${VOLUMES_ANNOTATION}=copy`)) return err;
  return new FailedPreconditionError(`${err.message}; with bulkhead run, --vm-volumes share gives the pod's VM a virtio-fs share instead`, { cause: err });
}

/** How often a run following its container's log asks for its status while the event stream is open. */
const STATUS_SAFETY_NET_MS = 2000;

/** The whole run, on an open client. Returns the workload's exit code. */
export async function runWith(client: CriClient, req: RunRequest, ctx: CommandContext, hooks: RunHooks = {}): Promise<number> {
  const quiet = Boolean(ctx.flags.quiet);
  // the pod does not depend on the image: it is made while the image is looked up (or pulled), one
  // round trip less on every run; a pod left without its container is removed whatever --rm says
  const { pod, container } = buildConfigs(req, ctx.global.root, process.env, process.cwd());
  const podMade = client.runPodSandbox(pod, req.isolation);
  const image = ensureImage(client, req.image, ctx, quiet);
  const [podResult, imageResult] = await Promise.allSettled([podMade, image]);
  if (podResult.status === 'rejected') {
    const err: unknown = podResult.reason;
    if (err instanceof BulkheadError && err.code === 'AlreadyExists') {
      const left = await findEmptyCliPod(client, req.name).catch(() => undefined);
      if (left) throw new AlreadyExistsError(`the name "${req.name}" is held by the pod of an earlier run that was interrupted before its container was made: remove it with 'bulkhead rm ${req.name}' and run again`, { cause: err });
      throw new AlreadyExistsError(`the name "${req.name}" is in use (${err.message}): remove it with 'bulkhead rm -f ${req.name}' or choose another --name`, { cause: err });
    }
    throw err;
  }
  const podId = podResult.value;
  if (imageResult.status === 'rejected') {
    await client.removePodSandbox(podId).then(() => removeCliLogDirectory(ctx.global.root, pod.metadata), () => {});
    throw imageResult.reason;
  }
  const imageRef = imageResult.value;
  req.image = imageRef;
  container.image = { image: imageRef, userSpecifiedImage: ctx.args[0] ?? imageRef };
  let cleaning: Promise<void> | undefined;
  // once: started early when the exit is known (see below), awaited before the run returns
  const cleanup = (): Promise<void> => {
    if (!req.remove) return Promise.resolve();
    // CRI RemovePodSandbox stops whatever still runs (containers, pause, network) before it
    // removes, so a separate StopPodSandbox round trip would only add time.
    cleaning ??= client.removePodSandbox(podId).then(() => removeCliLogDirectory(ctx.global.root, pod.metadata), () => {});
    return cleaning;
  };
  try {
    await hooks.onPod?.(podId);
    const id = await client.createContainer(podId, container, pod).catch((err: unknown) => { throw copyRefusalHint(err); });
    if (req.detach) {
      await client.startContainer(id);
      ctx.stdout.write(id + '\n');
      return 0;
    }
    let streaming: Promise<{ exitCode: number }> | undefined;
    if (req.interactive || req.tty) {
      const url = await client.attach({ containerId: id, stdin: req.interactive, tty: req.tty, stdout: true, stderr: !req.tty });
      let opened!: () => void;
      const open = new Promise<void>((r) => { opened = r; });
      // the stream client (WebSocket, terminal) is loaded only for -i/-t runs
      const { runStream } = await import('./stream-client.ts');
      streaming = runStream(url, {
        ...(req.interactive ? { stdin: process.stdin } : {}),
        stdout: ctx.stdout, stderr: ctx.stderr, tty: req.tty, signal: ctx.signal, onOpen: () => opened(),
      });
      await Promise.race([open, streaming]);
    }
    // the log file is where the CLI asked the kubelet-style config to put it (no status round trip)
    const logPath = join(pod.logDirectory ?? '', container.logPath ?? '');
    // the exit comes as an event the moment the daemon sees it (subscribed before the start)
    const events = new AbortController();
    const stopped = streaming ? undefined : stoppedEvent(client, id, events.signal);
    try {
      await client.startContainer(id);
    } catch (err) {
      events.abort();
      const msg = (explainDaemonError(err, ctx.global) as Error).message;
      ctx.stderr.write(`bulkhead: cannot start container: ${msg}\n`);
      // as a shell and docker do: 127 when the command is not there, 126 when it cannot run
      return errorReason(err) === 'BH_COMMAND_NOT_FOUND' ? 127 : 126;
    }
    const onAbort = (): void => { void client.stopContainer(id, 10).catch(() => {}); };
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    try {
      if (streaming) {
        await streaming;
      } else {
        let exited = false;
        // while the event stream is open the STOPPED event says it: the status is asked for only
        // every STATUS_SAFETY_NET_MS (not at each end of the log file, a round trip every 100 ms)
        let streamOpen = stopped !== undefined;
        let asked = Date.now();
        stopped?.then((ended) => {
          exited ||= ended !== false;
          streamOpen = false;
          // the STOPPED event carried the exit: a --rm pod's removal starts now, beside the last
          // read of the log (the file stays open; conmon wrote all of it before the exit file)
          if (ended !== false && ended.status !== undefined) void cleanup();
        });
        const follow = readLogs(logPath, {
          follow: true,
          // the STOPPED event usually says it first; polling the status is the safety net
          exited: async () => {
            if (exited) return true;
            if (streamOpen && Date.now() - asked < STATUS_SAFETY_NET_MS) return false;
            asked = Date.now();
            const s = (await client.containerStatus(id)).status.state;
            exited = s === 'CONTAINER_EXITED' || s === 'CONTAINER_UNKNOWN';
            return exited;
          },
          pollMs: stopped ? 100 : 20,
          ...(stopped ? { wake: stopped.then((ended) => ended !== false) } : {}),
        });
        for await (const line of follow) (line.stream === 'stderr' ? ctx.stderr : ctx.stdout).write(line.content);
      }
      // the STOPPED event carries the exit (no status round trip); without it, asked for
      const ended = stopped ? await Promise.race([stopped, Promise.resolve(false as const)]) : false;
      const final = (ended !== false ? ended.status : undefined) ?? await waitExit(client, id, ctx.signal);
      if (final.reason === 'OOMKilled') ctx.stderr.write(`bulkhead: container was killed: out of memory (limit ${req.memory ?? 'unset'})\n`);
      return final.exitCode;
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
      events.abort();
    }
  } finally {
    await cleanup();
  }
}

/**
 * Resolves when the daemon reports container `id` stopped (with its status, which the STOPPED event
 * carries) or deleted; false if the stream ends or fails first.
 */
async function stoppedEvent(client: CriClient, id: string, signal: AbortSignal): Promise<{ status: ContainerStatus | undefined } | false> {
  try {
    for await (const ev of client.getContainerEvents({ signal })) {
      if (ev.containerId !== id) continue;
      if (ev.containerEventType === 'CONTAINER_STOPPED_EVENT') {
        const st = ev.containersStatuses.find((c) => c.id === id);
        return { status: st?.state === 'CONTAINER_EXITED' ? st : undefined };
      }
      if (ev.containerEventType === 'CONTAINER_DELETED_EVENT') return { status: undefined };
    }
  } catch { /* aborted, or a daemon without events: the status poll decides */ }
  return false;
}
