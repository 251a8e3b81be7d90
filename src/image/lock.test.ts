// The lock file of blob writers and VM template builders (lock.ts), race by race: made whole before
// it is visible (a waiter never reads an ownerless lock and takes it for stale), a stale one taken
// over only when it is the file judged stale, and a release that removes only its own file.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { link, mkdtemp, readdir, readFile, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lockHeld, tryLock } from './lock.ts';
import { CLAIM_STALE_MS, createLockFile, parseLockRecord, readLockFile, removeStaleLockFile, sweepLockLeftovers } from '../util/lock-record.ts';
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

const LOCK_RECORD = JSON.stringify(new URL('../util/lock-record.ts', import.meta.url).pathname);
/** A Node.js child running `script` (an ES module); resolves with its exit code and output. */
function node(script: string): { child: ReturnType<typeof spawn>; done: Promise<{ code: number | null; out: string }> } {
  const child = spawn(process.execPath, ['--input-type=module', '--disable-warning=ExperimentalWarning', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
  return { child, done: new Promise((r) => child.once('close', (code) => r({ code, out }))) };
}

test('a lock maker killed inside its steps leaves a hidden file; the next taker of the lock sweeps it, a live process\'s step file stays', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'k.lock');
    // a real process making and releasing the lock in a loop, SIGKILLed at some instant: tried until
    // one was killed between writing its `.new.` file and removing it
    let left: string[] = [];
    for (let i = 0; i < 60 && left.length === 0; i++) {
      // ten makers at once in it: most instants find some between their write and their cleanup
      const { child, done } = node(`import { createLockFile } from ${LOCK_RECORD}; let n = 0; const loop = async () => { for (;;) { const r = await createLockFile(${JSON.stringify(path)}); if (r) await r(); if (++n === 100) process.stdout.write('go\\n'); } }; for (let i = 0; i < 10; i++) void loop();`);
      await new Promise<void>((r) => child.stdout!.once('data', () => r()));
      child.kill('SIGKILL'); // once its makers run: at an instant of their steps

      await done;
      left = (await readdir(dir)).filter((n) => n.startsWith('.k.lock.new.'));
      if (left.length === 0) await rm(path, { force: true });
    }
    assert.ok(left.length > 0, 'a killed maker left its hidden files (60 tries)');
    // a live process's step under way looks the same: it stays
    const live = `.k.lock.new.${process.pid}.0123abcd`;
    await writeFile(join(dir, live), 'x');
    // the killed process's lock (if it held one at its death) is stale: taken over, and its leftovers swept
    const release = await tryLock(path);
    assert.ok(release, 'the dead maker\'s lock is taken over (or there was none)');
    await release();
    assert.deepEqual((await readdir(dir)).sort(), [live], 'the dead process\'s hidden file is gone, the live one\'s stays');
    assert.deepEqual(await sweepLockLeftovers(dir), [], 'nothing else to sweep');
  });
});

test('a remover killed holding its claim, and a lock moved aside by an older version whose holder lives: the claim goes once old or useless, the lock back to its place', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'k.lock');
    // a claim on a stale lock by a remover killed before it unlinked the lock: kept while young (its
    // remover may be at it), dropped once old; then the lock is taken over
    await writeFile(path, '2147483646 1\n');
    const { ino } = await stat(path);
    const claim = `.k.lock.stale.${ino}`;
    await link(path, join(dir, claim));
    assert.equal(await tryLock(path), undefined, 'a fresh claim: another remover is on it');
    assert.deepEqual(await sweepLockLeftovers(dir), [], 'a young claim on a lock still in place stays');
    assert.deepEqual(await sweepLockLeftovers(dir, undefined, Date.now() + CLAIM_STALE_MS + 1000), [claim], 'an old one goes');
    const r = await tryLock(path);
    assert.ok(r, 'the stale lock is taken over once the dead remover\'s claim is gone');
    await r();
    // a claim whose lock is no longer in place (its remover killed after unlinking the lock) goes at once
    await writeFile(path, '2147483646 1\n');
    const again = `.k.lock.stale.${(await stat(path)).ino}`;
    await link(path, join(dir, again));
    await unlink(path);
    assert.deepEqual(await sweepLockLeftovers(dir), [again]);
    // an older version moved a live holder's lock aside and died: it goes back to its place
    const holder = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const rec = `${holder.pid} ${procStat(holder.pid!)!.startTime} t=00\n`;
      await writeFile(join(dir, '.k.lock.stale.2147483646.0badf00d'), rec);
      await sweepLockLeftovers(dir);
      assert.equal(await readFile(path, 'utf8'), rec, 'the live holder\'s lock is back in place');
      assert.deepEqual(await readdir(dir), ['k.lock']);
    } finally {
      holder.kill('SIGKILL');
    }
  });
});

test('three at a stale lock: a late remover of it never leaves a gap another maker could take while a live holder\'s lock is in place', async () => {
  // A judged the lock stale; B took it over meanwhile (a live holder); C keeps trying to make the
  // lock while A's removal runs. Moving B's file aside (then back) left the place empty for a moment:
  // C made the lock there, A's link back failed, B's file was dropped and B held on, unaware.
  await withDir(async (dir) => {
    const path = join(dir, 'k.lock');
    let cTook = 0;
    for (let round = 0; round < 100; round++) {
      await writeFile(path, '2147483646 1\n'); // a dead holder's
      const seen = (await readLockFile(path))!;
      const b = await tryLock(path); // B: takes the stale lock over
      assert.ok(b, 'B takes the dead holder\'s lock over');
      const bText = await readFile(path, 'utf8');
      const c = Array.from({ length: 20 }, () => createLockFile(path));
      const aResult = await removeStaleLockFile(path, seen); // A, late
      const cs = await Promise.all(c);
      for (const r of cs) if (r) { cTook++; await r(); }
      assert.equal(aResult, false, 'A leaves B\'s lock alone');
      assert.equal(await readFile(path, 'utf8').catch(() => ''), bText, 'B still holds the lock');
      await b();
      assert.deepEqual(await readdir(dir), [], 'nothing left beside it');
    }
    assert.equal(cTook, 0, `C made the lock while B held it, ${cTook} times in 100 rounds`);
  });
});
