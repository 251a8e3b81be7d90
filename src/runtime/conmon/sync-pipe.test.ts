import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PassThrough } from 'node:stream';
import { MAX_SYNC_LINE, parseSyncLine, readSyncPipe, SyncPipeParser, type SyncFrame } from './sync-pipe.ts';

const msgs = (fs: SyncFrame[]): unknown[] => fs.map((f) => (f.kind === 'message' ? f.msg : `malformed: ${f.reason}`));

describe('conmon sync pipe', () => {
  it('parses what conmon sends: a pid, an exit code, a failure with its message', () => {
    for (const [line, want] of [
      ['{"data": 4242}', { data: 4242 }],
      ['{"data": 0}', { data: 0 }],
      ['{"data": -1, "message": "runc create failed: exec: \\"nope\\": executable file not found in $PATH"}', { data: -1, message: 'runc create failed: exec: "nope": executable file not found in $PATH' }],
    ] as const) {
      assert.deepEqual(parseSyncLine(line), { kind: 'message', msg: want }, line);
    }
  });

  it('calls malformed what is not conmon\'s message, and says why', () => {
    for (const [line, reason] of [
      ['pid 42', 'not JSON'],
      ['{"data": 42', 'not JSON'],
      ['[42]', 'not a JSON object'],
      ['null', 'not a JSON object'],
      ['{"data": "42"}', '"data" is not an integer'],
      ['{"data": 1.5}', '"data" is not an integer'],
      ['{"data": 1e300}', '"data" is not an integer'],
      ['{"message": "x"}', '"data" is not an integer'],
      ['{"data": 1, "message": 7}', '"message" is not a string'],
    ] as const) {
      const f = parseSyncLine(line);
      assert.equal(f.kind, 'malformed', line);
      assert.equal(f.kind === 'malformed' && f.reason, reason, line);
    }
  });

  it('frames lines split across chunks, several in one chunk, and skips blank lines', () => {
    const p = new SyncPipeParser();
    assert.deepEqual(p.push('{"da'), []);
    assert.deepEqual(msgs(p.push('ta": 7}\n\n{"data": 0}\n{"data"')), [{ data: 7 }, { data: 0 }]);
    assert.deepEqual(msgs(p.push(': 3}\n')), [{ data: 3 }]);
    assert.deepEqual(p.end(), []);
  });

  it('keeps a UTF-8 character split across two chunks whole', () => {
    const p = new SyncPipeParser();
    const bytes = Buffer.from('{"data": -1, "message": "ünïcødé"}\n');
    const cut = bytes.indexOf(0xc3) + 1; // between the two bytes of "ü"
    assert.deepEqual(p.push(bytes.subarray(0, cut)), []);
    assert.deepEqual(msgs(p.push(bytes.subarray(cut))), [{ data: -1, message: 'ünïcødé' }]);
  });

  it('reports a line cut off by the pipe closing as malformed', () => {
    const p = new SyncPipeParser();
    assert.deepEqual(p.push('{"data": 12'), []);
    assert.deepEqual(msgs(p.end()), ['malformed: the pipe closed in the middle of a line']);
  });

  it('bounds a line: an endless one is reported once and skipped to its newline, the next message still read', () => {
    const p = new SyncPipeParser();
    const chunk = 'x'.repeat(16 * 1024);
    const out: SyncFrame[] = [];
    for (let i = 0; i < 20; i++) out.push(...p.push(chunk)); // 320 KiB without a newline
    assert.deepEqual(msgs(out), [`malformed: line longer than ${MAX_SYNC_LINE} bytes`]);
    assert.ok(out[0]!.kind === 'malformed' && out[0]!.excerpt.length <= 200);
    assert.deepEqual(msgs(p.push('yyy\n{"data": 5}\n')), [{ data: 5 }]);
    assert.deepEqual(p.end(), []);
  });

  it('readSyncPipe delivers frames in order and ends once', async () => {
    const s = new PassThrough();
    const got: unknown[] = [];
    let ends = 0;
    const done = new Promise<void>((resolve) => readSyncPipe(s, (f) => got.push(...msgs([f])), () => { ends++; resolve(); }));
    s.write('{"data": 100}\n{"da');
    s.write('ta": 0}\n{"data"');
    s.end();
    await done;
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(got, [{ data: 100 }, { data: 0 }, 'malformed: the pipe closed in the middle of a line']);
    assert.equal(ends, 1);
  });
});
