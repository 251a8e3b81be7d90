// bulkhead-vm's command line without booting a VM: runc's flag grammar, help and usage, the
// commands in one file each, `update` refused up front, and failures as {code, reason, message}.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseRuntimeFlags, list, str, bool } from './flags.ts';
import { loadVmCommands } from './commands.ts';
import { classifyRuntimeFailure } from '../../runtime/errors.ts';
import { errorReason } from '../../errors.ts';
import { UsageError } from '../../util/command.ts';

const BIN = join(import.meta.dirname, '..', '..', '..', 'bin', 'bulkhead-vm');

function vm(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-vmcli-'));
  try {
    const r = spawnSync(BIN, ['--root', join(dir, 'state'), '--assets', join(dir, 'assets'), ...args], { encoding: 'utf8', timeout: 30_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('runc\'s flag grammar: -flag and --flag, =value or the next word, shorts, repeats, unknown flags tolerated', () => {
  const spec = { bundle: { type: 'string', short: 'b' }, env: { type: 'string', short: 'e', multiple: true }, force: { type: 'boolean', short: 'f' }, 'pid-file': { type: 'string' } } as const;
  const table: [string[], Record<string, unknown>, string[], number?][] = [
    [['--bundle', '/b', 'id1'], { bundle: '/b' }, ['id1']],
    [['-bundle=/b', 'id1'], { bundle: '/b' }, ['id1']],
    [['-b', '/b', '--pid-file=/p', 'id1'], { bundle: '/b', 'pid-file': '/p' }, ['id1']],
    [['-e', 'A=1', '--env', 'B=2', '-e=C=3', 'id1'], { env: ['A=1', 'B=2', 'C=3'] }, ['id1']],
    [['--bundle', '/x', '--bundle', '/y', 'id1'], { bundle: '/y' }, ['id1']],
    [['-f', 'id1'], { force: true }, ['id1']],
    [['--force=false', 'id1'], { force: false }, ['id1']],
    [['--systemd-cgroup', '--no-new-keyring', 'id1'], { 'systemd-cgroup': true, 'no-new-keyring': true }, ['id1']],
    [['--unknown=v', 'id1'], { unknown: 'v' }, ['id1']],
    [['--', '-f', 'id1'], {}, ['-f', 'id1']],
    [['-f', 'id1', 'sh', '-c', '--force'], { force: true }, ['id1', 'sh', '-c', '--force'], 1],
  ];
  for (const [argv, flags, args, stop] of table) {
    const r = parseRuntimeFlags(argv, spec, stop);
    assert.deepEqual(r, { flags, args }, argv.join(' '));
  }
  assert.throws(() => parseRuntimeFlags(['--bundle'], spec), (e: unknown) => e instanceof UsageError && /--bundle needs a value/.test(e.message));
  const f = parseRuntimeFlags(['-e', 'A=1', '-e', 'B=2', '--bundle', '/b', '-f'], spec).flags;
  assert.deepEqual([str(f, 'bundle'), list(f, 'env'), bool(f, 'force'), str(f, 'nothing'), list(f, 'nothing')], ['/b', ['A=1', 'B=2'], true, undefined, []]);
});

test('every command is one file with a name, synopsis and summary; internal ones are hidden', async () => {
  const commands = await loadVmCommands();
  const names = commands.map((c) => c.name);
  for (const n of ['create', 'start', 'state', 'kill', 'delete', 'exec', 'stats', 'update', 'features', 'setup', 'version', '_vmd']) assert.ok(names.includes(n), n);
  for (const c of commands) {
    assert.match(c.synopsis, new RegExp(`^bulkhead-vm (\\[--assets ROOT\\] )?${c.name}\\b`), c.name);
    assert.ok(c.summary.length > 10, c.name);
    assert.equal(c.internal === true, c.name.startsWith('_'), c.name);
  }
  const help = vm(['help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^ {2}create /m);
  assert.doesNotMatch(help.stdout, /_vmd|_shim/);
  const bare = vm([]);
  assert.equal(bare.code, 2, 'no command: usage on stderr');
  assert.match(bare.stderr, /^Usage: bulkhead-vm /);
  assert.equal(vm(['frobnicate']).code, 2);
  assert.match(vm(['frobnicate']).stderr, /unknown command "frobnicate"; see 'bulkhead-vm help'/);
  assert.equal(vm(['--version']).stdout, 'bulkhead-vm version 0.1.0\nspec: 1.0.2\n');
  assert.equal(vm(['version']).stdout, 'bulkhead-vm version 0.1.0\nspec: 1.0.2\n');
  const kill = vm(['kill', '--help']);
  assert.deepEqual([kill.code, kill.stdout.split('\n')[0]], [0, 'Usage: bulkhead-vm kill [--all] ID [SIGNAL]']);
  assert.equal(vm(['create', '--bundle']).code, 2, 'a value flag without its value is a usage error');
  assert.equal(JSON.parse(vm(['features']).stdout).annotations['io.bulkhead.vm.isolation'], 'vm');
});

test('update says it is not supported up front: in help, in its usage, and in its error with what to do', () => {
  const help = vm(['help']);
  assert.match(help.stdout, /^ {2}update +Change a container's resources — not supported: a microVM's memory and vCPUs are fixed when its pod VM boots/m);
  const usage = vm(['update', '--help']);
  assert.equal(usage.code, 0);
  assert.match(usage.stdout, /^Usage: bulkhead-vm update \[--resources FILE\] ID +\(not supported\)\n/);
  const r = vm(['update', '--resources', '/dev/null', 'c1']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^bulkhead-vm: update: not supported: .*; to change them, recreate the pod with the new limits/);
  // as the daemon runs it (conmon → runtime/errors.ts): UNIMPLEMENTED, not a guess from the text
  const j = vm(['--log-format', 'json', 'update', '-r', '/dev/null', 'c1']);
  assert.equal(j.code, 1);
  const e = classifyRuntimeFailure({ what: 'bulkhead-vm update c1', stderr: j.stderr, code: j.code });
  assert.equal(e.code, 'Unimplemented', j.stderr);
  assert.match(e.message, /recreate the pod with the new limits/);
});

test('a failure carries its class and reason to the caller (--log-format json), and reads as one line without it', () => {
  const plain = vm(['state', 'no-such-ctr']);
  assert.equal(plain.code, 1);
  assert.equal(plain.stderr, 'bulkhead-vm: container "no-such-ctr" does not exist\n');
  const j = vm(['--log-format', 'json', 'delete', 'no-such-ctr']);
  assert.equal(j.code, 1);
  const line = JSON.parse(j.stderr) as { level: string; msg: string; error: { code: string; reason: string } };
  assert.deepEqual([line.level, line.error.code, line.error.reason], ['error', 'NotFound', 'BH_CONTAINER_NOT_FOUND']);
  const e = classifyRuntimeFailure({ what: 'bulkhead-vm delete', stderr: j.stderr, code: j.code });
  assert.deepEqual([e.code, e.reason], ['NotFound', 'BH_CONTAINER_NOT_FOUND']);
  assert.equal(vm(['delete', '--force', 'no-such-ctr']).code, 0, 'delete --force of nothing succeeds');
  assert.match(vm(['--accel', 'warp', 'state', 'x']).stderr, /--accel must be auto, kvm or tcg/);
});

// bin/bulkhead-vm's sh front (cmd/create.ts writeFront): a create the daemon prepared starts the
// supervisor named in <root>/<id>/front without Node.js (NODE_OPTIONS requiring a missing module
// makes any Node.js start fail here), in its own session, with the ready line's pid in --pid-file;
// a supervisor's error line becomes the JSON error classifyRuntimeFailure reads; anything it does
// not know goes to Node.js.
test('create of a prepared container: the sh front starts its supervisor, writes the pid file, carries its error', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-vmfront-'));
  try {
    const root = join(dir, 'state');
    const id = 'front-test';
    mkdirSync(join(root, id), { recursive: true });
    const sup = join(dir, 'sup.sh');
    // a stand-in supervisor: its ready line on fd 3 (from its arguments), then it lives on in its own session
    writeFileSync(sup, '#!/bin/sh\ncase $1 in ok) echo "ok $$" >&3 ;; *) echo "error $2" >&3 ;; esac\nexec 3>&-\n[ "$(cat /proc/self/stat | cut -d" " -f6)" = "$$" ] && touch "$PWD/own-session"\nsleep 0.2\n', { mode: 0o755 });
    const pidFile = join(dir, 'pid');
    const create = (extra: string[] = []): ReturnType<typeof spawnSync> => spawnSync(BIN, ['--root', root, '--log-format', 'json', 'create', '--bundle', dir, '--pid-file', pidFile, ...extra, id], {
      encoding: 'utf8', timeout: 30_000, env: { ...process.env, NODE_OPTIONS: '--require=/nonexistent/bulkhead-test-no-node.cjs' },
    });
    writeFileSync(join(root, id, 'front'), `${dir}\n${sup}\nok\n`);
    let r = create();
    assert.equal(r.status, 0, String(r.stderr));
    const pid = Number(readFileSync(pidFile, 'utf8'));
    assert.ok(pid > 1, 'the pid file holds the supervisor\'s pid');
    for (let i = 0; i < 50 && !existsSync(join(dir, 'own-session')); i++) await new Promise((res) => setTimeout(res, 20));
    assert.ok(existsSync(join(dir, 'own-session')), 'the supervisor leads its own session, started in the front\'s working directory');
    rmSync(pidFile);
    writeFileSync(join(root, id, 'front'), `${dir}\n${sup}\nerror\n{"code":"Unavailable","reason":"BH_VM_GONE","message":"the pod VM went away"}\n`);
    r = create();
    assert.equal(r.status, 1);
    assert.ok(!existsSync(pidFile), 'no pid file for a failed create');
    const e = classifyRuntimeFailure({ what: 'bulkhead-vm create', stderr: String(r.stderr), code: r.status });
    assert.equal(e.code, 'Unavailable');
    assert.equal(errorReason(e), 'BH_VM_GONE');
    assert.match(e.message, /the pod VM went away/);
    // a create flag the front does not know: Node.js (here: refused by NODE_OPTIONS)
    r = create(['--console-socket', join(dir, 'cs')]);
    assert.notEqual(r.status, 0);
    assert.match(String(r.stderr), /bulkhead-test-no-node/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('start and kill end when the pod VM supervisor never answers (a guest that hangs): bounded by the boot timeout, which the error names', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-vmcli-'));
  const root = join(dir, 'state');
  const pod = join(dir, 'pod');
  mkdirSync(join(root, 'c1'), { recursive: true });
  mkdirSync(pod);
  // a supervisor that takes every request and answers none (as one whose guest agent is stuck)
  const server = createServer((c) => { c.on('data', () => {}); c.on('error', () => {}); });
  await new Promise<void>((r) => server.listen(join(pod, 'vmd.sock'), r));
  try {
    // a created container (its supervisor "alive": this process) of that pod
    writeFileSync(join(root, 'c1', 'state.json'), JSON.stringify({ id: 'c1', bundle: dir, podId: 'p1', podDir: pod, sandbox: false, pid: process.pid, annotations: {}, created: new Date().toISOString() }));
    for (const cmd of [['start', 'c1'], ['kill', 'c1', 'KILL']]) {
      const r = await new Promise<{ code: number | null; stderr: string }>((res) => {
        execFile(BIN, ['--root', root, '--assets', join(dir, 'assets'), '--boot-timeout', '300', ...cmd], { encoding: 'utf8', timeout: 60_000 }, (e, _out, stderr) => res({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, stderr }));
      });
      assert.equal(r.code, 1, `${cmd[0]}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^bulkhead-vm: ${cmd[0]} of container "c1": the pod VM supervisor did not answer "${cmd[0]}" within 300 ms \\(a guest step is bounded by the boot timeout: --boot-timeout or BULKHEAD_VM_BOOT_TIMEOUT_MS\\)\\n$`));
    }
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
