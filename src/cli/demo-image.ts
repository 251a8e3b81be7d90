// The image the demo runs, made on this host with no registry: Debian's busybox-static as one layer,
// written as an OCI image-layout archive that `bulkhead load` (the daemon's LoadImage) imports.
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { run } from '../util/exec.ts';
import { UnavailableError } from '../errors.ts';

const MTIME = new Date(1_700_000_000_000);

interface Entry { name: string; type: 'file' | 'directory' | 'symlink'; mode: number; data?: Buffer; linkname?: string }

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => { chunks.push(c as Buffer); });
  const done = new Promise<void>((resolve, reject) => { p.on('end', () => resolve()); p.on('error', reject); });
  for (const e of entries) {
    const header = { name: e.name, type: e.type, mode: e.mode, uid: 0, gid: 0, mtime: MTIME, ...(e.linkname ? { linkname: e.linkname } : {}) };
    await new Promise<void>((resolve, reject) => { p.entry(header, e.data ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve())); });
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

/** Writes an OCI archive holding `name` (e.g. "bulkhead.local/demo:latest") built from /bin/busybox. */
export async function writeBusyboxArchive(path: string, name: string, busybox = '/bin/busybox'): Promise<void> {
  let bin: Buffer;
  try { bin = await readFile(busybox); } catch { throw new UnavailableError(`${busybox} is missing: apt-get install busybox-static (scripts/setup.sh does)`); }
  const list = await run(busybox, ['--list'], { timeoutMs: 10_000 });
  const applets = list.stdout.split('\n').map((s) => s.trim()).filter((s) => /^[a-z0-9_.[-]+$/i.test(s) && s !== 'busybox');
  const entries: Entry[] = [
    ...['bin', 'etc', 'tmp', 'root', 'proc', 'sys', 'dev', 'var', 'home', 'home/app'].map((d) => ({ name: d + '/', type: 'directory' as const, mode: d === 'tmp' ? 0o1777 : 0o755 })),
    { name: 'bin/busybox', type: 'file', mode: 0o755, data: bin },
    ...applets.map((a) => ({ name: `bin/${a}`, type: 'symlink' as const, mode: 0o777, linkname: 'busybox' })),
    { name: 'etc/passwd', type: 'file', mode: 0o644, data: Buffer.from('root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n') },
    { name: 'etc/group', type: 'file', mode: 0o644, data: Buffer.from('root:x:0:\napp:x:1000:\nnogroup:x:65534:\n') },
  ];
  const layerTar = await tarOf(entries);
  const layer = gzipSync(layerTar);
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux', created: MTIME.toISOString(),
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'], WorkingDir: '/' },
    rootfs: { type: 'layers', diff_ids: [sha(layerTar)] },
    history: [{ created: MTIME.toISOString(), created_by: 'bulkhead demo: busybox-static' }],
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(layer), size: layer.length }],
  }));
  const tag = name.slice(name.lastIndexOf(':') + 1);
  const index = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(manifest), size: manifest.length,
      annotations: { 'org.opencontainers.image.ref.name': tag, 'io.containerd.image.name': name } }],
  }));
  const blob = (b: Buffer): Entry => ({ name: `blobs/sha256/${sha(b).slice(7)}`, type: 'file', mode: 0o644, data: b });
  const archive = await tarOf([
    { name: 'oci-layout', type: 'file', mode: 0o644, data: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
    { name: 'index.json', type: 'file', mode: 0o644, data: index },
    { name: 'blobs/', type: 'directory', mode: 0o755 },
    { name: 'blobs/sha256/', type: 'directory', mode: 0o755 },
    blob(config), blob(manifest), blob(layer),
  ]);
  await writeFile(path, archive);
}
