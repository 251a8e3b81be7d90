// What a pull says when the registry is not there or does not answer: a closed port names the
// refused host:port; a registry that accepts and never answers, or stalls in a blob, fails within
// the one timeout setting, and the message states that value. Servers on 127.0.0.1 only.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createImageService, type ImageService } from '../../src/image/image-service.ts';
import { DEFAULT_IMAGE_CONFIG } from '../../src/image/config.ts';
import { BulkheadError } from '../../src/errors.ts';
import { silentLogger } from '../../src/util/log.ts';
import { busyboxLayers, imageConfigBlob, MT, sha256 } from '../../harness/images.ts';

const TIMEOUT = 400;
const root = await mkdtemp(join(tmpdir(), 'bulkhead-regerr-'));
const svc: ImageService = await createImageService({
  root, registries: { mirrors: {}, insecure: [] }, logger: silentLogger, config: { ...DEFAULT_IMAGE_CONFIG, reserveBytes: 0, reservePercent: 0, registryTimeoutMs: TIMEOUT },
});
// the refusals below do not depend on time: with the default timeout a slow first fetch of a loaded
// host (undici loads on the first call) cannot turn them into a timeout
const patient: ImageService = await createImageService({
  root: join(root, 'patient'), registries: { mirrors: {}, insecure: [] }, logger: silentLogger, config: { ...DEFAULT_IMAGE_CONFIG, reserveBytes: 0, reservePercent: 0 },
});
const servers: (Server | HttpServer)[] = [];
const sockets: Socket[] = [];
after(async () => {
  for (const s of sockets) s.destroy();
  for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
  await svc.close();
  await patient.close();
  await rm(root, { recursive: true, force: true });
});

async function listen(s: Server | HttpServer): Promise<number> {
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return (s.address() as { port: number }).port;
}

function bulkheadError(code: string, re: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof BulkheadError, String(err));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, re);
    return true;
  };
}

test('a closed port: "registry refused the connection at 127.0.0.1:PORT" and what to check', async () => {
  // A privileged port nothing listens on (an ephemeral one could be taken by another test's server meanwhile).
  const port = 1023; // not on fetch's list of blocked ports
  await assert.rejects(patient.pull(`127.0.0.1:${port}/test/nothing:latest`),
    bulkheadError('Unavailable', new RegExp(`registry refused the connection at 127\\.0\\.0\\.1:${port}: nothing listens there; check`)));
});

test('a registry on a port fetch blocks says so (it said "bad port")', async () => {
  await assert.rejects(patient.pull('127.0.0.1:1/test/nothing:latest'), bulkheadError('Unavailable', /registry port in 127\.0\.0\.1:1 is one the fetch standard blocks/));
});

test('a registry that accepts and never answers fails within the timeout, and the message states it', async () => {
  let accepted = 0;
  const port = await listen(createServer((sock) => { accepted ||= performance.now(); sockets.push(sock); sock.on('data', () => { /* never answer */ }); }));
  const t0 = performance.now();
  await assert.rejects(svc.pull(`127.0.0.1:${port}/test/silent:latest`),
    bulkheadError('DeadlineExceeded', new RegExp(`registry 127\\.0\\.0\\.1:${port} did not answer within ${TIMEOUT} ms .*setting \\[images\\] registry_timeout_ms`)));
  const end = performance.now();
  // at least the timeout from the call; at most a little more from the connection (what came
  // before it, the client's own start, is slow on a loaded host and not the timeout's doing)
  assert.ok(end - t0 >= TIMEOUT - 20, `failed after ${Math.round(end - t0)} ms with a ${TIMEOUT} ms timeout`);
  assert.ok(accepted > 0 && end - accepted < TIMEOUT + 1500, `failed ${Math.round(end - accepted)} ms after the connection, with a ${TIMEOUT} ms timeout`);
});

test('a blob body that stalls fails once it has sent nothing for the timeout; nothing partial is left', async () => {
  const [layer] = busyboxLayers('gzip');
  const config = imageConfigBlob({ layers: [layer!] });
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: MT.ociManifest,
    config: { mediaType: MT.ociConfig, digest: sha256(config), size: config.length },
    layers: [{ mediaType: MT.ociLayerGzip, digest: layer!.digest, size: layer!.size }],
  }));
  let stalled = 0;
  const port = await listen(createHttpServer((req, res) => {
    res.on('error', () => {});
    if (req.url?.endsWith('/manifests/latest')) { res.writeHead(200, { 'content-type': MT.ociManifest, 'content-length': manifest.length }); res.end(manifest); return; }
    if (req.url?.endsWith(`/blobs/${sha256(config)}`)) { res.writeHead(200, { 'content-length': config.length }); res.end(config); return; }
    if (req.url?.endsWith(`/blobs/${layer!.digest}`)) { res.writeHead(200, { 'content-length': layer!.size }); stalled = performance.now(); res.write(layer!.blob.subarray(0, Math.floor(layer!.size / 2)), () => { stalled = performance.now(); }); sockets.push(req.socket); return; }
    res.writeHead(404); res.end();
  }));
  const t0 = performance.now();
  await assert.rejects(svc.pull(`127.0.0.1:${port}/test/stall:latest`),
    bulkheadError('DeadlineExceeded', new RegExp(`registry 127\\.0\\.0\\.1:${port} sent no data for ${TIMEOUT} ms .*registry_timeout_ms`)));
  // measured from the last data sent (the manifest and config before it take what a loaded host gives them)
  const ms = performance.now() - stalled;
  assert.ok(stalled > t0 && ms < TIMEOUT + 1500, `failed ${Math.round(ms)} ms after the blob's last data, with a ${TIMEOUT} ms timeout`);
  const { readdir } = await import('node:fs/promises');
  assert.deepEqual(await readdir(join(root, 'content/ingest')), [], 'no partial blob');
});
