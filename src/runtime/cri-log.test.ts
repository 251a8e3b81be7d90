// The CRI log writer against the CLI's log reader (the same parsing crictl and the kubelet do),
// on real files; the full disk on a real tmpfs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, statfs, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { parseLogLine, readLogs, type LogLine } from '../cli/log-reader.ts';
import { CriLogWriter, formatCriTime, utf8Cut } from './cri-log.ts';

const RECORD_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) ([PF]) /;

async function readAll(path: string): Promise<LogLine[]> {
  const out: LogLine[] = [];
  for await (const l of readLogs(path)) out.push(l);
  return out;
}

/** The file's records, byte for byte: [stream, tag, content] (content without the record's newline). */
async function records(path: string): Promise<[string, string, Buffer][]> {
  const raw = await readFile(path);
  const out: [string, string, Buffer][] = [];
  let start = 0;
  for (let nl = raw.indexOf(0x0a); nl >= 0; start = nl + 1, nl = raw.indexOf(0x0a, start)) {
    const rec = raw.subarray(start, nl);
    const head = RECORD_RE.exec(rec.subarray(0, 48).toString('latin1'));
    assert.ok(head, `not a CRI record: ${JSON.stringify(rec.subarray(0, 60).toString('latin1'))}`);
    out.push([head[1]!, head[2]!, rec.subarray(head[0].length)]);
  }
  assert.equal(start, raw.length, 'the file ends with a complete record');
  return out;
}

describe('CRI log writer', () => {
  let dir = '';
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'bulkhead-cri-log-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });
  let n = 0;
  const file = (): string => join(dir, `${++n}.log`);

  it('writes the kubelet format: RFC3339 with nine digits in UTC, the stream, F for a full line', async () => {
    assert.equal(formatCriTime(1_765_000_000_123_456_789n), '2025-12-06T05:46:40.123456789Z');
    assert.equal(formatCriTime(1_765_000_000_000_000_007n), '2025-12-06T05:46:40.000000007Z');
    const p = file();
    const w = await CriLogWriter.open(p);
    await w.write('stdout', 'hello\n');
    await w.close();
    const text = await readFile(p, 'utf8');
    assert.match(text, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z stdout F hello\n$/);
    const parsed = parseLogLine(text.trimEnd());
    assert.deepEqual({ ...parsed, time: '' }, { time: '', stream: 'stdout', partial: false, content: 'hello' });
  });

  it('round trip through the reader: both streams in order, times that do not go back, since', async () => {
    const p = file();
    const w = await CriLogWriter.open(p);
    await w.write('stdout', 'one\ntwo\n');
    await w.write('stderr', 'oops\n');
    await w.write('stdout', 'three\n\n');
    await w.close();
    const lines = await readAll(p);
    assert.deepEqual(lines.map((l) => [l.stream, l.content]), [['stdout', 'one\n'], ['stdout', 'two\n'], ['stderr', 'oops\n'], ['stdout', 'three\n'], ['stdout', '\n']]);
    const times = lines.map((l) => l.time);
    assert.deepEqual([...times].sort(), times);
    const since = new Date(Date.parse(times[0]!) - 1000);
    assert.equal((await (async () => { const o = []; for await (const l of readLogs(p, { since })) o.push(l); return o; })()).length, 5);
  });

  it('a long line goes out as P records then an F one, none over the limit, and reads back whole', async () => {
    const p = file();
    const w = await CriLogWriter.open(p, { maxLineBytes: 1024 });
    const long = 'x'.repeat(5000);
    await w.write('stdout', `${long}\nshort\n`);
    await w.close();
    const recs = await records(p);
    assert.deepEqual(recs.map(([, tag, c]) => [tag, c.length]), [['P', 1024], ['P', 1024], ['P', 1024], ['P', 1024], ['F', 904], ['F', 5]]);
    assert.deepEqual((await readAll(p)).map((l) => l.content), [`${long}\n`, 'short\n']);
  });

  it('a long line of multi-byte characters is cut between characters, so it reads back unchanged', async () => {
    assert.equal(utf8Cut(Buffer.from('aé'), 2), 1); // "é" is 2 bytes at 1..2: cut before it
    assert.equal(utf8Cut(Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80]), 5), 5); // not UTF-8: cut at the limit
    const p = file();
    const w = await CriLogWriter.open(p, { maxLineBytes: 100 });
    const line = 'añ€😀'.repeat(200); // 1, 2, 3 and 4 byte characters
    await w.write('stdout', `${line}\n`);
    await w.close();
    for (const [, , c] of await records(p)) assert.equal(Buffer.from(c.toString('utf8')).equals(c), true, 'each record is valid UTF-8 by itself');
    assert.deepEqual((await readAll(p)).map((l) => l.content), [`${line}\n`]);
  });

  it('partial lines: chunks are joined to their newline; a stream that ends without one still has its last line', async () => {
    const p = file();
    const w = await CriLogWriter.open(p);
    await w.write('stdout', 'abc');
    await w.write('stderr', 'err-');
    await w.write('stdout', 'def\nghi');
    await w.write('stderr', 'line\n');
    await w.endStream('stdout');
    await w.close();
    assert.deepEqual((await readAll(p)).map((l) => [l.stream, l.content]), [['stdout', 'abcdef\n'], ['stderr', 'err-line\n'], ['stdout', 'ghi\n']]);
  });

  it('endStream with partial: the unterminated last line is a P record (as conmon writes it)', async () => {
    const p = file();
    const w = await CriLogWriter.open(p);
    await w.write('stdout', 'one\ntail');
    await w.endStream('stdout', { partial: true });
    await w.endStream('stderr', { partial: true });
    await w.close();
    assert.deepEqual((await records(p)).map(([s, t, c]) => [s, t, c.toString()]), [['stdout', 'F', 'one'], ['stdout', 'P', 'tail']]);
  });

  it('pipeFrom copies Node streams; a character split between two chunks stays whole', async () => {
    const p = file();
    const w = await CriLogWriter.open(p);
    const e = Buffer.from('é\n');
    await Promise.all([
      w.pipeFrom(Readable.from([Buffer.from('out 1\nout'), Buffer.from(' 2\n'), e.subarray(0, 1), e.subarray(1)]), 'stdout'),
      w.pipeFrom(Readable.from([Buffer.from('err 1\nno newline at the end')]), 'stderr'),
    ]);
    await w.close();
    const lines = await readAll(p);
    assert.deepEqual(lines.filter((l) => l.stream === 'stdout').map((l) => l.content), ['out 1\n', 'out 2\n', 'é\n']);
    assert.deepEqual(lines.filter((l) => l.stream === 'stderr').map((l) => l.content), ['err 1\n', 'no newline at the end\n']);
  });

  it('CRLF: the carriage return stays in the content, as the process wrote it', async () => {
    const p = file();
    const w = await CriLogWriter.open(p);
    await w.write('stdout', 'dos\r\nline\r\n\r\n');
    await w.close();
    assert.deepEqual((await readAll(p)).map((l) => l.content), ['dos\r\n', 'line\r\n', '\r\n']);
  });

  it('binary output is written byte for byte: the records joined give the input back', async () => {
    const p = file();
    const w = await CriLogWriter.open(p, { maxLineBytes: 700 });
    const input = Buffer.concat([randomBytes(20_000), Buffer.from([0, 0xff, 0xfe, 0x0a, 0x0d, 0x0a, 0xc3])]);
    for (let i = 0; i < input.length; i += 3333) await w.write('stdout', input.subarray(i, i + 3333));
    await w.close();
    const recs = await records(p);
    const back = Buffer.concat(recs.flatMap(([, tag, c]) => (tag === 'F' ? [c, Buffer.from('\n')] : [c])));
    // the last line had no newline: endStream wrote it as a full line, so one newline more
    assert.ok(back.equals(Buffer.concat([input, Buffer.from('\n')])));
    assert.ok(recs.every(([, , c]) => c.length <= 700 && !c.includes(0x0a)));
  });

  it('kubelet rotation: the file is renamed, reopen() makes a new one at the path, nothing is lost or doubled', async () => {
    const p = file();
    const w = await CriLogWriter.open(p);
    await w.write('stdout', 'before\n');
    await rename(p, `${p}.20261206-063000`);
    await w.write('stdout', 'still the old file\n'); // between the rename and the reopen
    await w.reopen();
    await w.write('stdout', 'after\n');
    await w.close();
    assert.deepEqual((await readAll(`${p}.20261206-063000`)).map((l) => l.content), ['before\n', 'still the old file\n']);
    assert.deepEqual((await readAll(p)).map((l) => l.content), ['after\n']);
  });

  it('refuses a symlink at the log path, and a failed reopen keeps writing to the old file', async () => {
    const p = file();
    await writeFile(join(dir, 'target'), '');
    await symlink(join(dir, 'target'), p);
    await assert.rejects(CriLogWriter.open(p), (e: NodeJS.ErrnoException) => e.code === 'ELOOP');
    const q = join(dir, 'sub', 'x.log');
    await mkdir(join(dir, 'sub'));
    const w = await CriLogWriter.open(q);
    await rm(join(dir, 'sub'), { recursive: true });
    await assert.rejects(w.reopen(), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
    await w.write('stdout', 'still written\n');
    assert.equal(w.dropped, 0);
    await w.close();
  });

  describe('on a full disk (a real tmpfs)', () => {
    let mnt = '';
    before(async () => {
      mnt = await mkdtemp(join(tmpdir(), 'bulkhead-cri-log-full-'));
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', mnt], { timeout: 10_000 });
    });
    after(() => {
      try { execFileSync('umount', [mnt], { timeout: 10_000 }); } catch { /* not mounted */ }
      execFileSync('rmdir', [mnt], { timeout: 10_000 });
    });

    it('drops and counts records while there is no room, never throws, and writes again once there is; the file stays framed', async () => {
      const p = join(mnt, 'c.log');
      const w = await CriLogWriter.open(p, { maxLineBytes: 1000 });
      await w.write('stdout', 'before the disk filled\n');
      // fill the filesystem to the last byte
      const s = await statfs(mnt);
      await writeFile(join(mnt, 'filler'), Buffer.alloc(Number(s.bavail) * s.bsize)).catch(() => {});
      await writeFile(join(mnt, 'filler2'), Buffer.alloc(64 * 1024)).catch(() => {});
      const line = `${'y'.repeat(900)}\n`;
      for (let i = 0; i < 50; i++) await w.write('stdout', line); // resolves: nothing thrown
      assert.ok(w.dropped >= 45, `dropped ${w.dropped}`);
      await rm(join(mnt, 'filler'));
      await rm(join(mnt, 'filler2'), { force: true });
      await w.write('stderr', 'after room came back\n');
      await w.close();
      await records(p); // every line of the file is a record (a cut record was ended by the next write)
      const lines = await readAll(p);
      assert.equal(lines[0]!.content, 'before the disk filled\n');
      assert.deepEqual(lines.at(-1), { ...lines.at(-1)!, stream: 'stderr', content: 'after room came back\n' });
    });
  });
});
