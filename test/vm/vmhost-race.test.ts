// Node-wide VM hosts started in a race (src/vm/cmd/vmhost.ts): two creates that find no host each
// start one; the one that loses the socket must report ready (the winner serves the root) rather
// than fail its create with EADDRINUSE. Real bin/bulkhead-vm processes; no VM is booted.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { BULKHEAD_VM, ASSETS, skipReason, tempDir } from '../../harness/vm-assets.ts';
import { VmdClient } from '../../src/vm/client.ts';
import { hostSocket } from '../../src/vm/cmd/common.ts';
import { leaveIdleHost } from '../../src/vm/cmd/vmhost-client.ts';
import { pidsNaming } from '../../src/vm/procs.ts';

describe('node-wide VM hosts started at once', { skip: skipReason(), timeout: 120_000 }, () => {
  const dir = tempDir('bulkhead-vm-hostrace-');
  const root = join(dir, 'state');
  after(async () => {
    await leaveIdleHost(root);
    rmSync(dir, { recursive: true, force: true });
  });

  it('every one reports ready and one serves the root', async () => {
    // its ready line on fd 3, as create reads it
    const start = (): Promise<{ line: string; code: number | null }> => new Promise((resolve) => {
      // every host waits 300 ms between finding no host and listening: all of them race for the socket
      const p = spawn(BULKHEAD_VM, ['--root', root, '--assets', ASSETS, '_vmhost'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'], env: { ...process.env, BULKHEAD_VM_TEST_HOST_LISTEN_DELAY_MS: '300' } });
      let line = '';
      let err = '';
      (p.stdio[3] as NodeJS.ReadableStream).on('data', (b: Buffer) => { line += b.toString(); });
      p.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
      // the winner stays (until idle); a loser exits after its line
      const t = setInterval(() => { if (line.includes('\n')) { clearInterval(t); resolve({ line: line.trim() || err, code: p.exitCode }); } }, 10);
      p.on('exit', (code) => { clearInterval(t); resolve({ line: line.trim() || err.trim(), code }); });
    });
    for (let round = 0; round < 3; round++) {
      const rs = await Promise.all(Array.from({ length: 4 }, start));
      for (const r of rs) assert.match(r.line, /^ok \d+$/, `every host started in the race says ready: ${JSON.stringify(rs)}`);
      const c = await VmdClient.connect(hostSocket(root), undefined, 5000);
      try { assert.equal(typeof (await c.request<{ pid: number }>('ping', {}, 5000)).pid, 'number'); } finally { c.close(); }
      await leaveIdleHost(root);
      // the losers have gone: nothing of this root runs once the winner left
      for (let i = 0; i < 100 && pidsNaming(root).length; i++) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(pidsNaming(root).length, 0, 'no host of this root left');
  });
});
