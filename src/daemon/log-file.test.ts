import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, openSync, closeSync, writeSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RotatingLogFile } from './log-file.ts';
import { parseConfig, defaultPaths } from './config.ts';

test('the log rotates at the cap, keeps `keep` old files, drops the oldest and goes on logging', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-logfile-'));
  try {
    const path = join(dir, 'daemon.log');
    const log = RotatingLogFile.open({ path, maxBytes: 1000, keep: 2 });
    const line = (i: number): string => `line ${String(i).padStart(4, '0')} ${'x'.repeat(88)}`; // 99 bytes + newline
    for (let i = 0; i < 45; i++) log.write(line(i));
    log.close();
    assert.deepEqual((await readdir(dir)).sort(), ['daemon.log', 'daemon.log.1', 'daemon.log.2']);
    for (const f of ['daemon.log', 'daemon.log.1', 'daemon.log.2']) assert.ok((await stat(join(dir, f))).size <= 1000, f);
    // 10 lines per file: 0-9 dropped with the oldest rotation ... 40-44 in the live file
    assert.match(await readFile(join(dir, 'daemon.log.2'), 'utf8'), /^line 0020 /);
    assert.match(await readFile(join(dir, 'daemon.log.1'), 'utf8'), /^line 0030 /);
    const live = (await readFile(path, 'utf8')).trim().split('\n');
    assert.equal(live.length, 5);
    assert.equal(live[4], line(44));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('rotation truncates in place: an O_APPEND fd held by someone else (the daemon\'s stderr) follows into the new file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-logfile-'));
  try {
    const path = join(dir, 'daemon.log');
    const stderrLike = openSync(path, 'a');
    const log = RotatingLogFile.open({ path, maxBytes: 200, keep: 1 });
    for (let i = 0; i < 5; i++) log.write(`first ${i} ${'y'.repeat(40)}`);
    writeSync(stderrLike, 'crash trace\n');
    log.close();
    closeSync(stderrLike);
    assert.match(await readFile(path, 'utf8'), /crash trace\n$/);
    assert.match(await readFile(`${path}.1`, 'utf8'), /^first 0 /);
    // a file grown by other writers past the cap is rotated by the next line
    appendFileSync(path, 'z'.repeat(300) + '\n');
    const again = RotatingLogFile.open({ path, maxBytes: 200, keep: 1 });
    again.write('after');
    again.close();
    assert.equal(await readFile(path, 'utf8'), 'after\n');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a write that fails does not throw; the dropped lines are counted in the next one that gets through', () => {
  // /dev/full fails every write with ENOSPC
  const full = RotatingLogFile.open({ path: '/dev/full', maxBytes: 1 << 30, keep: 0 });
  assert.doesNotThrow(() => { full.write('a'); full.write('b'); });
  full.close();
});

test('config [log]: defaults, values and bad values', () => {
  const paths = defaultPaths({});
  assert.deepEqual(parseConfig('', paths).log, { file: '', maxBytes: 10 * 1024 * 1024, keep: 3 });
  assert.deepEqual(parseConfig('[log]\nfile = "/x/daemon.log"\nmax_bytes = 4096\nkeep = 1\n', paths).log, { file: '/x/daemon.log', maxBytes: 4096, keep: 1 });
  assert.throws(() => parseConfig('[log]\nmax_bytes = 10\n', paths), /log\.max_bytes must be an integer of at least 1024/);
  assert.throws(() => parseConfig('[log]\nkeep = -1\n', paths), /log\.keep must be an integer 0\.\.100/);
  assert.throws(() => parseConfig('[log]\nsize = 1\n', paths), /unknown key log\.size/);
});
