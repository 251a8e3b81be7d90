import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, appendFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLogLine, readLogs, type LogLine } from './log-reader.ts';

test('parseLogLine: CRI log format', () => {
  const cases: [string, ReturnType<typeof parseLogLine>][] = [
    ['2024-01-01T00:00:00.000000001Z stdout F hello world', { time: '2024-01-01T00:00:00.000000001Z', stream: 'stdout', partial: false, content: 'hello world' }],
    ['2024-01-01T00:00:00Z stderr P part', { time: '2024-01-01T00:00:00Z', stream: 'stderr', partial: true, content: 'part' }],
    ['2024-01-01T00:00:00Z stdout F', { time: '2024-01-01T00:00:00Z', stream: 'stdout', partial: false, content: '' }],
    ['2024-01-01T00:00:00Z other F x', undefined],
    ['garbage', undefined],
  ];
  for (const [line, want] of cases) assert.deepEqual(parseLogLine(line), want, line);
});

async function collect(it: AsyncIterable<LogLine>): Promise<LogLine[]> {
  const out: LogLine[] = [];
  for await (const l of it) out.push(l);
  return out;
}

test('readLogs joins partial lines, honours tail and since', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bh-logs-'));
  try {
    const p = join(dir, 'c.log');
    await writeFile(p, [
      '2024-01-01T00:00:01Z stdout P hel',
      '2024-01-01T00:00:01Z stderr F err1',
      '2024-01-01T00:00:02Z stdout F lo',
      '2024-01-01T00:00:03Z stdout F three',
      '',
    ].join('\n'));
    const all = await collect(readLogs(p));
    assert.deepEqual(all.map((l) => [l.stream, l.content]), [['stderr', 'err1\n'], ['stdout', 'hello\n'], ['stdout', 'three\n']]);
    const tail = await collect(readLogs(p, { tail: 1 }));
    assert.deepEqual(tail.map((l) => l.content), ['three\n']);
    const since = await collect(readLogs(p, { since: new Date('2024-01-01T00:00:02Z') }));
    assert.deepEqual(since.map((l) => l.content), ['three\n']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('readLogs follows appended lines and a rotated file until exited', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bh-logs-'));
  try {
    const p = join(dir, 'c.log');
    await writeFile(p, '2024-01-01T00:00:01Z stdout F one\n');
    let exited = false;
    const got: string[] = [];
    const reading = (async () => {
      for await (const l of readLogs(p, { follow: true, pollMs: 20, exited: async () => exited })) got.push(l.content);
    })();
    await new Promise((r) => setTimeout(r, 60));
    await appendFile(p, '2024-01-01T00:00:02Z stdout F two\n');
    await new Promise((r) => setTimeout(r, 60));
    await rename(p, p + '.1');
    await writeFile(p, '2024-01-01T00:00:03Z stdout F three\n');
    await new Promise((r) => setTimeout(r, 80));
    exited = true;
    await reading;
    assert.deepEqual(got, ['one\n', 'two\n', 'three\n']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('readLogs gives a line the workload never ended (P with no F after it) at the end, as it is, followed or not', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bh-logs-'));
  try {
    const p = join(dir, 'c.log');
    await writeFile(p, [
      '2024-01-01T00:00:01Z stdout F one',
      '2024-01-01T00:00:02Z stdout P ab',
      '2024-01-01T00:00:02Z stdout P c',
      '2024-01-01T00:00:03Z stderr P def',
      '',
    ].join('\n'));
    const want = [['stdout', 'one\n'], ['stdout', 'abc'], ['stderr', 'def']];
    assert.deepEqual((await collect(readLogs(p))).map((l) => [l.stream, l.content]), want);
    assert.deepEqual((await collect(readLogs(p, { tail: 1 }))).map((l) => l.content), ['def']);
    const followed = await collect(readLogs(p, { follow: true, pollMs: 5, exited: async () => true }));
    assert.deepEqual(followed.map((l) => [l.stream, l.content]), want);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('readLogs reads a backlog larger than one read (4 MiB at a time), every line whole and in order', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bh-logs-'));
  try {
    const p = join(dir, 'c.log');
    const n = 200_000;
    // ~9 MiB: lines cross the 4 MiB read boundaries
    await writeFile(p, Array.from({ length: n }, (_, i) => `2024-01-01T00:00:01Z stdout F line ${i}`).join('\n') + '\n');
    const got = await collect(readLogs(p));
    assert.equal(got.length, n);
    assert.ok(got.every((l, i) => l.content === `line ${i}\n`));
    const followed = await collect(readLogs(p, { follow: true, pollMs: 5, tail: 0, exited: async () => true }));
    assert.equal(followed.length, 0, 'tail 0: nothing of what was there');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
