// `bulkhead df`, `rmi`, `pull` and `system prune` end to end: the real CLI (bin/bulkhead) against a
// real daemon and the registry fixture on 127.0.0.1. Removing a pulled image brings `df` back to
// what it showed before the pull; prune removes what nothing uses and says how much it freed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestDaemon } from '../../harness/daemon.ts';
import { runCli, type CliResult } from '../fixtures/cli.ts';
import type { TestRegistry } from '../../harness/registry.ts';
import type { TestImages } from '../../harness/images.ts';
import { startImageDaemon } from '../fixtures/image-daemon.ts';
import type { DiskUsageResponse } from '../../src/api/cri-messages.ts';

let d: TestDaemon;
let reg: TestRegistry;
let images: TestImages;

before(async () => { ({ d, reg, images } = await startImageDaemon('bulkhead-clidisk-')); });
after(async () => { await d?.close(); });

function bulkhead(args: string[]): Promise<CliResult> {
  return runCli(d, args);
}

async function df(): Promise<DiskUsageResponse> {
  const r = await bulkhead(['--json', 'df']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as DiskUsageResponse;
}

function row(u: DiskUsageResponse, type: string): { total: number; active: number; size: number; reclaimable: number } {
  const r = u.rows.find((x) => x.type === type);
  assert.ok(r, `row ${type} in ${JSON.stringify(u.rows)}`);
  return { total: Number(r.total), active: Number(r.active), size: Number(r.size), reclaimable: Number(r.reclaimable) };
}

test('bulkhead rmi of a pulled image brings bulkhead df back to what it showed before the pull', async () => {
  const before = await df();
  const p = await bulkhead(['pull', '-q', images.multilayer]);
  assert.equal(p.code, 0, p.stderr);
  const pulled = await df();
  const img = row(pulled, 'Images');
  assert.equal(img.total, row(before, 'Images').total + 1);
  assert.ok(img.size > row(before, 'Images').size, `size grew: ${JSON.stringify(pulled.rows)}`);
  assert.equal(img.reclaimable, img.size, 'no container uses it: all reclaimable');
  const human = await bulkhead(['df', '-v']);
  assert.match(human.stdout, /^TYPE\s+TOTAL\s+ACTIVE\s+SIZE\s+RECLAIMABLE$/m);
  assert.match(human.stdout, /test\/multilayer:latest/);
  const r = await bulkhead(['rmi', images.multilayer]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((await df()).rows, before.rows);
});

test('pull prints the digest of the repository it pulled, also when another repository shares the image ID', async () => {
  const a = await bulkhead(['pull', '-q', images.busybox]);
  assert.equal(a.code, 0, a.stderr);
  const b = await bulkhead(['pull', '-q', images.gzip]);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(images.pushed.busybox!.configDigest, images.pushed.gzip!.configDigest, 'the fixture: one image ID, two repositories');
  assert.equal(b.stdout.split('\n')[0], `${reg.host}/test/gzip@${images.pushed.gzip!.manifestDigest}`);
  assert.equal(a.stdout.split('\n')[0], `${reg.host}/test/busybox@${images.pushed.busybox!.manifestDigest}`);
});

test('system prune -a -f removes images no container uses and reports the space reclaimed; df shows nothing left', async () => {
  const before = await df();
  assert.ok(row(before, 'Images').total >= 1);
  const r = await bulkhead(['system', 'prune', '-a', '-f']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Deleted Images:\ndeleted: sha256:/);
  const m = /Total reclaimed space: ([\d.]+)(B|kB|MB|GB)/.exec(r.stdout);
  assert.ok(m && Number(m[1]) > 0, r.stdout);
  const u = await df();
  assert.deepEqual(row(u, 'Images'), { total: 0, active: 0, size: 0, reclaimable: 0 });
  assert.equal(row(u, 'Unused layers').size, 0);
  // without -f and without a terminal it asks, and removes nothing
  const q = await bulkhead(['system', 'prune']);
  assert.equal(q.code, 2, q.stderr);
  assert.match(q.stderr, /pass -f/);
});
