// Registry behaviour through front proxies: auth, credential hygiene, mirrors, lying and
// flaky servers, concurrent pulls.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { sharedRegistry, startProxy, forward, type TestProxy } from '../../harness/registry.ts';
import { buildAndPushTestImages } from '../../harness/images.ts';
import { createImageService, type ImageService } from '../../src/image/image-service.ts';
import type { RegistryConfig } from '../../src/image/registry/config.ts';
import { silentLogger } from '../../src/util/log.ts';

const reg = await sharedRegistry();
const images = await buildAndPushTestImages(reg);
const cleanups: (() => Promise<void>)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

async function service(registries: Partial<RegistryConfig> = {}): Promise<{ svc: ImageService; root: string }> {
  const root = await mkdtemp(join(tmpdir(), 'bulkhead-reg-'));
  const svc = await createImageService({ root, registries: { mirrors: {}, insecure: [], ...registries }, logger: silentLogger });
  cleanups.push(async () => { await svc.close(); await rm(root, { recursive: true, force: true }); });
  return { svc, root };
}
async function proxy(opts: Parameters<typeof startProxy>[1] = {}): Promise<TestProxy> {
  const p = await startProxy(reg, opts);
  cleanups.push(() => p.close());
  return p;
}
async function server(handler: Parameters<typeof createServer>[1]): Promise<{ host: string; srv: Server }> {
  const srv = createServer(handler);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanups.push(async () => { srv.closeAllConnections(); await new Promise<void>((r) => srv.close(() => r())); });
  return { host: `127.0.0.1:${(srv.address() as AddressInfo).port}`, srv };
}
const via = (p: { host: string }, repo = 'test/busybox:latest'): string => `${p.host}/${repo}`;
const basic = (u: string, p: string): string => 'Basic ' + Buffer.from(`${u}:${p}`).toString('base64');


test('basic auth: pull auth works, missing or wrong credentials are PermissionDenied', async () => {
  const p = await proxy({ auth: { kind: 'basic', username: 'alice', password: 's3cret' } });
  const { svc } = await service();
  await assert.rejects(svc.pull(via(p)), { code: 'PermissionDenied' });
  await assert.rejects(svc.pull(via(p), { auth: { username: 'alice', password: 'wrong' } }), { code: 'PermissionDenied' });
  const img = await svc.pull(via(p), { auth: { username: 'alice', password: 's3cret' } });
  assert.equal(img.id, images.pushed.busybox!.configDigest);
});

test('bearer auth: credentials from config.json go to the token realm on the same host, token to the registry', async () => {
  const p = await proxy({ auth: { kind: 'bearer', username: 'bob', password: 'pw' } });
  const authFile = join(await mkdtemp(join(tmpdir(), 'bulkhead-auth-')), 'config.json');
  cleanups.push(() => rm(join(authFile, '..'), { recursive: true, force: true }));
  await writeFile(authFile, JSON.stringify({ auths: { [p.host]: { auth: Buffer.from('bob:pw').toString('base64') } } }));
  const { svc } = await service({ authFile });
  await svc.pull(via(p));
  assert.ok(p.tokenRequests.length >= 1);
  assert.equal(p.tokenRequests[0]!.authorization, basic('bob', 'pw'));
  assert.match(p.tokenRequests[0]!.url, /scope=repository%3Atest%2Fbusybox%3Apull/);
  assert.ok(p.requests.some((r) => r.authorization?.startsWith('Bearer ')));
  assert.ok(p.requests.every((r) => !r.authorization?.startsWith('Basic')), 'registry never sees the password');
});

test('credentials are not sent to a token realm on another host', async () => {
  const seen: (string | undefined)[] = [];
  const tok = await server((req, res) => { seen.push(req.headers.authorization); res.end(JSON.stringify({ token: 'anon-token' })); });
  const port = tok.host.split(':')[1];
  const p = await proxy({
    intercept: (req, res) => {
      if (req.headers.authorization === 'Bearer anon-token') return false;
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://localhost:${port}/token",service="x"` });
      res.end();
      return true;
    },
  });
  const { svc } = await service();
  await svc.pull(via(p), { auth: { username: 'carol', password: 'topsecret' } });
  assert.ok(seen.length >= 1);
  assert.ok(seen.every((a) => a === undefined), 'token realm on another host got no credentials');
});

test('credentials are not sent when a blob GET redirects to another host:port', async () => {
  const cdnSaw: (string | undefined)[] = [];
  const cdn = await server((req, res) => { cdnSaw.push(req.headers.authorization); forward(reg.url, req, res); });
  const p = await proxy({
    auth: { kind: 'basic', username: 'dave', password: 'pw' },
    intercept: (req, res) => {
      if (req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '')) {
        res.writeHead(307, { location: `http://${cdn.host}${req.url}` });
        res.end();
        return true;
      }
      return false;
    },
  });
  const { svc } = await service();
  await svc.pull(via(p), { auth: { username: 'dave', password: 'pw' } });
  assert.ok(cdnSaw.length >= 3, 'config and layers came from the redirect target');
  assert.ok(cdnSaw.every((a) => a === undefined));
});

test('mirrors are tried before the registry; the registry is used when the mirror fails', async () => {
  const origin = await proxy();
  const mirror = await proxy();
  const { svc } = await service({ mirrors: { [origin.host]: [mirror.url] } });
  await svc.pull(via(origin));
  assert.ok(mirror.requests.length > 0);
  assert.equal(origin.requests.length, 0);
  const broken = await proxy({ intercept: (_req, res) => { res.writeHead(404); res.end(); return true; } });
  const { svc: svc2 } = await service({ mirrors: { [origin.host]: [broken.url] } });
  await svc2.pull(via(origin));
  assert.ok(broken.requests.length > 0);
  assert.ok(origin.requests.length > 0);
});

test('mirror_fallback = false: a host with mirrors is reached only through them, and the error says which setting kept it away', async () => {
  const origin = await proxy();
  const broken = await proxy({ intercept: (_req, res) => { res.writeHead(404); res.end(); return true; } });
  const { svc } = await service({ mirrors: { [origin.host]: [broken.url] }, mirrorFallback: false });
  await assert.rejects(svc.pull(via(origin)), (e: Error) => /mirror_fallback = false/.test(e.message) && /NotFound/.test((e as { code?: string }).code ?? ''));
  assert.ok(broken.requests.length > 0);
  assert.equal(origin.requests.length, 0, 'the registry itself was contacted');
  // a working mirror still serves; a host without mirrors is unaffected by the setting
  const mirror = await proxy();
  const { svc: svc2 } = await service({ mirrors: { [origin.host]: [mirror.url] }, mirrorFallback: false });
  await svc2.pull(via(origin));
  assert.ok(mirror.requests.length > 0);
  const other = await proxy();
  const { svc: svc3 } = await service({ mirrorFallback: false });
  await svc3.pull(via(other));
  assert.ok(other.requests.length > 0);
  // mirrors configured but none usable: an error before any request, never the origin
  const { svc: svc4 } = await service({ mirrors: { [origin.host]: ['ftp://nowhere'] }, mirrorFallback: false });
  await assert.rejects(svc4.pull(via(origin)), /no usable mirror/);
  assert.equal(origin.requests.length, 0);
});

test('a blob that does not match its digest is rejected and nothing is left behind', async () => {
  const layer = images.pushed.busybox!.layers[1]!;
  const p = await proxy({
    intercept: (req, res) => {
      if (req.method === 'GET' && req.url?.endsWith(layer.digest)) {
        const lie = Buffer.from(layer.blob);
        lie[lie.length - 10]! ^= 0xff;
        res.writeHead(200, { 'content-length': String(lie.length), 'content-type': 'application/octet-stream' });
        res.end(lie);
        return true;
      }
      return false;
    },
  });
  const { svc, root } = await service();
  await assert.rejects(svc.pull(via(p)), (e: Error & { code?: string }) => e.code === 'InvalidArgument' && /digest mismatch/.test(e.message));
  assert.equal(await svc.get(via(p)), undefined);
  const blobs = await readdir(join(root, 'content/blobs/sha256'));
  assert.ok(!blobs.includes(layer.digest.slice(7)));
  assert.deepEqual(await readdir(join(root, 'content/ingest')), []);
  assert.deepEqual(await readdir(join(root, 'snapshots/tmp')), []);
});

test('a connection dropped mid-blob is resumed with a Range request', async () => {
  const layer = images.pushed.busybox!.layers[0]!;
  let dropped = false;
  const p = await proxy({
    intercept: (req, res) => {
      if (!dropped && req.method === 'GET' && req.url?.endsWith(layer.digest)) {
        dropped = true;
        res.writeHead(200, { 'content-length': String(layer.blob.length) });
        res.write(layer.blob.subarray(0, Math.floor(layer.blob.length / 2)), () => setTimeout(() => res.socket?.destroy(), 50));
        return true;
      }
      return false;
    },
  });
  const { svc, root } = await service();
  const img = await svc.pull(via(p));
  assert.equal(img.layers[0]!.digest, layer.digest);
  const ranged = p.requests.filter((r) => r.url.endsWith(layer.digest) && r.range);
  assert.equal(ranged.length, 1);
  assert.match(ranged[0]!.range!, /^bytes=[1-9]\d*-$/);
  assert.deepEqual(await readdir(join(root, 'content/ingest')), []);
});

test('concurrent pulls of one image download each blob once', async () => {
  const p = await proxy();
  const { svc } = await service();
  const results = await Promise.all([svc.pull(via(p, 'test/multilayer:latest')), svc.pull(via(p, 'test/multilayer:latest')), svc.pull(via(p, 'test/multilayer:latest'))]);
  assert.equal(new Set(results.map((r) => r.id)).size, 1);
  const blobGets = p.requests.filter((r) => r.method === 'GET' && r.url.includes('/blobs/'));
  const perDigest = new Map<string, number>();
  for (const r of blobGets) perDigest.set(r.url, (perDigest.get(r.url) ?? 0) + 1);
  assert.equal(perDigest.size, 5, 'config + 4 layers');
  for (const [url, n] of perDigest) assert.equal(n, 1, url);
});

