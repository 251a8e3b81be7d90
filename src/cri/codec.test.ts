// The codec against the reference it replaces: protobuf.js through @grpc/proto-loader with the
// options of src/cri/proto.ts (what the daemon's grpc-js server uses). Every message must decode to
// the same object (same keys, same order, same values) and encode to bytes the reference decodes
// to the same object, for hand-written CRI messages and for generated samples of every type.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { loaderOptions } from './proto.ts';
import { Codec } from '../wire/proto-codec.ts';
import { criSchema } from './schema.ts';
import type { EnumType, Field, MessageType } from '../wire/proto-schema.ts';

const descriptor = JSON.parse(readFileSync(join(import.meta.dirname, 'proto', 'descriptor.json'), 'utf8')) as Record<string, unknown>;
const pkg = protoLoader.fromJSON(descriptor, loaderOptions);
const root = protobuf.Root.fromJSON(descriptor);
root.resolveAll();
const schema = criSchema();
const codec = new Codec(schema);

/** The reference: proto-loader's serializer and deserializer for a message type. */
function ref(fullName: string): { encode(obj: unknown): Buffer; decode(buf: Uint8Array): Record<string, unknown> } {
  const t = root.lookupType(fullName);
  return {
    encode: (obj) => Buffer.from(t.encode(t.fromObject(obj as Record<string, unknown>)).finish()),
    decode: (buf) => t.toObject(t.decode(buf), loaderOptions as protobuf.IConversionOptions),
  };
}

/** Deep equality including key order (deepStrictEqual ignores the order of keys; JSON output does not). */
function sameShape(actual: unknown, expected: unknown, msg: string): void {
  assert.deepStrictEqual(actual, expected, msg);
  assert.equal(JSON.stringify(actual), JSON.stringify(expected), `${msg}: key order`);
}

/** Both directions for one message object. */
function roundTrip(fullName: string, obj: unknown): void {
  const r = ref(fullName);
  const t = schema.message(fullName);
  const mine = codec.encode(t, obj);
  const theirs = r.encode(obj);
  // Our bytes, read by the reference (the server), equal the reference's own round trip.
  sameShape(r.decode(mine), r.decode(theirs), `${fullName}: encode`);
  // The reference's bytes (the server's responses), read by us, equal what proto-loader gives.
  sameShape(codec.decode(t, theirs), r.decode(theirs), `${fullName}: decode`);
  sameShape(codec.decode(t, mine), r.decode(theirs), `${fullName}: own round trip`);
}

test('the service methods match grpc-js: paths, message types, streaming', () => {
  for (const svc of ['runtime.v1.RuntimeService', 'runtime.v1.ImageService', 'bulkhead.v1.Bulkhead']) {
    const def = pkg[svc] as Record<string, protoLoader.MethodDefinition<object, object>>;
    const methods = schema.service(svc).methods;
    assert.equal(methods.size, Object.keys(def).length, svc);
    for (const m of Object.values(def)) {
      const mine = methods.get(m.originalName!);
      assert.ok(mine, `${svc} ${m.originalName}`);
      assert.equal(mine.path, m.path);
      assert.equal(mine.responseStream, m.responseStream);
      assert.equal(mine.requestStream, m.requestStream);
      // Same request and response types: proto-loader's own (de)serializers agree with ours.
      assert.equal(mine.request.fullName.split('.').pop(), (m.requestType.type as { name?: string }).name);
      assert.equal(mine.response.fullName.split('.').pop(), (m.responseType.type as { name?: string }).name);
      sameShape(codec.decode(mine.response, m.responseSerialize({})), m.responseDeserialize(m.responseSerialize({})) as object, m.path);
      sameShape(m.requestDeserialize(codec.encode(mine.request, {})) as object, m.requestDeserialize(m.requestSerialize({})) as object, m.path);
    }
  }
  const events = schema.service('runtime.v1.RuntimeService').methods.get('getContainerEvents')!;
  assert.equal(events.responseStream, true);
  assert.equal(events.path, '/runtime.v1.RuntimeService/GetContainerEvents');
  assert.equal(schema.service('bulkhead.v1.Bulkhead').methods.get('pullImageWithProgress')!.responseStream, true);
});

const podConfig = {
  metadata: { name: 'web', uid: 'u-1', namespace: 'default', attempt: 2 },
  hostname: 'web',
  logDirectory: '/var/log/pods/x',
  dnsConfig: { servers: ['10.0.0.10'], searches: ['svc.cluster.local'], options: ['ndots:5'] },
  portMappings: [{ protocol: 'UDP', containerPort: 53, hostPort: 5353, hostIp: '127.0.0.1' }, { containerPort: 80 }],
  labels: { app: 'web', 'bulkhead.dev/trust': 'untrusted', '__proto__': 'odd key' },
  annotations: { a: 'b' },
  linux: {
    cgroupParent: '/kubepods',
    sysctls: { 'net.ipv4.ip_forward': '1' },
    securityContext: {
      namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD', targetId: '' },
      runAsUser: { value: 1000 },
      readonlyRootfs: true,
      supplementalGroups: [1, 2, 3000000000],
      seccomp: { profileType: 'Localhost', localhostRef: '/p.json' },
    },
    resources: { cpuPeriod: 100000, cpuQuota: -1, cpuShares: 2, memoryLimitInBytes: 9007199254740993, unified: { 'memory.high': 'max' } },
  },
};

test('real CRI requests the client sends encode as protobuf.js encodes them', () => {
  roundTrip('runtime.v1.VersionRequest', { version: 'v1' });
  roundTrip('runtime.v1.StatusRequest', { verbose: false });
  roundTrip('runtime.v1.UpdateRuntimeConfigRequest', { runtimeConfig: { networkConfig: { podCidr: '10.88.0.0/16' } } });
  roundTrip('runtime.v1.RunPodSandboxRequest', { config: podConfig, runtimeHandler: 'gvisor' });
  roundTrip('runtime.v1.RunPodSandboxRequest', { config: {} });
  roundTrip('runtime.v1.ListPodSandboxRequest', { filter: { state: { state: 'SANDBOX_READY' }, labelSelector: { app: 'web' } } });
  roundTrip('runtime.v1.ListPodSandboxRequest', {});
  roundTrip('runtime.v1.CreateContainerRequest', {
    podSandboxId: 'abc',
    config: {
      metadata: { name: 'c', attempt: 0 },
      image: { image: 'busybox:latest', annotations: {}, userSpecifiedImage: 'busybox' },
      command: ['sh', '-c'], args: ['echo hi; sleep 1'], workingDir: '/',
      envs: [{ key: 'A', value: '1' }, { key: 'EMPTY', value: '' }],
      mounts: [{ containerPath: '/data', hostPath: '/tmp/d', readonly: true, propagation: 'PROPAGATION_RPRIVATE', uidMappings: [{ containerId: 0, hostId: 100000, length: 65536 }] }],
      devices: [{ containerPath: '/dev/fuse', hostPath: '/dev/fuse', permissions: 'rwm' }],
      labels: { x: 'y' }, annotations: {}, logPath: 'c/0.log', stdin: false, stdinOnce: false, tty: true,
      linux: {
        resources: { memoryLimitInBytes: 67108864, oomScoreAdj: -998, hugepageLimits: [{ pageSize: '2MB', limit: 0 }] },
        securityContext: { capabilities: { addCapabilities: ['NET_ADMIN'], dropCapabilities: ['ALL'] }, privileged: false, maskedPaths: [], runAsUser: { value: 0 } },
      },
      cDIDevices: [{ name: 'vendor.com/gpu=0' }],
    },
    sandboxConfig: podConfig,
  });
  roundTrip('runtime.v1.StopContainerRequest', { containerId: 'c1', timeout: 10 });
  roundTrip('runtime.v1.ListContainersRequest', { filter: { id: '', state: { state: 'CONTAINER_EXITED' }, podSandboxId: 'p', labelSelector: {} } });
  roundTrip('runtime.v1.UpdateContainerResourcesRequest', { containerId: 'c', linux: { cpuShares: 512, memorySwapLimitInBytes: 0 }, annotations: { k: 'v' } });
  roundTrip('runtime.v1.ExecSyncRequest', { containerId: 'c', cmd: ['true'], timeout: 0 });
  roundTrip('runtime.v1.ExecRequest', { containerId: 'c', cmd: ['sh'], tty: true, stdin: true, stdout: true, stderr: false });
  roundTrip('runtime.v1.PortForwardRequest', { podSandboxId: 'p', port: [80, 8080, 65535] });
  roundTrip('runtime.v1.ListContainerStatsRequest', { filter: { labelSelector: { a: 'b' } } });
  roundTrip('runtime.v1.CheckpointContainerRequest', { containerId: 'c', location: '/tmp/x.tar' });
  roundTrip('runtime.v1.PullImageRequest', { image: { image: 'busybox' }, auth: { username: 'u', password: 'p', serverAddress: 'r' } });
  roundTrip('runtime.v1.ListImagesRequest', { filter: { image: { image: 'x' } } });
  roundTrip('bulkhead.v1.PullImageWithProgressRequest', { image: '127.0.0.1:5000/busybox:1', auth: { auth: 'dTpw' } });
  roundTrip('bulkhead.v1.LoadImageRequest', { path: '/tmp/a.tar' });
});

test('real responses the server sends decode to proto-loader\'s shapes', () => {
  roundTrip('runtime.v1.VersionResponse', { version: '0.1.0', runtimeName: 'bulkhead', runtimeVersion: '0.1.0', runtimeApiVersion: 'v1' });
  roundTrip('runtime.v1.StatusResponse', {
    status: { conditions: [{ type: 'RuntimeReady', status: true, reason: '', message: '' }, { type: 'NetworkReady', status: false, reason: 'NoCNI', message: 'ä 漢 😀' }] },
    info: { handlers: '[{"name":"runc"}]' },
    runtimeHandlers: [{ name: 'runc', features: { recursiveReadOnlyMounts: true, userNamespaces: false } }, { name: '' }],
  });
  roundTrip('runtime.v1.StatusResponse', {});
  roundTrip('runtime.v1.RuntimeConfigResponse', { linux: { cgroupDriver: 'CGROUPFS' } });
  roundTrip('runtime.v1.RuntimeConfigResponse', {});
  roundTrip('runtime.v1.PodSandboxStatusResponse', {
    status: {
      id: 'p', metadata: podConfig.metadata, state: 'SANDBOX_NOTREADY', createdAt: 1732672000123456789,
      network: { ip: '10.88.0.2', additionalIps: [{ ip: 'fd00::2' }] },
      linux: { namespaces: { options: { network: 'POD', pid: 'NODE', ipc: 'POD', targetId: '', userNsOptions: { mode: 'NODE', uids: [], gids: [] } } } },
      labels: { a: 'b' }, annotations: {}, runtimeHandler: 'runc',
    },
    info: { pid: '42' },
    containersStatuses: [],
    timestamp: 1732672000123456,
  });
  const containerStatus = {
    id: 'c', metadata: { name: 'c', attempt: 1 }, state: 'CONTAINER_EXITED', createdAt: 1, startedAt: 2, finishedAt: -3, exitCode: -1,
    image: { image: 'busybox', annotations: { a: '1' } }, imageRef: 'sha256:abc', reason: 'Completed', message: '',
    labels: {}, annotations: { x: '' }, mounts: [{ containerPath: '/a', hostPath: '/b', readonly: false, selinuxRelabel: true, propagation: 'PROPAGATION_HOST_TO_CONTAINER' }],
    logPath: '/l', resources: { linux: { cpuShares: 2, memoryLimitInBytes: 0 } }, user: { linux: { uid: 0, gid: 0, supplementalGroups: [0, 10] } },
  };
  roundTrip('runtime.v1.ContainerStatusResponse', { status: containerStatus, info: {} });
  roundTrip('runtime.v1.ListContainersResponse', { containers: [
    { id: 'a', podSandboxId: 'p', metadata: { name: 'a' }, image: { image: 'i' }, imageRef: 'r', state: 'CONTAINER_RUNNING', createdAt: 1732672000000000000, labels: { l: 'v' }, annotations: {} },
    { id: 'b', state: 'CONTAINER_UNKNOWN' },
    { id: 'c', state: 99 },
  ] });
  roundTrip('runtime.v1.ListPodSandboxResponse', { items: [{ id: 'p', metadata: podConfig.metadata, state: 'SANDBOX_READY', createdAt: 5, labels: {}, annotations: { x: 'y' }, runtimeHandler: 'gvisor' }] });
  roundTrip('runtime.v1.ExecSyncResponse', { stdout: Buffer.from('hello\n'), stderr: Buffer.from([0, 255, 1]), exitCode: 3 });
  roundTrip('runtime.v1.ExecSyncResponse', { stdout: 'aGk=', exitCode: 0 });
  roundTrip('runtime.v1.ExecSyncResponse', {});
  roundTrip('runtime.v1.ExecResponse', { url: 'http://127.0.0.1:1/exec/abc' });
  roundTrip('runtime.v1.ContainerStatsResponse', { stats: {
    attributes: { id: 'c', metadata: { name: 'c' }, labels: {}, annotations: {} },
    cpu: { timestamp: 1732672000123456789, usageCoreNanoSeconds: { value: 18446744073709 }, usageNanoCores: { value: 0 } },
    memory: { timestamp: 1, workingSetBytes: { value: 4096 }, rssBytes: null },
    writableLayer: { timestamp: 1, fsId: { mountpoint: '/' }, usedBytes: { value: 12 }, inodesUsed: { value: 3 } },
  } });
  roundTrip('runtime.v1.ListPodSandboxStatsResponse', { stats: [{ attributes: { id: 'p' }, linux: { cpu: { timestamp: 1 }, network: { interfaces: [{ name: 'eth0', rxBytes: { value: 1 } }] }, containers: [{ attributes: { id: 'c' } }] } }] });
  roundTrip('runtime.v1.ImageStatusResponse', { image: { id: 'sha256:x', repoTags: ['a:1', 'b:2'], repoDigests: [], size: 4294967296 * 3 + 7, uid: { value: 0 }, username: '', spec: { image: 'x' }, pinned: true }, info: { k: 'v' } });
  roundTrip('runtime.v1.ImageStatusResponse', {});
  roundTrip('runtime.v1.ListImagesResponse', { images: [{ id: 'a', size: 1 }, { id: 'b', repoTags: ['t'] }] });
  roundTrip('runtime.v1.ImageFsInfoResponse', { imageFilesystems: [{ timestamp: 1, fsId: { mountpoint: '/var' }, usedBytes: { value: 100 }, inodesUsed: { value: 2 } }], containerFilesystems: [] });
  roundTrip('runtime.v1.PullImageResponse', { imageRef: 'sha256:1' });
  roundTrip('runtime.v1.ContainerEventResponse', {
    containerId: 'c', containerEventType: 'CONTAINER_STOPPED_EVENT', createdAt: 1732672000123456789,
    podSandboxStatus: { id: 'p', state: 'SANDBOX_READY' }, containersStatuses: [containerStatus, { id: 'd' }],
  });
  roundTrip('runtime.v1.ListMetricDescriptorsResponse', { descriptors: [{ name: 'm', help: 'h', labelKeys: ['a', 'b'] }] });
  roundTrip('runtime.v1.ListPodSandboxMetricsResponse', { podMetrics: [{ podSandboxId: 'p', metrics: [{ name: 'n', timestamp: 1, metricType: 'GAUGE', labelValues: ['x'], value: { value: 5 } }], containerMetrics: [] }] });
  roundTrip('bulkhead.v1.PullProgressEvent', { layer: { id: 'sha256:l', status: 'downloading', current: 10, total: 100 } });
  roundTrip('bulkhead.v1.PullProgressEvent', { done: { imageRef: 'r', imageId: 'i', repoTags: ['t'], repoDigests: ['d'], size: 0 } });
  roundTrip('bulkhead.v1.PullProgressEvent', {});
  roundTrip('bulkhead.v1.PullProgressEvent', { layer: { id: 'a' }, done: { imageRef: 'both set' } });
  roundTrip('bulkhead.v1.LoadImageResponse', { images: [{ id: 'i', repoTags: ['a'] }] });
  roundTrip('bulkhead.v1.InfoResponse', {
    version: '0.1.0', pid: 1234, root: '/r', runDir: '/run', socket: '/s', config: '/c', defaultHandler: 'runc',
    handlers: [{ name: 'runc', backend: 'runc', isolation: 'process', available: true, reason: '', details: { binary: '/usr/bin/runc' }, isDefault: true }],
    versions: { node: 'v24' }, streamAddress: '127.0.0.1:1',
  });
});

test('unset fields: scalars zero, enums their first name, messages null, lists [] and maps {}', () => {
  const t = schema.message('runtime.v1.ContainerStatus');
  const d = codec.decode(t, Buffer.alloc(0));
  assert.equal(d.id, '');
  assert.equal(d.state, 'CONTAINER_CREATED');
  assert.equal(d.createdAt, 0);
  assert.equal(d.metadata, null);
  assert.deepEqual(d.mounts, []);
  assert.deepEqual(d.labels, {});
  const e = codec.decode(schema.message('bulkhead.v1.PullProgressEvent'), Buffer.alloc(0));
  assert.deepStrictEqual(e, {});
  const x = codec.decode(schema.message('runtime.v1.ExecSyncResponse'), Buffer.alloc(0));
  assert.ok(Buffer.isBuffer(x.stdout) && x.stdout.length === 0);
});

test('values protobuf.js converts are converted the same way (strings for numbers, numbers for enums, nulls)', () => {
  roundTrip('runtime.v1.ContainerStatus', { id: 7, createdAt: '1732672000123456789', exitCode: '12', state: 2, labels: { n: 5, u: undefined, z: null } });
  roundTrip('runtime.v1.ContainerStatus', { createdAt: -1, startedAt: '-9223372036854775808', finishedAt: 1.9, exitCode: 3.7 });
  roundTrip('runtime.v1.ContainerStatus', { createdAt: 2 ** 70, startedAt: -(2 ** 70), finishedAt: NaN, state: 'NOT_A_STATE' });
  roundTrip('runtime.v1.ContainerStatus', { metadata: null, image: undefined, mounts: null, labels: null });
  roundTrip('runtime.v1.UInt64Value', { value: -5 });
  roundTrip('runtime.v1.UInt64Value', { value: '18446744073709551615' });
  roundTrip('runtime.v1.Int64Value', { value: { low: 1, high: 2 } });
  roundTrip('runtime.v1.LinuxSandboxSecurityContext', { supplementalGroups: ['1', 2.5, -3], namespaceOptions: { network: 1 } });
  roundTrip('runtime.v1.ListContainersResponse', { containers: [{ state: 'CONTAINER_RUNNING' }, {}] });
  roundTrip('runtime.v1.ContainerFilter', { state: { state: 'bogus' } });
});

test('wrong kinds of value are refused with protobuf.js\'s TypeError', () => {
  const cases: [string, unknown][] = [
    ['runtime.v1.RunPodSandboxRequest', { config: 'not an object' }],
    ['runtime.v1.ExecSyncRequest', { cmd: 'true' }],
    ['runtime.v1.PodSandboxConfig', { labels: 'a=b' }],
    ['runtime.v1.PodSandboxConfig', { portMappings: [1] }],
    ['runtime.v1.VersionRequest', 'v1'],
  ];
  for (const [name, obj] of cases) {
    let expected = '';
    try { ref(name).encode(obj); } catch (err) { expected = (err as Error).message; }
    assert.notEqual(expected, '', `protobuf.js accepts ${JSON.stringify(obj)}`);
    assert.throws(() => codec.encode(schema.message(name), obj), (err: unknown) => err instanceof TypeError && err.message === expected, name);
  }
});

test('malformed bytes fail to decode instead of producing garbage', () => {
  const t = schema.message('runtime.v1.VersionResponse');
  assert.throws(() => codec.decode(t, Buffer.from([0x0a, 0x05, 0x61])), RangeError); // length beyond the end
  assert.throws(() => codec.decode(t, Buffer.from([0x08 | 0x07]))); // wire type 7
  assert.throws(() => codec.decode(t, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])));
  // Unknown fields (a newer server) are skipped.
  const withUnknown = Buffer.concat([Buffer.from([0x0a, 0x02, 0x76, 0x31]), Buffer.from([0xf8, 0x3f, 0x05, 0xfd, 0x3f, 1, 2, 3, 4, 0xfa, 0x3f, 0x01, 0x00])]);
  assert.deepStrictEqual(codec.decode(t, withUnknown), ref('runtime.v1.VersionResponse').decode(withUnknown));
});

// ---- generated samples of every message type ----

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 4294967296; };
}

function sample(t: MessageType, rand: () => number, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const oneofDone = new Set<string>();
  for (const f of schema.fieldsOf(t)) {
    if (rand() < 0.2) continue; // unset
    if (f.oneof) { if (oneofDone.has(f.oneof)) continue; oneofDone.add(f.oneof); }
    if (f.keyType) {
      const m: Record<string, unknown> = {};
      for (let i = 0; i < 2; i++) m[`k${i}${rand() < 0.3 ? ' ü' : ''}`] = value(f, rand, depth);
      out[f.name] = m;
    } else if (f.repeated) {
      out[f.name] = [value(f, rand, depth), value(f, rand, depth)];
    } else {
      out[f.name] = value(f, rand, depth);
    }
  }
  return out;
}

function value(f: Field, rand: () => number, depth: number): unknown {
  const t = f.type;
  if (typeof t !== 'string') {
    if (t.kind === 'enum') return enumSample(t, rand);
    return depth >= 3 ? {} : sample(t, rand, depth + 1);
  }
  switch (t) {
    case 'string': return rand() < 0.2 ? '' : `s${Math.floor(rand() * 1000)}${rand() < 0.2 ? ' ä漢😀' : ''}`;
    case 'bool': return rand() < 0.5;
    case 'bytes': return Buffer.from([Math.floor(rand() * 256), 0, 255]);
    case 'int32': case 'sint32': case 'sfixed32': return Math.floor(rand() * 2 ** 32) - 2 ** 31;
    case 'uint32': case 'fixed32': return Math.floor(rand() * 2 ** 32);
    case 'int64': case 'sint64': case 'sfixed64': return rand() < 0.3 ? -Math.floor(rand() * 2 ** 60) : Math.floor(rand() * 2 ** 62);
    case 'uint64': case 'fixed64': return Math.floor(rand() * 2 ** 63);
    case 'double': return rand() * 1e6 - 5e5;
    case 'float': return rand();
  }
}

function enumSample(e: EnumType, rand: () => number): unknown {
  const names = [...e.values.keys()];
  return rand() < 0.15 ? e.values.get(names[0]!)! : names[Math.floor(rand() * names.length)]!;
}

test('generated samples of every message type round-trip as protobuf.js does', () => {
  const types = schema.messages();
  assert.ok(types.length > 100, `only ${types.length} message types`);
  for (const t of types) {
    const name = t.fullName.slice(1);
    roundTrip(name, {});
    for (let seed = 1; seed <= 4; seed++) roundTrip(name, sample(t, rng(seed * 7919 + name.length), 0));
  }
});
