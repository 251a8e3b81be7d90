import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseArgs } from 'node:util';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { globalOptions, joinDashValues, main, usageOfParseError } from './main.ts';

test('global options: defaults, BULKHEAD_* variables, flags; --run-dir carries the default socket along', () => {
  assert.deepEqual(globalOptions({}, {}), {
    root: '/var/lib/bulkhead', runDir: '/run/bulkhead', socket: '/run/bulkhead/cri.sock', config: '/etc/bulkhead/config.toml', json: false, debug: false,
  });
  // a private run dir must not talk to (or fight over) the node's default socket
  const priv = globalOptions({ root: '/tmp/r', 'run-dir': '/tmp/run' }, {});
  assert.equal(priv.runDir, '/tmp/run');
  assert.equal(priv.socket, '/tmp/run/cri.sock');
  assert.equal(globalOptions({ 'run-dir': '/tmp/run', socket: '/tmp/s.sock' }, {}).socket, '/tmp/s.sock');
  assert.equal(globalOptions({ 'run-dir': '/tmp/run' }, { BULKHEAD_SOCKET: '/env/s.sock' }).socket, '/env/s.sock');
  assert.equal(globalOptions({}, { BULKHEAD_RUN_DIR: '/env/run' }).socket, '/env/run/cri.sock');
  assert.equal(globalOptions({ 'run-dir': '/flag/run' }, { BULKHEAD_RUN_DIR: '/env/run' }).runDir, '/flag/run');
  assert.equal(globalOptions({ json: true }, {}).json, true);
});

test('a string flag takes a value that starts with "-" (docker does), so the command can say what is wrong with it', () => {
  const opts = { memory: { type: 'string' as const, short: 'm' }, rm: { type: 'boolean' as const }, name: { type: 'string' as const } };
  assert.deepEqual(joinDashValues(['--memory', '-5', '--rm', 'img'], opts), ['--memory=-5', '--rm', 'img']);
  assert.deepEqual(joinDashValues(['-m', '-5'], opts), ['--memory=-5']);
  assert.deepEqual(joinDashValues(['--memory', '64m', '--name', 'x'], opts), ['--memory', '64m', '--name', 'x']);
  // a boolean is never given the next word; "--" ends the flags
  assert.deepEqual(joinDashValues(['--rm', '-5'], opts), ['--rm', '-5']);
  assert.deepEqual(joinDashValues(['--', '--memory', '-5'], opts), ['--', '--memory', '-5']);
});

test('Node\'s argument-parser errors become one line in the CLI\'s words', () => {
  const parse = (args: string[]): unknown => {
    try { parseArgs({ args, options: { memory: { type: 'string', short: 'm' }, rm: { type: 'boolean' } }, strict: true, allowPositionals: false }); } catch (err) { return err; }
    return undefined;
  };
  assert.equal(usageOfParseError(parse(['--bogus']), 'run')?.message, "unknown flag --bogus for 'bulkhead run' (see 'bulkhead run --help')");
  assert.equal(usageOfParseError(parse(['--memory']), 'run')?.message, "--memory needs a value (see 'bulkhead run --help')");
  assert.equal(usageOfParseError(parse(['--rm=yes']), 'run')?.message, "--rm takes no value (see 'bulkhead run --help')");
  assert.equal(usageOfParseError(parse(['extra']), 'ps')?.message, "unexpected argument \"extra\" for 'bulkhead ps' (see 'bulkhead ps --help')");
  assert.equal(usageOfParseError(new Error('other'), 'ps'), undefined);
});

test('bad run flags are refused before any daemon is reached or started', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-main-'));
  try {
    const g = ['--root', join(dir, 'root'), '--run-dir', join(dir, 'run'), '--config', join(dir, 'none.toml')];
    await assert.rejects(main([...g, 'run', '--memory', '-5', 'img', 'true']), { name: 'UsageError', message: 'invalid --memory "-5": give a positive size in bytes or with a unit k, m, g, t (examples: 64m, 1g)' });
    await assert.rejects(main([...g, 'run', '--name', 'n'.repeat(300), 'img']), /^UsageError: invalid --name: too long \(300 > 209 characters/);
    await assert.rejects(main([...g, 'run', '--bogus', 'img']), { name: 'UsageError', message: "unknown flag --bogus for 'bulkhead run' (see 'bulkhead run --help')" });
    await assert.rejects(main(['--bogus', 'ps']), { name: 'UsageError', message: "unknown flag --bogus (global flags come before the command) (see 'bulkhead --help')" });
    assert.deepEqual(await readdir(dir), [], 'no daemon was started: nothing under the root or run dir');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('-h after -- belongs to the workload, not to bulkhead (profile learn IMAGE -- httpd -h /www)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-main-'));
  try {
    const g = ['--root', join(dir, 'root'), '--run-dir', join(dir, 'run'), '--config', join(dir, 'none.toml')];
    // reaches the command (which refuses the duration before any daemon) instead of printing the usage
    await assert.rejects(main([...g, 'profile', 'learn', '--duration', 'x', 'img', '--', 'httpd', '-h', '/www']), { name: 'UsageError', message: /invalid --duration "x"/ });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
