// The sub-container shim's protocol, case by case, against a stand-in runsc (a shell script that
// logs its arguments and acts out create/start/wait/delete) under a perl stand-in for conmon: a
// child subreaper that runs `shim create` with its stdio on files and reports every exit it reaps.
// The shim with the real runsc and conmon is tested in test/engine/gvisor.test.ts.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { arch } from 'node:os';
import { mkdtemp, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killTree, run } from '../../util/exec.ts';
import { KIND_FILE, ROOT_APP_ANNOTATION, shimKindOf, SUBCONTAINER_MARKER, writeSubcontainerShim } from './subcontainer-shim.ts';

const FAKE_RUNSC = `#!/bin/sh
echo "$*" >> "$FAKE_DIR/calls"
log=; cmd=
while [ $# -gt 0 ]; do
  case $1 in
    --root) shift ;;
    --log=*) log=\${1#--log=} ;;
    -*) ;;
    *) cmd=$1; shift; break ;;
  esac
  shift
done
eval "id=\\\${$#}"
case $cmd in
  create)
    while [ $# -gt 0 ]; do [ "$1" = --pid-file ] && echo 999 > "$2"; shift; done
    exit 0 ;;
  start)
    rc=$(cat "$FAKE_DIR/start-rc" 2>/dev/null || echo 0)
    if [ "$rc" != 0 ]; then echo "fake start of $id failed" > "$log"; exit "$rc"; fi
    read -r line || line=none
    echo "out of $id, in: $line"; echo "err of $id" >&2
    exit 0 ;;
  wait)
    while [ ! -f "$FAKE_DIR/exit-$id" ]; do sleep 0.05; done
    s=$(cat "$FAKE_DIR/exit-$id")
    if [ "$s" = eof ]; then echo 'urpc method "containerManager.Wait" failed: EOF' >&2; exit 128; fi
    echo "{\\"id\\":\\"$id\\",\\"exitStatus\\":$s}"
    exit 0 ;;
esac
exit 0
`;

/**
 * Tells the stand-in's `wait` how the container ended. Written whole and renamed into place: the
 * stand-in polls for the file and would otherwise read it half-written (an empty status).
 */
let exitDir = '';
async function exitWith(id: string, status: string): Promise<void> {
  await writeFile(join(exitDir, `.exit-${id}`), status);
  await rename(join(exitDir, `.exit-${id}`), join(exitDir, `exit-${id}`));
}

// PR_SET_CHILD_SUBREAPER (36) through prctl (syscall 157 on x86-64), as conmon does
const CONMON_STANDIN = String.raw`
use strict;
my ($in, $out, $err, @cmd) = @ARGV;
syscall(157, 36, 1, 0, 0, 0) == 0 or die "prctl: $!\n";
$| = 1;
my $pid = fork();
die "fork: $!\n" unless defined $pid;
if ($pid == 0) { open(STDIN, '<', $in) or die; open(STDOUT, '>', $out) or die; open(STDERR, '>', $err) or die; exec(@cmd) or exit 127; }
print "create $pid\n";
while ((my $p = waitpid(-1, 0)) > 0) { my $s = $?; print "reaped $p " . (($s & 127) ? 128 + ($s & 127) : $s >> 8) . "\n"; }
print "none\n";
`;

describe('runsc sub-container shim', { skip: arch() !== 'x64' ? 'the conmon stand-in calls prctl by its x86-64 number' : false }, () => {
  let dir: string;
  let shim: string;
  let fake: string;
  const globals = (): string[] => ['--root', join(dir, 'state'), '--platform=ptrace'];
  let n = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulkhead-shim-'));
    exitDir = dir;
    fake = join(dir, 'fake-runsc');
    await writeFile(fake, FAKE_RUNSC, { mode: 0o755 });
    shim = join(dir, 'runsc-shim');
    writeSubcontainerShim(shim, { runsc: fake, runDir: dir });
  });
  // a failed case leaves its conmon stand-in and waiter running (the stand-in waits for every
  // child): end them, or the file never finishes
  const standins: number[] = [];
  after(async () => {
    for (const pid of standins) killTree(pid);
    await rm(dir, { recursive: true, force: true });
  });

  const env = (): NodeJS.ProcessEnv => ({ ...process.env, FAKE_DIR: dir });

  /** A bundle for a new container; `sub` = an app container inside a sandbox. */
  async function bundle(sub: boolean): Promise<{ id: string; b: string }> {
    const id = `c${++n}`;
    const b = join(dir, 'containers', id);
    await mkdir(b, { recursive: true });
    const annotations = sub ? { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': 'p' } : {};
    const text = JSON.stringify({ ociVersion: '1.0.2', annotations });
    if (sub) assert.ok(text.includes(SUBCONTAINER_MARKER), 'the marker matches what JSON.stringify writes');
    await writeFile(join(b, 'config.json'), text);
    // as the backend writes it (GvisorBackend.prepareCreate)
    await writeFile(join(b, KIND_FILE), `${shimKindOf({ ociVersion: '1.0.2', annotations })}\n`);
    return { id, b };
  }

  /** Runs `shim create` under the conmon stand-in; resolves once the create process was reaped. */
  async function create(id: string, b: string): Promise<{ createPid: number; reaped: Promise<Map<number, number>>; pidFile: number }> {
    await writeFile(join(b, 'in'), `stdin of ${id}\n`);
    const child = spawn('perl', ['-e', CONMON_STANDIN, join(b, 'in'), join(b, 'out'), join(b, 'err'), shim, ...globals(), 'create', '--bundle', b, '--pid-file', join(b, 'pidfile'), id], {
      stdio: ['ignore', 'pipe', 'inherit'], env: env(),
    });
    if (child.pid !== undefined) standins.push(child.pid);
    const lines = createInterface({ input: child.stdout! });
    const reaps = new Map<number, number>();
    let createPid = 0;
    let createdDone: () => void = () => {};
    const created = new Promise<void>((r) => { createdDone = r; });
    const reaped = new Promise<Map<number, number>>((resolve) => {
      lines.on('line', (l) => {
        const [what, pid, code] = l.split(' ');
        if (what === 'create') createPid = Number(pid);
        if (what === 'reaped') {
          reaps.set(Number(pid), Number(code));
          if (Number(pid) === createPid) createdDone();
        }
        if (what === 'none') resolve(reaps);
      });
    });
    await created;
    assert.equal(reaps.get(createPid), 0, 'shim create succeeded');
    const pidFile = Number((await readFile(join(b, 'pidfile'), 'utf8')).trim());
    return { createPid, reaped, pidFile };
  }

  const shimRun = (args: string[]) => run(shim, [...globals(), ...args], { timeoutMs: 20_000, env: env() });
  const calls = async (): Promise<string[]> => (await readFile(join(dir, 'calls'), 'utf8')).trim().split('\n');

  it('a sandbox (root) container passes straight through to runsc', async () => {
    const { id, b } = await bundle(false);
    const c = await create(id, b);
    assert.equal(c.pidFile, 999, 'runsc\'s own pid file is left as it wrote it');
    assert.deepEqual([...(await c.reaped).keys()], [c.createPid], 'no waiter');
    assert.ok((await calls()).includes(`${globals().join(' ')} create --bundle ${b} --pid-file ${join(b, 'pidfile')} ${id}`));
    const r = await shimRun(['start', id]);
    assert.equal(r.code, 0);
    assert.ok((await calls()).includes(`${globals().join(' ')} start ${id}`), 'start passed through unchanged');
  });

  it('a sub-container: the waiter takes the pid slot, starts with conmon\'s stdin, stdout and stderr and exits with the container\'s code', async () => {
    const { id, b } = await bundle(true);
    const c = await create(id, b);
    assert.notEqual(c.pidFile, 999, 'the sandbox pid runsc wrote is replaced');
    assert.notEqual(c.pidFile, c.createPid);
    process.kill(c.pidFile, 0); // the waiter is alive
    assert.ok(!(await calls()).some((l) => l.endsWith(`start ${id}`)), 'nothing started before start');
    const r = await shimRun(['start', id]);
    assert.equal(r.code, 0, r.stderr);
    // runsc start ran with the waiter's (conmon's) stdio and the global flags, then runsc wait
    assert.equal(await readFile(join(b, 'out'), 'utf8'), `out of ${id}, in: stdin of ${id}\n`);
    assert.equal(await readFile(join(b, 'err'), 'utf8'), `err of ${id}\n`);
    // the waiter calls runsc wait once runsc start has returned, which may be after the output
    const waitLine = `${globals().join(' ')} wait ${id}`;
    for (let i = 0; i < 100 && !(await calls()).includes(waitLine); i++) await new Promise((r) => setTimeout(r, 50));
    const all = await calls();
    assert.ok(all.includes(`--log=${join(b, 'shim-start.log')} ${globals().join(' ')} start ${id}`), all.join('\n'));
    assert.ok(all.includes(waitLine), all.join('\n'));
    // a second start is runsc's to refuse (passed through)
    await shimRun(['start', id]);
    assert.equal((await calls()).filter((l) => l === `${globals().join(' ')} start ${id}`).length, 1);
    await exitWith(id, '3');
    assert.equal((await c.reaped).get(c.pidFile), 3, 'conmon reaps the waiter with the container\'s exit code');
  });

  it('death by a signal (128+N from runsc wait) and a vanished sandbox (137) reach conmon', async () => {
    for (const [status, expected] of [['137', 137], ['eof', 137], ['0', 0]] as const) {
      const { id, b } = await bundle(true);
      const c = await create(id, b);
      assert.equal((await shimRun(['start', id])).code, 0);
      await exitWith(id, status);
      assert.equal((await c.reaped).get(c.pidFile), expected, `runsc wait said ${status}`);
    }
  });

  it('a failed start is reported to the caller with runsc\'s message; the waiter exits', async () => {
    const { id, b } = await bundle(true);
    const c = await create(id, b);
    await writeFile(join(dir, 'start-rc'), '2');
    try {
      const r = await shimRun(['start', id]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`fake start of ${id} failed`));
      assert.match(r.stderr, new RegExp(`runsc start ${id} failed \\(exit 2\\)`));
      assert.equal((await c.reaped).get(c.pidFile), 255);
    } finally {
      await rm(join(dir, 'start-rc'), { force: true });
    }
  });

  it('delete before start ends the waiter; start without a waiter fails at once', async () => {
    const { id, b } = await bundle(true);
    const c = await create(id, b);
    const d = await shimRun(['delete', '--force', id]);
    assert.equal(d.code, 0);
    assert.ok((await calls()).includes(`${globals().join(' ')} delete --force ${id}`));
    assert.equal((await c.reaped).get(c.pidFile), 137, 'the waiter was killed');
    const s = await shimRun(['start', id]);
    assert.equal(s.code, 1);
    assert.match(s.stderr, /waiter of sub-container .* is gone/);
  });

  it('a one-shot pod\'s container that is its sandbox is created with --network=none; any other create keeps the global flag', async () => {
    const g = [...globals(), '--network=host'];
    const spec = { ociVersion: '1.0.2', annotations: { [ROOT_APP_ANNOTATION]: 'true', 'io.kubernetes.cri.container-type': 'sandbox' } };
    assert.equal(shimKindOf(spec), 'root-app');
    const marked = join(dir, 'containers', 'root1');
    await mkdir(marked, { recursive: true });
    await writeFile(join(marked, 'config.json'), JSON.stringify(spec));
    await writeFile(join(marked, KIND_FILE), 'root-app\n');
    // a bundle of an older daemon: the mark in config.json alone
    const old = join(dir, 'containers', 'rootold');
    await mkdir(old, { recursive: true });
    await writeFile(join(old, 'config.json'), JSON.stringify(spec));
    const plain = (await bundle(false)).b;
    for (const [b, id] of [[marked, 'root1'], [old, 'rootold'], [plain, 'plain1']] as const) {
      const r = await run(shim, [...g, 'create', '--bundle', b, '--pid-file', join(b, 'pidfile'), id], { timeoutMs: 20_000, env: env() });
      assert.equal(r.code, 0, r.stderr);
    }
    const all = await calls();
    const root = join(dir, 'state');
    assert.ok(all.includes(`--root ${root} --platform=ptrace --network=none create --bundle ${marked} --pid-file ${join(marked, 'pidfile')} root1`), all.join('\n'));
    assert.ok(all.includes(`--root ${root} --platform=ptrace --network=none create --bundle ${old} --pid-file ${join(old, 'pidfile')} rootold`), all.join('\n'));
    assert.ok(all.includes(`--root ${root} --platform=ptrace --network=host create --bundle ${plain} --pid-file ${join(plain, 'pidfile')} plain1`), all.join('\n'));
    // the kind file is read by the shell itself: no grep (nor any other program found on PATH) runs
    const noPath = await run(shim, [...g, 'create', '--bundle', marked, '--pid-file', join(marked, 'pidfile'), 'root1'], { timeoutMs: 20_000, env: { FAKE_DIR: dir, PATH: join(dir, 'no-such-dir') } });
    assert.equal(noPath.code, 0, noPath.stderr);
    assert.equal((await calls()).at(-1), `--root ${root} --platform=ptrace --network=none create --bundle ${marked} --pid-file ${join(marked, 'pidfile')} root1`);
    // no global --network flag at all: one is added
    const r = await run(shim, [...globals(), 'create', '--bundle', marked, '--pid-file', join(marked, 'pidfile'), 'root1'], { timeoutMs: 20_000, env: env() });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await calls()).at(-1), `--network=none --root ${root} --platform=ptrace create --bundle ${marked} --pid-file ${join(marked, 'pidfile')} root1`);
  });
});
