// Errors across bulkhead-vm's own process boundaries: the ready line on fd 3 and the supervisor's
// `F` frames carry {code, reason, message}; nothing on the receiving side reads the message text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseReadyLine, readyErrorLine, readyOkLine } from './ready.ts';
import { VmdClient } from './client.ts';
import { encodeFrame, FrameDecoder } from './protocol.ts';
import { agentError } from './agent-errors.ts';
import { FailedPreconditionError, reasonError, toWire } from '../errors.ts';

test('ready line: ok, or the error with class and reason, with what in front', () => {
  assert.deepEqual(parseReadyLine(readyOkLine(4242).trim(), 'pod VM'), { pid: 4242 });
  const cases: [unknown, string, string | undefined, RegExp][] = [
    [new FailedPreconditionError('no guest kernel under /x; run `bin/bulkhead-vm --assets /y setup`', { reason: 'BH_VM_NOT_SET_UP' }), 'FailedPrecondition', 'BH_VM_NOT_SET_UP', /^pod VM: no guest kernel/],
    [reasonError('BH_COMMAND_NOT_FOUND', 'exec x: executable file not found in $PATH\nsecond line'), 'InvalidArgument', 'BH_COMMAND_NOT_FOUND', /^pod VM: exec x: executable file not found in \$PATH\nsecond line$/],
    [new Error('plain'), 'Internal', undefined, /^pod VM: plain$/],
  ];
  for (const [err, code, reason, message] of cases) {
    const line = readyErrorLine(err);
    assert.equal(line.split('\n').length, 2, 'one line');
    const r = parseReadyLine(line.trim(), 'pod VM');
    assert.ok('error' in r);
    assert.deepEqual([r.error.code, r.error.reason], [code, reason]);
    assert.match(r.error.message, message);
  }
  // a line that is neither: Internal, and says what came
  const odd = parseReadyLine('error: old style text', 'exec supervisor');
  assert.ok('error' in odd && odd.error.code === 'Internal' && /exec supervisor: sent "error: old style text"/.test(odd.error.message));
});

test('supervisor F frames: the client rejects with the class and reason the supervisor sent', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-vmdf-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const sock = join(dir, 's');
  // a stand-in supervisor answering each request with a fixed failure (the real one needs a VM boot)
  const answers: unknown[] = [
    agentError('start', 'exec nosuchcmd: executable file not found in $PATH'),
    toWire(reasonError('BH_CONTAINER_NOT_FOUND', 'container c9 is not in this VM')),
    'not json at all',
  ];
  const server = createServer((c) => {
    const dec = new FrameDecoder('test client');
    c.on('data', (b: Buffer) => {
      for (const f of dec.push(b)) {
        const a = answers.shift();
        c.write(encodeFrame('F', f.id, typeof a === 'string' ? a : JSON.stringify(a)));
      }
    });
  });
  await new Promise<void>((r) => server.listen(sock, r));
  const client = await VmdClient.connect(sock);
  t.after(async () => {
    client.close();
    await new Promise<void>((r) => server.close(() => r()));
  });
  await assert.rejects(client.request('start', { name: 'c1' }), (e: unknown) => {
    const err = e as { code: string; reason?: string; message: string };
    assert.deepEqual([err.code, err.reason], ['InvalidArgument', 'BH_COMMAND_NOT_FOUND']);
    assert.match(err.message, /fix the command\/args of the pod spec/);
    return true;
  });
  await assert.rejects(client.request('kill', { name: 'c9' }), { code: 'NotFound', reason: 'BH_CONTAINER_NOT_FOUND' });
  await assert.rejects(client.request('stats', { name: 'c1' }), { code: 'Internal', message: /the VM supervisor failed the request: not json at all/ });
});
