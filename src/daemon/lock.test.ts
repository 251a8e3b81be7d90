import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, writeSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquirePidLock, holderAlive, parseLockRecord } from './lock.ts';
import { procStat } from '../util/proc.ts';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-lock-'));
  try { await fn(dir); } finally { await rm(dir, { recursive: true, force: true }); }
}

test('lock record: pid and start time of the owner; released by its owner', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'bulkhead.pid');
    const lock = await acquirePidLock(path, 'run dir x');
    const rec = parseLockRecord(await readFile(path, 'utf8'));
    assert.equal(rec.pid, process.pid);
    assert.equal(rec.startTime, procStat(process.pid)?.startTime);
    await assert.rejects(acquirePidLock(path, 'run dir x'), /already locked by this process/);
    await lock.release();
    await assert.rejects(readFile(path), { code: 'ENOENT' });
  });
});

test('a live owner keeps the lock; a lock naming the same pid with another start time (a reused pid) is stale', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'bulkhead.pid');
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const pid = child.pid!;
      const st = procStat(pid)!;
      await writeFile(path, `${pid} ${st.startTime}\n`);
      await assert.rejects(acquirePidLock(path, 'run dir y'), new RegExp(`another Bulkhead daemon \\(pid ${pid}\\) already uses run dir y`));
      // files written before start times were recorded: the pid alone decides
      await writeFile(path, `${pid}\n`);
      await assert.rejects(acquirePidLock(path, 'run dir y'), /another Bulkhead daemon/);
      await writeFile(path, `${pid} ${Number(st.startTime) + 1}\n`);
      const lock = await acquirePidLock(path, 'run dir y');
      assert.equal(parseLockRecord(await readFile(path, 'utf8')).pid, process.pid);
      await lock.release();
    } finally {
      child.kill('SIGKILL');
    }
  });
});

test('a zombie owner (killed, not yet reaped) does not hold the lock', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'bulkhead.pid');
    // sh starts a short sleep in the background and then becomes `sleep 30`, which never reaps it:
    // the short sleep stays a zombie for 30 s.
    const parent = spawn('sh', ['-c', 'sleep 0.05 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const pid = Number(await new Promise<string>((resolve) => parent.stdout!.once('data', (b: Buffer) => resolve(b.toString().trim()))));
      let st = procStat(pid);
      for (let i = 0; i < 100 && st?.state !== 'Z'; i++) { await new Promise((r) => setTimeout(r, 20)); st = procStat(pid); }
      assert.equal(st?.state, 'Z', 'the child became a zombie');
      // kill(pid, 0) succeeds on a zombie: the old check called it alive
      assert.doesNotThrow(() => process.kill(pid, 0));
      await writeFile(path, `${pid} ${st.startTime}\n`);
      assert.equal(holderAlive({ pid, startTime: st.startTime }), false);
      const lock = await acquirePidLock(path, 'run dir z');
      await lock.release();
    } finally {
      parent.kill('SIGKILL');
    }
  });
});

test('a lock left by a process that is gone is taken over; garbage counts as gone', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'bulkhead.pid');
    for (const content of ['999999999\n', 'garbage', '']) {
      await writeFile(path, content);
      const lock = await acquirePidLock(path, 'root r');
      await lock.release();
    }
  });
});

test('a lock on a full filesystem: a clear ResourceExhausted error, and no empty lock file left behind', async () => {
  await withDir(async (dir) => {
    const mnt = join(dir, 'fs');
    await mkdir(mnt);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt], { timeout: 10_000, encoding: 'utf8' });
    assert.equal(m.status, 0, m.stderr);
    try {
      const fd = openSync(join(mnt, 'fill'), 'w');
      try { for (;;) writeSync(fd, Buffer.alloc(4096)); } catch (err) { assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC'); }
      closeSync(fd);
      const path = join(mnt, 'bulkhead.pid');
      await assert.rejects(acquirePidLock(path, 'root R'), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ResourceExhausted');
        assert.match(err.message, /lock .*bulkhead\.pid for root R: its filesystem is full .* free space there/);
        return true;
      });
      assert.equal(existsSync(path), false, 'an empty lock would name no holder');
    } finally {
      spawnSync('umount', ['-l', mnt], { timeout: 10_000 });
    }
  });
});

test('many acquirePidLock calls at once (daemons started together): exactly one takes the lock', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'bulkhead.pid');
    for (let round = 0; round < 5; round++) {
      const all = await Promise.allSettled(Array.from({ length: 20 }, () => acquirePidLock(path, 'run dir c')));
      const got = all.filter((r) => r.status === 'fulfilled').map((r) => r.value);
      assert.equal(got.length, 1, `round ${round}: ${got.length} holders`);
      for (const r of all) if (r.status === 'rejected') assert.match(String(r.reason), /already locked by this process|changed hands/);
      await got[0]!.release();
      assert.equal(existsSync(path), false);
    }
  });
});
