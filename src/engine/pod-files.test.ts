// Pod files: /etc/hosts, /etc/resolv.conf, /etc/hostname content.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostsFile, resolvConf, validateHostname, writePodFiles } from './pod-files.ts';

const HOST_RESOLV = '# generated\nsearch corp.example\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\noptions edns0\n';

describe('pod files', () => {
  it('hosts: localhost entries, and the hostname on the pod IP (or 127.0.1.1)', () => {
    const h = hostsFile('web-0', ['10.88.0.5', '10.88.0.6']);
    assert.match(h, /^127\.0\.0\.1\tlocalhost$/m);
    assert.match(h, /^::1\tlocalhost ip6-localhost ip6-loopback$/m);
    assert.match(h, /^10\.88\.0\.5\tweb-0$/m);
    assert.doesNotMatch(h, /10\.88\.0\.6/);
    assert.match(hostsFile('solo', []), /^127\.0\.1\.1\tsolo$/m);
    assert.doesNotMatch(hostsFile('', ['10.0.0.1']), /10\.0\.0\.1/);
    assert.ok(h.endsWith('\n'));
  });

  const cases: { name: string; dns: Parameters<typeof resolvConf>[0]; want: string }[] = [
    { name: 'no dnsConfig: the host file without loopback servers', dns: undefined,
      want: '# generated\nsearch corp.example\nnameserver 10.0.0.2\noptions edns0\n' },
    { name: 'servers, searches and options from the pod', dns: { servers: ['10.96.0.10'], searches: ['ns.svc.cluster.local', 'svc.cluster.local'], options: ['ndots:5'] },
      want: 'search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n' },
    { name: 'searches only: the host servers (not loopback) are kept', dns: { servers: [], searches: ['a.example'], options: [] },
      want: 'search a.example\nnameserver 10.0.0.2\n' },
    { name: 'empty lists are like none', dns: { servers: [], searches: [], options: [] },
      want: '# generated\nsearch corp.example\nnameserver 10.0.0.2\noptions edns0\n' },
  ];
  for (const c of cases) {
    it(`resolv.conf: ${c.name}`, () => { assert.equal(resolvConf(c.dns, HOST_RESOLV), c.want); });
  }

  it('resolv.conf: refuses tokens that would inject lines or comments', () => {
    for (const bad of [{ servers: ['1.1.1.1\nnameserver 6.6.6.6'] }, { searches: ['a b'] }, { options: ['x#y'] }, { searches: ['a;b'] }]) {
      assert.throws(() => resolvConf(bad, HOST_RESOLV), { code: 'InvalidArgument' });
    }
  });

  it('hostname: validated', () => {
    for (const ok of ['a', 'web-0', 'a.b.c', 'X1']) validateHostname(ok);
    for (const bad of ['', '-a', 'a-', 'a b', 'a/b', '../x', 'a'.repeat(254), 'a\nb']) {
      assert.throws(() => validateHostname(bad), { code: 'InvalidArgument' }, JSON.stringify(bad));
    }
  });

  describe('writePodFiles', () => {
    let dir: string;
    before(async () => { dir = await mkdtemp(join(tmpdir(), 'bulkhead-podfiles-')); });
    after(async () => { await rm(dir, { recursive: true, force: true }); });

    it('writes the three files (0644) and returns their paths', async () => {
      const hostResolv = join(dir, 'host-resolv.conf');
      await writeFile(hostResolv, HOST_RESOLV);
      const f = await writePodFiles(join(dir, 'etc'), 'db-1', ['192.168.7.7'], { servers: ['10.96.0.10'], searches: [], options: [] }, hostResolv);
      assert.deepEqual(f, { hostname: join(dir, 'etc', 'hostname'), hosts: join(dir, 'etc', 'hosts'), resolvConf: join(dir, 'etc', 'resolv.conf') });
      assert.equal(await readFile(f.hostname, 'utf8'), 'db-1\n');
      assert.match(await readFile(f.hosts, 'utf8'), /^192\.168\.7\.7\tdb-1$/m);
      assert.equal(await readFile(f.resolvConf, 'utf8'), 'nameserver 10.96.0.10\n');
      for (const p of Object.values(f)) assert.equal((await stat(p)).mode & 0o777, 0o644);
      // no host resolv.conf at all: an empty one, no failure
      const g = await writePodFiles(join(dir, 'etc2'), '', [], null, join(dir, 'missing'));
      assert.equal(await readFile(g.hostname, 'utf8'), '');
      assert.equal(await readFile(g.resolvConf, 'utf8'), '\n');
    });
  });
});
