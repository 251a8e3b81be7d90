// CriClient (HTTP/2 + codec of its own) against the daemon's real server stack: grpc-js with the
// proto-loader definitions and status.ts's serveService, with stub handlers on a temporary socket.
// The server must receive exactly what a grpc-js client would have sent, the client must return
// exactly what a grpc-js client would have returned, and statuses must map to the same classes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { connect, type CriClient } from './client.ts';
import { loadProtos } from './proto.ts';
import { serveService, stream, unary, type Impl, type RpcContext } from './status.ts';
import { BulkheadError, NotFoundError } from '../errors.ts';
import { createLogger } from '../util/log.ts';
import type { ContainerConfig, PodSandboxConfig } from '../api/cri.ts';

let dir: string;
let server: grpc.Server;
let client: CriClient;
const protos = loadProtos();
/** Requests as the server's handlers received them, by method. */
const received = new Map<string, unknown>();
/** Signals of the calls the server saw, by method. */
const signals = new Map<string, AbortSignal>();
/** Responses the stub handlers give, by method. */
const responses = new Map<string, unknown>();

function record(name: string, respond: (req: unknown, ctx: RpcContext) => Promise<unknown> = async () => responses.get(name) ?? {}): Impl {
  return unary(async (req, ctx) => { received.set(name, req); signals.set(name, ctx.signal); return await respond(req, ctx); });
}

function waitAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('gone')), { once: true }));
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bulkhead-client-'));
  const socket = join(dir, 'cri.sock');
  const logger = createLogger({ level: 'error', write: () => {} });
  const names = ['Version', 'RunPodSandbox', 'CreateContainer', 'ListContainers', 'ContainerStatus', 'ExecSync', 'UpdateContainerResources', 'ListPodSandbox', 'PortForward'];
  const impls: Record<string, Impl> = Object.fromEntries(names.map((n) => [n, record(n)]));
  impls.StopContainer = record('StopContainer', async (_req, ctx) => await waitAborted(ctx.signal));
  impls.RemoveContainer = record('RemoveContainer', async () => { throw new NotFoundError('no such container: c9 (ä 100%)'); });
  impls.GetContainerEvents = stream(async (req, ctx, send) => {
    received.set('GetContainerEvents', req);
    signals.set('GetContainerEvents', ctx.signal);
    for (let i = 0; i < 3; i++) await send({ containerId: `c${i}`, containerEventType: 'CONTAINER_STARTED_EVENT', createdAt: 1732672000123456789 + i });
    await waitAborted(ctx.signal);
  });
  const ext: Record<string, Impl> = {
    PullImageWithProgress: stream(async (req, _ctx, send) => {
      received.set('PullImageWithProgress', req);
      await send({ layer: { id: 'sha256:a', status: 'downloading', current: 5, total: 10 } });
      await send({ done: { imageRef: 'sha256:img', imageId: 'sha256:img', repoTags: ['t:1'], repoDigests: [], repoDigest: 'r@sha256:d', size: 2 ** 40 } });
    }),
  };
  server = new grpc.Server();
  for (const [def, impl] of [[protos.runtimeService, impls], [protos.imageService, {}], [protos.bulkheadService, ext]] as const) {
    const s = serveService(def, impl, logger);
    server.addService(s.definition, s.implementation);
  }
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  client = await connect(socket, { timeoutMs: 5000 });
});
after(async () => {
  client?.close();
  server?.forceShutdown();
  await rm(dir, { recursive: true, force: true });
});

/** What grpc-js + proto-loader deliver for `obj` as `method`'s request / response. */
function viaGrpcJs(method: string, obj: object, kind: 'request' | 'response'): unknown {
  const m = protos.runtimeService[method]!;
  return kind === 'request' ? m.requestDeserialize(m.requestSerialize(obj)) : m.responseDeserialize(m.responseSerialize(obj));
}

const podConfig: PodSandboxConfig = {
  metadata: { name: 'p', uid: 'u', namespace: 'n', attempt: 1 },
  hostname: 'p', logDirectory: '/l', dnsConfig: null, portMappings: [{ protocol: 'TCP', containerPort: 80, hostPort: 8080, hostIp: '' }],
  labels: { a: 'b' }, annotations: { 'bulkhead.dev/x': 'y' },
  linux: { cgroupParent: '', sysctls: {}, securityContext: { namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD', targetId: '', userNsOptions: null } } },
} as unknown as PodSandboxConfig;

test('requests reach the server exactly as grpc-js would deliver them', async () => {
  responses.set('RunPodSandbox', { podSandboxId: 'pod-1' });
  assert.equal(await client.runPodSandbox(podConfig, 'runc'), 'pod-1');
  assert.deepStrictEqual(received.get('RunPodSandbox'), viaGrpcJs('RunPodSandbox', { config: podConfig, runtimeHandler: 'runc' }, 'request'));

  const config = { metadata: { name: 'c' }, image: { image: 'busybox' }, command: ['sh'], envs: [{ key: 'A', value: '1' }], tty: true } as unknown as ContainerConfig;
  responses.set('CreateContainer', { containerId: 'ctr-1' });
  assert.equal(await client.createContainer('pod-1', config, podConfig), 'ctr-1');
  assert.deepStrictEqual(received.get('CreateContainer'), viaGrpcJs('CreateContainer', { podSandboxId: 'pod-1', config, sandboxConfig: podConfig }, 'request'));
  assert.equal(await client.createContainer('pod-1', config, null), 'ctr-1');
  assert.equal((received.get('CreateContainer') as { sandboxConfig: unknown }).sandboxConfig, null);

  await client.listContainers({ state: { state: 'CONTAINER_RUNNING' }, labelSelector: { a: 'b' } } as never);
  assert.deepStrictEqual(received.get('ListContainers'), viaGrpcJs('ListContainers', { filter: { state: { state: 'CONTAINER_RUNNING' }, labelSelector: { a: 'b' } } }, 'request'));
  await client.updateContainerResources('c', { cpuShares: 2, memoryLimitInBytes: 2 ** 40 } as never, { k: 'v' });
  assert.deepStrictEqual(received.get('UpdateContainerResources'), viaGrpcJs('UpdateContainerResources', { containerId: 'c', linux: { cpuShares: 2, memoryLimitInBytes: 2 ** 40 }, annotations: { k: 'v' } }, 'request'));
  responses.set('PortForward', { url: 'http://x' });
  assert.equal(await client.portForward('p', [80, 443]), 'http://x');
  assert.deepEqual((received.get('PortForward') as { port: number[] }).port, [80, 443]);
});

test('responses come back exactly as grpc-js returned them', async () => {
  const status = {
    status: {
      id: 'c', metadata: { name: 'c', attempt: 2 }, state: 'CONTAINER_EXITED', createdAt: 1732672000123456789, exitCode: -1,
      image: { image: 'busybox' }, labels: { a: 'b' }, mounts: [{ containerPath: '/a', hostPath: '/b', readonly: true }],
    },
    info: { pid: '1' },
  };
  responses.set('ContainerStatus', status);
  assert.deepStrictEqual(await client.containerStatus('c', true), viaGrpcJs('ContainerStatus', status, 'response'));
  const exec = { stdout: Buffer.from('hi\n'), stderr: Buffer.alloc(0), exitCode: 7 };
  responses.set('ExecSync', exec);
  assert.deepStrictEqual(await client.execSync('c', ['echo', 'hi'], 5), viaGrpcJs('ExecSync', exec, 'response'));
  responses.set('ListPodSandbox', { items: [{ id: 'p', state: 'SANDBOX_READY' }, { id: 'q' }] });
  assert.deepStrictEqual(await client.listPodSandbox(), (viaGrpcJs('ListPodSandbox', responses.get('ListPodSandbox') as object, 'response') as { items: unknown[] }).items);
  responses.set('Version', { version: '0.1.0', runtimeName: 'bulkhead', runtimeVersion: '0.1.0', runtimeApiVersion: 'v1' });
  assert.deepStrictEqual(await client.version(), viaGrpcJs('Version', responses.get('Version') as object, 'response'));
  assert.deepStrictEqual(received.get('Version'), { version: 'v1' });
});

test('statuses map to the error classes: NotFound with its message, Unimplemented, DeadlineExceeded, Aborted, Internal', async () => {
  const is = (code: string, message?: string | RegExp) => (err: unknown): boolean => {
    assert.ok(err instanceof BulkheadError, `expected a BulkheadError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (typeof message === 'string') assert.equal(err.message, message);
    else if (message) assert.match(err.message, message);
    return true;
  };
  await assert.rejects(client.removeContainer('c9'), is('NotFound', 'no such container: c9 (ä 100%)'));
  await assert.rejects(client.checkpointContainer('c', '/x'), is('Unimplemented', /CheckpointContainer is not implemented/));
  await assert.rejects(client.imageFsInfo(), is('Unimplemented'));
  // this client's own deadline, said as such (a limit the daemon hits comes with its own message)
  await assert.rejects(client.stopContainer('c', 0, { timeoutMs: 200 }), is('DeadlineExceeded', /^StopContainer got no answer within 200 ms, this client's deadline for the call/));
  const ac = new AbortController();
  const p = client.stopContainer('c', 0, { signal: ac.signal });
  setTimeout(() => ac.abort(), 100);
  await assert.rejects(p, is('Aborted', 'Cancelled on client'));
  for (let i = 0; i < 50 && !signals.get('StopContainer')!.aborted; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(signals.get('StopContainer')!.aborted, true, 'the server handler saw the cancellation');
  // A request that does not encode fails the call as grpc-js failed it.
  await assert.rejects(client.runPodSandbox('not a config' as unknown as PodSandboxConfig), is('Internal', /^Request message serialization failure: .*object expected/));
  // The client still works after all of that.
  assert.equal((await client.version()).runtimeName, 'bulkhead');
});

test('server streams: container events until aborted, pull progress with its oneof, early exit cancels', async () => {
  const ac = new AbortController();
  const got: unknown[] = [];
  await assert.rejects(async () => {
    for await (const ev of client.getContainerEvents({ signal: ac.signal })) {
      got.push(ev);
      if (got.length === 3) ac.abort();
    }
  }, (err: unknown) => err instanceof BulkheadError && err.code === 'Aborted');
  assert.equal(got.length, 3);
  assert.deepStrictEqual(got[2], viaGrpcJs('GetContainerEvents', { containerId: 'c2', containerEventType: 'CONTAINER_STARTED_EVENT', createdAt: 1732672000123456789 + 2 }, 'response'));
  for (let i = 0; i < 50 && !signals.get('GetContainerEvents')!.aborted; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(signals.get('GetContainerEvents')!.aborted, true);

  const evs = [];
  for await (const ev of client.pullImageWithProgress('busybox', { username: 'u', password: 'p' })) evs.push(ev);
  assert.deepStrictEqual(received.get('PullImageWithProgress'), { image: 'busybox', auth: { username: 'u', password: 'p', auth: '', serverAddress: '', identityToken: '', registryToken: '' } });
  assert.equal(evs.length, 2);
  assert.deepStrictEqual(evs[0], { layer: { id: 'sha256:a', status: 'downloading', current: 5, total: 10 }, event: 'layer' });
  assert.deepStrictEqual(evs[1], { done: { imageRef: 'sha256:img', imageId: 'sha256:img', repoTags: ['t:1'], repoDigests: [], repoDigest: 'r@sha256:d', size: 2 ** 40 }, event: 'done' });

  // Leaving the loop early ends the call on the server too.
  signals.delete('GetContainerEvents');
  for await (const _ of client.getContainerEvents()) break;
  for (let i = 0; i < 50 && !signals.get('GetContainerEvents')?.aborted; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(signals.get('GetContainerEvents')?.aborted, true);
});
