// The shell runner (shell-runner.ts): one long-lived shell runs many commands with run()'s contract
// (exit code, output, arguments passed verbatim), a command past its timeout or aborted has the
// shell killed and fails as run() fails, and the next command gets a new shell.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShellRunner } from './shell-runner.ts';

test('many commands, one shell: exit codes, output, arguments verbatim (quotes, spaces, $, globs)', async () => {
  const r = new ShellRunner();
  try {
    const odd = [`it's`, 'a b', '$HOME', '*', '`id`', '"q"', '\\', ''];
    const echoed = await r.run('printf', ['%s|', ...odd]);
    assert.deepEqual(echoed, { stdout: '', stderr: odd.map((a) => `${a}|`).join(''), code: 0, signal: null });
    assert.equal((await r.run('sh', ['-c', 'echo oops >&2; exit 3'])).code, 3);
    assert.equal((await r.run('sh', ['-c', 'echo oops >&2; exit 3'])).stderr, 'oops\n');
    assert.equal(r.started, 1, 'one shell for every command, one after another');
    // an argument with a newline cannot go on the shell's line: spawned directly, same result
    assert.equal((await r.run('printf', ['%s', 'a\nb'])).stdout, 'a\nb');
    assert.equal(r.started, 1);
    // side by side: none waits for another (up to 4 shells, the rest spawned), each gets its own result
    const t0 = Date.now();
    const many = await Promise.all(Array.from({ length: 8 }, (_, i) => r.run('sh', ['-c', `sleep 0.5; printf ${i}; exit ${i}`])));
    assert.ok(Date.now() - t0 < 3000, `side by side, not one after another (${Date.now() - t0} ms)`);
    assert.deepEqual(many.map((x) => [x.stderr || x.stdout, x.code]), Array.from({ length: 8 }, (_, i) => [String(i), i]));
    assert.equal(r.started, 4, 'at most 4 shells');
  } finally {
    r.close();
  }
});

test('a command past its timeout, or aborted, fails as run() fails; the next one runs on a new shell', async () => {
  const r = new ShellRunner();
  try {
    const t0 = Date.now();
    await assert.rejects(r.run('sleep', ['30'], { timeoutMs: 300 }), { name: 'DeadlineExceededError', message: 'sleep 30 did not finish within 300 ms' });
    assert.ok(Date.now() - t0 < 5000);
    assert.equal((await r.run('true', [])).code, 0);
    const ac = new AbortController();
    const p = r.run('sleep', ['30'], { signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(p, { name: 'AbortedError' });
    assert.equal((await r.run('sh', ['-c', 'exit 4'])).code, 4);
    assert.equal(r.started, 3, 'a new shell after each kill');
    assert.equal((await r.run('true', [])).code, 0);
    assert.equal(r.started, 3, 'the idle one is used again');
  } finally {
    r.close();
  }
});
