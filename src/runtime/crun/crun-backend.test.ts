// crun's probe on a cgroup v1 hybrid host: crun refuses the layout whatever is asked, so its refusal
// is kept (no process runs) until the crun binary changes, or a fresh probe (`bulkhead doctor`) asks.
// A stand-in crun (a script that logs its runs and refuses as crun 1.8 does) counts the runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroupLayout } from '../../cgroup/hierarchy.ts';
import { silentLogger } from '../../util/log.ts';
import { CrunBackend } from './crun-backend.ts';

test('a refusal of a hybrid cgroup layout is kept until crun changes; a fresh probe runs crun again', { skip: cgroupLayout() !== 'v1-hybrid' ? 'needs a cgroup v1 hybrid host' : false }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-crun-test-'));
  try {
    const bin = join(dir, 'crun');
    const runs = join(dir, 'runs');
    writeFileSync(runs, '');
    writeFileSync(bin, [
      '#!/bin/sh',
      `echo "$*" >> ${runs}`,
      'case "$1" in --version) echo "crun version 1.8.1"; exit 0;; esac',
      'for a in "$@"; do [ "$a" = run ] && { echo "cgroups in hybrid mode not supported, drop all controllers from cgroupv2" >&2; exit 1; }; done',
      'exit 0',
    ].join('\n') + '\n');
    chmodSync(bin, 0o755);
    const count = (): number => readFileSync(runs, 'utf8').split('\n').filter(Boolean).length;
    const b = new CrunBackend({ runDir: join(dir, 'run'), binary: bin, logger: silentLogger });
    const first = await b.probe();
    assert.equal(first.available, false);
    assert.match(first.reason ?? '', /hybrid mode not supported/);
    const ran = count();
    assert.ok(ran >= 2, 'the first probe runs crun (version, run)');
    const again = await b.probe();
    assert.deepEqual(again, first, 'the same answer');
    assert.equal(count(), ran, 'with no run of crun');
    await b.probe(undefined, { fresh: true });
    assert.equal(count(), 2 * ran, 'a fresh probe runs crun again');
    // another crun (an upgrade rewrites the file): probed again
    const later = new Date(Date.now() + 5000);
    utimesSync(bin, later, later);
    await b.probe();
    assert.equal(count(), 3 * ran, 'a changed binary is probed again');
    await b.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
