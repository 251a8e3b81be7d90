// The CLI and a daemon that dies or restarts: the real command (bin/bulkhead) against real daemons
// on temporary roots. A SIGKILLed daemon whose parent has not reaped it (a zombie) is replaced at
// once; a daemon that holds the run dir but does not answer yet is waited for; a pod `bulkhead run`
// made but whose container never came is removed on recovery, shown by `ps -a`, removed by `rm`;
// a failed auto-start shows only its own log lines; a dropped connection says the daemon died; the
// log rotates at its cap while the daemon keeps logging.
import { DAEMON_START_WAIT_MS } from '../../src/daemon/limits.ts';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configToml, startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { runCli, type CliPaths, type CliResult } from '../fixtures/cli.ts';
import { writeBusyboxArchive } from '../../src/cli/demo-image.ts';
import { procStat } from '../../src/util/proc.ts';
import { socketAnswers } from '../../src/util/socket.ts';
import { connect } from '../../src/cri/client.ts';

const MAIN = join(import.meta.dirname, '..', '..', 'src', 'daemon', 'main.ts');
const IMAGE = 'bulkhead.local/cli-crash:latest';

function bulkhead(p: CliPaths, args: string[]): Promise<CliResult> & { child: ChildProcess } {
  return runCli(p, args, { timeoutMs: 180_000 });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, ms: number, fn: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function alive(pid: number): boolean {
  const st = procStat(pid);
  return st !== undefined && st.state !== 'Z';
}

async function stopPid(pid: number): Promise<void> {
  if (!pid || !alive(pid)) return;
  try { process.kill(pid, 'SIGTERM'); } catch { return; }
  for (let i = 0; i < 200 && alive(pid); i++) await sleep(100);
  if (alive(pid)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
}

describe('the CLI across daemon crashes and restarts (private daemons)', () => {
  let base: string;
  let p: CliPaths;
  const daemons: number[] = [];
  const others: ChildProcess[] = [];
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'bulkhead-cli-crash-'));
    p = { root: join(base, 'root'), runDir: join(base, 'run'), socket: join(base, 'run', 'cri.sock'), configPath: join(base, 'config.toml') };
    // a small log cap, so that rotation shows within a test
    await writeFile(p.configPath, configToml(p.root, p.runDir, p.socket, {
      handlers: { runc: { backend: 'runc' } }, extraToml: '[log]\nmax_bytes = 8192\nkeep = 2\n',
    }));
  });
  after(async () => {
    for (const c of others) c.kill('SIGKILL');
    for (const pid of daemons) await stopPid(pid);
    await rm(base, { recursive: true, force: true, maxRetries: 3 });
  });

  it('a daemon that fails to start: the CLI shows this start\'s log lines, not an older daemon\'s', async () => {
    const bad = { ...p, configPath: join(base, 'bad.toml') };
    await writeFile(bad.configPath, 'no_such_key = 1\n');
    await rm(p.root, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(p.root, { recursive: true }));
    await writeFile(join(p.root, 'daemon.log'), 'time=2026-01-01T00:00:00Z level=info msg="OLD DAEMON LINE"\n');
    const r = await bulkhead(bad, ['ps']);
    assert.equal(r.code, 125, r.stderr);
    assert.match(r.stderr, /but it exited with 1/);
    assert.match(r.stderr, /unknown key no_such_key/);
    assert.doesNotMatch(r.stderr, /OLD DAEMON LINE/);
  });

  it('right after a SIGKILL, with the dead daemon still a zombie, a CLI call starts a new daemon and succeeds', async () => {
    // The daemon's parent is `sleep`, which never reaps: once killed, the daemon stays a zombie
    // holding its pid (kill(pid, 0) still succeeds), as when its parent is slow to reap.
    const holder = spawn('sh', ['-c', `"$0" --disable-warning=ExperimentalWarning "$1" --config "$2" --root "$3" --run-dir "$4" --socket "$5" --log-file "$3/daemon.log" >>"$3/daemon.log" 2>&1 & echo $!; exec sleep 300`,
      process.execPath, MAIN, p.configPath, p.root, p.runDir, p.socket], { stdio: ['ignore', 'pipe', 'ignore'] });
    others.push(holder);
    const pid = Number(await new Promise<string>((resolve) => holder.stdout!.once('data', (b: Buffer) => resolve(b.toString().trim()))));
    daemons.push(pid);
    await waitFor('the first daemon to answer', 120_000, () => socketAnswers(p.socket, 500));
    process.kill(pid, 'SIGKILL');
    await waitFor('a zombie', 5000, () => procStat(pid)?.state === 'Z');
    const r = await bulkhead(p, ['ps', '-a']);
    assert.equal(r.code, 0, r.stderr);
    const started = /started a Bulkhead daemon in the background \(pid (\d+)/.exec(r.stderr);
    assert.ok(started, r.stderr);
    daemons.push(Number(started[1]));
    assert.equal(procStat(pid)?.state, 'Z', 'the old daemon was still a zombie all along');
  });

  it('daemon.log rotates at its cap (log.max_bytes) and the daemon keeps logging', async () => {
    const log = join(p.root, 'daemon.log');
    const client = await connect(p.socket);
    try {
      for (let i = 0; i < 400; i++) {
        await client.listContainers();
        if (i > 50 && (await stat(`${log}.2`).catch(() => undefined))) break;
      }
      const marker = `rotation-${randomUUID()}`;
      await client.podSandboxStatus(marker).catch(() => {}); // NotFound, logged with the id
      await waitFor('the marker in the live log', 10_000, async () => (await readFile(log, 'utf8')).includes(marker));
    } finally {
      client.close();
    }
    for (const f of [log, `${log}.1`, `${log}.2`]) {
      const s = await stat(f);
      assert.ok(s.size <= 8192, `${f} is ${s.size} bytes`);
    }
    await assert.rejects(stat(`${log}.3`), { code: 'ENOENT' }, 'only log.keep = 2 old files are kept');
    assert.match(await readFile(`${log}.2`, 'utf8'), /level=/);
  });

  it('a daemon holding the run dir but not answering yet is waited for, with one line on stderr', async () => {
    // stop the daemon, then let a stand-in process hold the run dir's lock for 1.5 s
    for (const pid of daemons) await stopPid(pid);
    const standIn = spawn('sleep', ['30'], { stdio: 'ignore' });
    others.push(standIn);
    const st = procStat(standIn.pid!)!;
    await writeFile(join(p.runDir, 'bulkhead.pid'), `${standIn.pid} ${st.startTime}\n`);
    // the stand-in goes 1.5 s after the CLI says it waits (a timer from the CLI's spawn could fire
    // before a slow CLI start even looked at the pid file)
    const cli = bulkhead(p, ['ps']);
    let killedAt = 0;
    let killer: NodeJS.Timeout | undefined;
    let err = '';
    cli.child.stderr!.on('data', (b: Buffer) => {
      err += b.toString();
      if (!killer && err.includes('waiting up to')) killer = setTimeout(() => { killedAt = Date.now(); standIn.kill('SIGKILL'); }, 1500);
    });
    const r = await cli;
    clearTimeout(killer);
    standIn.kill('SIGKILL');
    assert.equal(r.code, 0, r.stderr);
    // as long as the daemon's own start-up limit (and its process start): not 10 s
    assert.match(r.stderr, new RegExp(`waiting up to ${Math.round(DAEMON_START_WAIT_MS / 1000)} s for the Bulkhead daemon \\(pid ${standIn.pid}\\) to finish starting`));
    assert.ok(killedAt > 0, 'it waited for the holder to go');
    const started = /started a Bulkhead daemon in the background \(pid (\d+)/.exec(r.stderr);
    assert.ok(started, r.stderr);
    daemons.push(Number(started[1]));
  });
});

describe('a pod `bulkhead run` made without its container (test daemon)', () => {
  let d: TestDaemon;
  let dir: string;
  let p: CliPaths;
  before(async () => {
    d = await startTestDaemon({ name: 'cli-crash-', handlers: { runc: { backend: 'runc' } } });
    p = { root: d.root, runDir: d.runDir, socket: d.socket, configPath: d.configPath };
    dir = await mkdtemp(join(tmpdir(), 'bulkhead-cli-crash-img-'));
    const archive = join(dir, 'img.tar');
    await writeBusyboxArchive(archive, IMAGE);
    const r = await bulkhead(p, ['load', '-i', archive]);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await d?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const cliPod = (name: string): Parameters<TestDaemon['client']['runPodSandbox']>[0] => ({
    metadata: { name, uid: randomUUID(), namespace: 'bulkhead', attempt: 0 },
    labels: { 'io.bulkhead.cli': 'run' },
    annotations: { 'io.bulkhead.network': 'none' },
    linux: {},
  });

  it('ps -a shows it, run --name says what to do, rm removes it, then run --name works', async () => {
    // what a CLI killed between RunPodSandbox and CreateContainer leaves
    await d.client.runPodSandbox(cliPod('half'), 'runc');
    const ps = await bulkhead(p, ['ps', '-a']);
    assert.equal(ps.code, 0, ps.stderr);
    assert.match(ps.stdout, /no container\s+half/);
    assert.match(ps.stderr, /remove with 'bulkhead rm half'/);
    const again = await bulkhead(p, ['run', '-d', '--name', 'half', '--network', 'none', IMAGE, 'sleep', '300']);
    assert.equal(again.code, 125);
    assert.match(again.stderr, /held by the pod of an earlier run that was interrupted .*'bulkhead rm half'/);
    const r = await bulkhead(p, ['rm', '-f', 'half']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await d.client.listPodSandbox()).filter((x) => x.metadata.name === 'half'), []);
    const ok = await bulkhead(p, ['run', '-d', '--name', 'half', '--network', 'none', IMAGE, 'sleep', '300']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((await bulkhead(p, ['rm', '-f', 'half'])).code, 0);
  });

  it('a daemon restarted after a SIGKILL removes the CLI pods that have no container, and only those', async () => {
    const orphan = cliPod('orphan');
    const logDir = join(d.root, 'logs', `bulkhead_orphan_${orphan.metadata!.uid}`);
    orphan.logDirectory = logDir;
    const empty = await d.client.runPodSandbox(orphan, 'runc');
    assert.ok(await stat(logDir), 'the pod has its log directory');
    // a pod not made by the CLI stays, even without containers
    const other = await d.client.runPodSandbox({ metadata: { name: 'k8s-pod', uid: randomUUID(), namespace: 'other', attempt: 0 }, annotations: { 'io.bulkhead.network': 'none' }, linux: {} }, 'runc');
    await d.stop('SIGKILL');
    await d.restart();
    const ids = (await d.client.listPodSandbox()).map((x) => x.id);
    assert.ok(!ids.includes(empty), 'the empty CLI pod is gone');
    assert.ok(ids.includes(other), 'the other pod stays');
    await assert.rejects(stat(logDir), { code: 'ENOENT' }, 'its log directory went with it');
    assert.match(await d.log(), /removed a pod that bulkhead run made but never got its container/);
    await d.client.stopPodSandbox(other);
    await d.client.removePodSandbox(other);
  });

  it('SIGKILL of the daemon in the middle of run -d: after the restart the same --name runs again', async () => {
    const run = bulkhead(p, ['run', '-d', '--name', 'mid', '--network', 'none', IMAGE, 'sleep', '300']);
    // kill the daemon the moment the run's pod exists, before (or while) its container is made
    await waitFor('the pod of the run', 120_000, async () => (await d.client.listPodSandbox().catch(() => [])).some((x) => x.metadata.name === 'mid'));
    await d.stop('SIGKILL');
    const cut = await run;
    assert.notEqual(cut.code, 0, 'the run was cut short');
    assert.doesNotMatch(cut.stderr, /^bulkhead: Connection dropped/m);
    await d.restart();
    // whatever the kill left (an empty pod is removed on recovery; a created container is not),
    // rm -f and run --name get the name back
    await bulkhead(p, ['rm', '-f', 'mid']);
    const ok = await bulkhead(p, ['run', '-d', '--name', 'mid', '--network', 'none', IMAGE, 'sleep', '300']);
    assert.equal(ok.code, 0, ok.stderr);
    const ps = await bulkhead(p, ['ps', '-a']);
    assert.doesNotMatch(ps.stdout, /no container/);
    assert.equal((await bulkhead(p, ['rm', '-f', 'mid'])).code, 0);
    assert.deepEqual((await d.client.listPodSandbox()).filter((x) => x.metadata.name === 'mid'), []);
  });

  it('a call cut by the daemon dying says the daemon closed the connection, where its log is and what to do', async () => {
    const run = bulkhead(p, ['run', '--rm', '--name', 'cut', '--network', 'none', IMAGE, 'sh', '-c', 'echo up; exec sleep 300']);
    let out = '';
    run.child.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
    await waitFor('the workload to run', 120_000, () => out.includes('up'));
    await d.stop('SIGKILL');
    const r = await run;
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /the Bulkhead daemon closed the connection during the call \(it died or was stopped/);
    assert.match(r.stderr, new RegExp(`see its log ${join(d.root, 'daemon.log').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
    assert.match(r.stderr, /run the command again/);
    await d.restart();
    await bulkhead(p, ['rm', '-f', 'cut']);
  });
});
