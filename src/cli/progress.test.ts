import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { createProgressRenderer, renderLine } from './progress.ts';

test('plain output: one line per layer status change', () => {
  const out = new PassThrough();
  let text = '';
  out.on('data', (b: Buffer) => { text += b.toString(); });
  const r = createProgressRenderer(out);
  r.update({ id: 'aaa', digest: 'sha256:aaa', status: 'waiting', current: 0, total: 10 });
  r.update({ id: 'aaa', digest: 'sha256:aaa', status: 'downloading', current: 1, total: 10 });
  r.update({ id: 'aaa', digest: 'sha256:aaa', status: 'downloading', current: 5, total: 10 });
  r.update({ id: 'bbb', digest: 'sha256:bbb', status: 'exists', current: 0, total: 10 });
  r.update({ id: 'aaa', digest: 'sha256:aaa', status: 'done', current: 10, total: 10 });
  r.done();
  assert.equal(text, 'aaa: Waiting\naaa: Downloading\nbbb: Already exists\naaa: Pull complete\n');
});

test('TTY output: bars redrawn in place', () => {
  const out = Object.assign(new PassThrough(), { isTTY: true, columns: 100 });
  let text = '';
  out.on('data', (b: Buffer) => { text += b.toString(); });
  const r = createProgressRenderer(out);
  r.update({ id: 'aaa', digest: 'sha256:aaa', status: 'downloading', current: 512, total: 2048 });
  r.update({ id: 'bbb', digest: 'sha256:bbb', status: 'exists', current: 0, total: 1 });
  r.done();
  r.update({ id: 'aaa', digest: 'sha256:aaa', status: 'done', current: 2048, total: 2048 });
  r.done();
  assert.match(text, /\x1b\[2Kaaa: Downloading \[=*> *\] 512 B\/2\.0 KiB\n\x1b\[2Kbbb: Already exists\n/);
  assert.match(text, /\x1b\[2A\x1b\[2Kaaa: Pull complete\n/);
  assert.equal(renderLine({ id: 'x', digest: '', status: 'extracting', current: 5, total: 10 }, 10), 'x: Extracting  [====>     ] 5 B/10 B');
});
