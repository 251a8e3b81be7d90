// `bulkhead demo` (the README's main job) end to end with a private root: its own daemon, the
// demo image built from busybox-static, a trusted pod per available sandbox and the untrusted
// cases. Without the node's microVM assets under this root the microvm handler is left out, which
// keeps the run to a few seconds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN } from '../fixtures/cli.ts';

/** `bulkhead --root ROOT --run-dir RUN demo`: its exit code and output (stdout and stderr). */
async function demo(root: string, runDir: string): Promise<{ code: number | null; out: string }> {
  const child = spawn(BIN, ['--root', root, '--run-dir', runDir, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  child.stderr.on('data', (b: Buffer) => { out += b.toString(); });
  const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearTimeout(timer);
  return { code, out };
}

test('bulkhead demo runs the probe in runc and gVisor as trusted pods, moves an untrusted runc pod into a sandbox and refuses a privileged one', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-demo-test-'));
  try {
    const { code, out } = await demo(join(dir, 'root'), join(dir, 'run'));
    assert.equal(code, 0, out);
    assert.match(out, /^trusted +runc +runc +ok /m, out);
    assert.match(out, /^trusted +gvisor +gvisor +ok +4\.4\.0/m, out);
    // strict enforces what the strict-learn run of the same command learned just before
    assert.match(out, /^trusted +strict +strict +ok /m, out);
    assert.match(out, /^untrusted +runc +(gvisor|microvm) +ok /m, out);
    assert.match(out, /^untrusted +\(default\) +- +refused/m, out);
    assert.doesNotMatch(out, /is not allowed: pod log directories/, 'the demo pods\' log directories are under the demo daemon\'s root');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('bulkhead demo replaces a daemon already on its socket that runs another config (its trusted pods would be judged by another policy)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-demo-test-'));
  const root = join(dir, 'root');
  const runDir = join(dir, 'run');
  // what a CLI call with the demo's root and socket does: starts a daemon with the node's default config
  const g = ['--root', join(root, 'demo'), '--run-dir', join(runDir, 'demo'), '--socket', join(runDir, 'demo', 'cri.sock'), '--config', join(dir, 'other.toml')];
  try {
    await writeFile(join(dir, 'other.toml'), '# another config: the default policy\n');
    const first = spawnSync(BIN, [...g, 'ps'], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(first.status, 0, first.stderr);
    const { code, out } = await demo(root, runDir);
    assert.match(out, /already serves the demo's socket with another config .*other\.toml.*: stopping it and starting the demo's/, out);
    assert.equal(code, 0, out);
    assert.match(out, /^trusted +runc +runc +ok /m, 'a trusted pod runs where it asked, under the demo\'s policy');
  } finally {
    spawnSync('pkill', ['-f', dir]);
    await rm(dir, { recursive: true, force: true });
  }
});
