import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createLogger, guardWrite, type DropCounter } from './log.ts';

test('a logger whose writes fail drops and counts the lines and never throws', () => {
  const lines: string[] = [];
  let full = true;
  const counter: DropCounter = { dropped: 0, lastError: '' };
  const write = guardWrite((l) => {
    if (full) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
    lines.push(l);
  }, counter);
  const log = createLogger({ write });
  log.info('one');
  log.child({ part: 'x' }).error('two');
  assert.equal(counter.dropped, 2);
  assert.equal(counter.lastError, 'ENOSPC');
  full = false;
  log.info('three');
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /msg="log lines dropped" count=2 reason=ENOSPC/);
  assert.match(lines[1]!, /msg=three/);
});

test('the default writer survives stderr on a full device (/dev/full) and the process goes on', () => {
  // process.stderr.write on a full file ends the process with an unhandled 'error' event; the
  // logger writes fd 2 itself and drops what does not fit
  const logTs = join(import.meta.dirname, 'log.ts');
  const script = `import { createLogger } from ${JSON.stringify(logTs)};
const log = createLogger();
for (let i = 0; i < 100; i++) log.info('line ' + i);
setTimeout(() => { log.error('still here'); process.stdout.write('alive\\n'); }, 50);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'alive\n');
  const r2 = spawnSync('sh', ['-c', `exec "$0" --input-type=module -e "$1" 2>/dev/full`, process.execPath, script], { timeout: 20_000, encoding: 'utf8' });
  assert.equal(r2.status, 0, r2.stderr);
  assert.equal(r2.stdout, 'alive\n');
});
