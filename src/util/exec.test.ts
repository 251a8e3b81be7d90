import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { DeadlineExceededError, AbortedError } from '../errors.ts';
import { processTree, run } from './exec.ts';

/** Pids whose command line is exactly `args` (found in /proc, so escaped processes count too). */
function pidsRunning(args: string[]): number[] {
  const want = args.join('\0') + '\0';
  const out: number[] = [];
  for (const pid of processTree(1)) {
    try { if (readFileSync(`/proc/${pid}/cmdline`, 'utf8') === want) out.push(pid); } catch { /* gone */ }
  }
  return out;
}

async function gone(args: string[], ms = 3000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (pidsRunning(args).length === 0) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

test('run: a timed-out command is killed with everything it started, a new session included, and run() returns', async () => {
  // unique sleep lengths name this test's processes
  const a = String(900 + Math.floor(Math.random() * 90));
  const b = String(800 + Math.floor(Math.random() * 90));
  const started = Date.now();
  await assert.rejects(run('sh', ['-c', `sleep ${a} & setsid sleep ${b} & wait`], { timeoutMs: 400 }), DeadlineExceededError);
  assert.ok(Date.now() - started < 5000, 'run() returned although a grandchild held its output pipes');
  assert.ok(await gone(['sleep', a]), `sleep ${a} (child of the killed shell) outlived it`);
  assert.ok(await gone(['sleep', b]), `sleep ${b} (in a session of its own) outlived the killed shell`);
});

test('run: a command that exits leaving a process on its output pipes still ends at its timeout', async () => {
  // the shell exits at once; its background sleep (out of the tree once reparented) holds stdout
  const a = String(500 + Math.floor(Math.random() * 90));
  const started = Date.now();
  try {
    await assert.rejects(run('sh', ['-c', `sleep ${a} & exit 0`], { timeoutMs: 400 }), DeadlineExceededError);
    assert.ok(Date.now() - started < 5000, `run() waited ${Date.now() - started} ms for the process holding its pipes`);
  } finally {
    for (const p of pidsRunning(['sleep', a])) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
  }
});

test('run: an aborted command is killed with its children', async () => {
  const a = String(700 + Math.floor(Math.random() * 90));
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 300);
  await assert.rejects(run('sh', ['-c', `sleep ${a} & wait`], { signal: ac.signal, timeoutMs: 60_000 }), AbortedError);
  assert.ok(await gone(['sleep', a]), `sleep ${a} outlived the aborted shell`);
});

test('processTree: lists a process and its descendants, parents first', async () => {
  const tree = processTree(process.pid);
  assert.equal(tree[0], process.pid);
  assert.equal(new Set(tree).size, tree.length);
});

test('run: dieWithParent ends the command when the process that started it is killed', async () => {
  const a = String(600 + Math.floor(Math.random() * 90));
  // a Node child starts `sleep` through run({dieWithParent}) and is then SIGKILLed
  const script = `import { run } from ${JSON.stringify(new URL('./exec.ts', import.meta.url).pathname)}; run('sleep', ['${a}'], { dieWithParent: true }); setTimeout(() => {}, 60000);`;
  const parent = await import('node:child_process').then((cp) => cp.spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' }));
  const until = Date.now() + 5000;
  while (pidsRunning(['sleep', a]).length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  assert.equal(pidsRunning(['sleep', a]).length, 1, 'the sleep never started');
  parent.kill('SIGKILL');
  assert.ok(await gone(['sleep', a]), `sleep ${a} outlived the process that started it`);
});
