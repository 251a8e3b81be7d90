// The lock file of blob writers and VM template builders (lock.ts), race by race: made whole before
// it is visible (a waiter never reads an ownerless lock and takes it for stale), a stale one taken
// over only when it is the file judged stale, and a release that removes only its own file.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lockHeld, tryLock } from './lock.ts';
import { parseLockRecord } from '../util/lock-record.ts';
import { procStat } from '../util/proc.ts';

let base: string;
before(async () => { base = await mkdtemp(join(tmpdir(), 'bulkhead-flock-')); });
after(async () => { await rm(base, { recursive: true, force: true }); });
/** A fresh directory of its own for each test. */
const withDir = async (fn: (dir: string) => Promise<void>): Promise<void> => fn(await mkdtemp(join(base, 't-')));

test('many tryLock calls at once: exactly one holds the lock (none reads another\'s lock before its owner is written)', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'k.lock');
    for (let round = 0; round < 5; round++) {
      const got = (await Promise.all(Array.from({ length: 20 }, () => tryLock(path)))).filter((r) => r !== undefined);
      assert.equal(got.length, 1, `round ${round}: ${got.length} holders`);
      assert.equal(parseLockRecord(await readFile(path, 'utf8')).pid, process.pid);
      await got[0]!();
      assert.equal(existsSync(path), false, 'released');
    }
    assert.deepEqual(await readdir(dir), [], 'no temporary file left beside the lock');
  });
});

test('a fresh lock file without its owner written (an older writer between create and write) is waited for; an old one is stale', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'k.lock');
    await writeFile(path, '');
    assert.equal(await tryLock(path), undefined, 'an ownerless lock of a moment ago is somebody\'s');
    const old = new Date(Date.now() - 60_000);
    await utimes(path, old, old);
    const release = await tryLock(path);
    assert.ok(release, 'an ownerless lock a minute old is stale');
    await release();
  });
});

test('a live owner keeps its lock; a dead one\'s, or one naming a reused pid, is taken over', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'k.lock');
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const pid = child.pid!;
      const start = procStat(pid)!.startTime;
      await writeFile(path, `${pid} ${start}\n`);
      assert.equal(await tryLock(path), undefined, 'held by a live process');
      assert.equal(await lockHeld(path), true);
      await writeFile(path, `${pid} ${Number(start) + 1}\n`);
      assert.equal(await lockHeld(path), false, 'the pid names another process now');
      const r1 = await tryLock(path);
      assert.ok(r1, 'a reused pid\'s lock is taken over');
      await r1();
      await writeFile(path, `${pid} ${start}\n`);
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const r2 = await tryLock(path);
      assert.ok(r2, 'a dead owner\'s lock is taken over');
      await r2();
    } finally {
      child.kill('SIGKILL');
    }
  });
});

test('a release removes the lock file only while it is its own (not one another took over since)', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'k.lock');
    const release = await tryLock(path);
    assert.ok(release);
    // another took it over meanwhile (as after this owner was judged dead): its file is not ours to remove
    await unlink(path);
    await writeFile(path, `1 ${procStat(1)?.startTime ?? ''}\n`);
    await release();
    assert.equal(existsSync(path), true, 'the other owner\'s lock stays');
  });
});
