// What the CLI loads on its hot path: `bulkhead run` (and every command that merely connects) must
// not load the daemon. Node resolves and compiles each module at every call; the daemon's graph
// (engine, grpc-js, protobuf.js, yaml, prom-client: ~470 modules) cost each `run` ~150 ms.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';

const exec = promisify(execFile);

/** The module URLs Node resolves when importing `modules` in a fresh process. */
async function loaded(modules: string[]): Promise<string[]> {
  const hook = `import { registerHooks } from 'node:module';
const seen = new Set();
registerHooks({ resolve(s, c, next) { const r = next(s, c); seen.add(r.url); return r; } });
process.on('exit', () => { process.stdout.write(JSON.stringify([...seen])); });`;
  const main = modules.map((m) => `await import(${JSON.stringify(new URL(m, import.meta.url).href)});`).join('\n');
  const { stdout } = await exec(process.execPath, [
    '--disable-warning=ExperimentalWarning',
    '--import', `data:text/javascript,${encodeURIComponent(hook)}`,
    '--input-type=module', '-e', main,
  ], { timeout: 60_000 });
  return JSON.parse(stdout) as string[];
}

test('the run command and the client it connects with load no daemon and no npm package', async () => {
  const urls = await loaded(['./main.ts', './run.ts', './client.ts']);
  const here = new URL('../', import.meta.url).href;
  const ours = urls.filter((u) => u.startsWith(here)).map((u) => u.slice(here.length));
  assert.ok(ours.includes('cli/run.ts') && ours.includes('cri/client.ts'), `the hook saw the CLI load: ${ours.join(' ')}`);
  const packages = urls.filter((u) => u.includes('/node_modules/'));
  assert.deepEqual(packages, [], 'npm packages on the run path (each costs start-up at every call)');
  const daemonSide = ours.filter((m) => /^(engine|runtime|image|network|cri\/server|daemon\/run)/.test(m) || m === 'daemon/run.ts');
  assert.deepEqual(daemonSide, [], 'daemon modules on the run path');
  assert.ok(ours.length < 60, `${ours.length} of our modules on the run path: ${ours.join(' ')}`);
  // what only starting a daemon, an interactive run or a pull needs is loaded then, not every time
  const lazy = ['node:child_process', 'daemon/lock.ts', 'util/log.ts', 'cli/stream-client.ts', 'cli/progress.ts'];
  assert.deepEqual([...urls.filter((u) => u.startsWith('node:')), ...ours].filter((m) => lazy.includes(m)), [], 'loaded on the run path though only needed off it');
});

test('bin/bulkhead (a /bin/sh script) starts node with no other process (unless called through a symlink), and works through one', async (t) => {
  const bin = new URL('../../bin/bulkhead', import.meta.url).pathname;
  const strace = await exec('sh', ['-c', 'command -v strace']).then((r) => r.stdout.trim(), () => '');
  if (!strace) { t.skip('strace is not installed'); return; }
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-startup-'));
  try {
    const log = join(dir, 'trace');
    await exec(strace, ['-f', '-qq', '-e', 'trace=execve', '-e', 'signal=none', '-o', log, bin, 'version'], { timeout: 60_000 });
    const execs = (await readFile(log, 'utf8')).split('\n').filter((l) => /execve\("/.test(l) && !/ = -1 /.test(l)).map((l) => /execve\("([^"]+)"/.exec(l)![1]!);
    // the script itself (its #! is /bin/sh: no env, no bash), then node: nothing else
    assert.deepEqual(execs.map((p) => basename(p)).filter((n) => n !== 'bulkhead'), ['node'], `processes the wrapper ran: ${execs.join(' ')}`);
    // through a symlink to a symlink, and as a relative path: the sources are still found
    await symlink(bin, join(dir, 'one'));
    await symlink(join(dir, 'one'), join(dir, 'two'));
    assert.match((await exec(join(dir, 'two'), ['version'], { timeout: 60_000 })).stdout, /^bulkhead /);
    assert.match((await exec('./bulkhead', ['version'], { cwd: dirname(bin), timeout: 60_000 })).stdout, /^bulkhead /);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
