// The classifier of foreign runtimes' failures, as a table of real stderr lines: captured from
// runc 1.1 (Debian 12), runsc (ptrace) and crun 1.8.1 on this host with bad input (a missing or
// non-executable command, an unknown, duplicate or stopped container), and checked again live
// against runc and runsc where they run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { classifyRuntimeFailure } from './errors.ts';
import { run } from '../util/exec.ts';
import { writeBusyboxRootfs } from '../../harness/rootfs.ts';

type Row = [runtime: string, stderr: string, code: string, reason: string | undefined];

const TABLE: Row[] = [
  // a command that is not in the image: a typo in the pod spec, never "container not found"
  ['runc', '{"level":"error","msg":"runc create failed: unable to start container process: exec: \\"nosuchcmd\\": executable file not found in $PATH","time":"2026-12-06T06:19:34Z"}', 'InvalidArgument', 'BH_COMMAND_NOT_FOUND'],
  ['runc', 'time="2026-12-06T06:19:34Z" level=error msg="runc create failed: unable to start container process: exec: \\"/nope/x\\": stat /nope/x: no such file or directory"', 'InvalidArgument', 'BH_COMMAND_NOT_FOUND'],
  ['runc', 'time="2026-12-06T06:19:39Z" level=error msg="exec failed: unable to start container process: exec: \\"nosuchcmd\\": executable file not found in $PATH"', 'InvalidArgument', 'BH_COMMAND_NOT_FOUND'],
  ['runsc', 'starting container: starting root container: starting sandbox: error finding executable "nosuchcmd" in PATH [/usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin]: no such file or directory', 'InvalidArgument', 'BH_COMMAND_NOT_FOUND'],
  ['runsc', 'starting container: starting root container: starting sandbox: creating process: failed to load /nope/x: no such file or directory', 'InvalidArgument', 'BH_COMMAND_NOT_FOUND'],
  ['runsc', 'executing processes for container: executing command "nosuchcmd" in sandbox: error finding executable "nosuchcmd" in PATH [/usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin]: no such file or directory', 'InvalidArgument', 'BH_COMMAND_NOT_FOUND'],
  ['crun', 'executable file `nosuchcmd` not found in $PATH: No such file or directory', 'InvalidArgument', 'BH_COMMAND_NOT_FOUND'],
  // there, but not executable
  ['runc', 'time="2026-12-06T06:20:55Z" level=error msg="runc create failed: unable to start container process: exec: \\"/notexec\\": permission denied"', 'InvalidArgument', 'BH_COMMAND_NOT_EXECUTABLE'],
  ['runsc', 'starting container: starting root container: starting sandbox: creating process: failed to load /notexec: permission denied', 'InvalidArgument', 'BH_COMMAND_NOT_EXECUTABLE'],
  ['crun', 'open executable: Permission denied', 'InvalidArgument', 'BH_COMMAND_NOT_EXECUTABLE'],
  // unknown to the runtime
  ['runc', 'time="2026-12-06T06:19:34Z" level=error msg="container does not exist"', 'NotFound', 'BH_CONTAINER_NOT_FOUND'],
  ['runc', 'time="2026-12-06T06:19:34Z" level=error msg="exec failed: container does not exist"', 'NotFound', 'BH_CONTAINER_NOT_FOUND'],
  ['runsc', 'loading container: file does not exist', 'NotFound', 'BH_CONTAINER_NOT_FOUND'],
  ['runsc', 'loading container "nosuch": file does not exist', 'NotFound', 'BH_CONTAINER_NOT_FOUND'],
  ['runsc', 'loading sandbox: file does not exist', 'NotFound', 'BH_CONTAINER_NOT_FOUND'],
  ['crun', 'error opening file `/run/crun/nosuch/status`: No such file or directory', 'NotFound', 'BH_CONTAINER_NOT_FOUND'],
  ['crun', "cannot open directory '/run/crun/nosuch': No such file or directory", 'NotFound', 'BH_CONTAINER_NOT_FOUND'],
  ['bulkhead-vm', 'bulkhead-vm: container "c1" does not exist', 'NotFound', 'BH_CONTAINER_NOT_FOUND'],
  // duplicates
  ['runc', 'time="2026-12-06T06:19:39Z" level=error msg="runc create failed: container with given ID already exists"', 'AlreadyExists', undefined],
  ['runsc', 'creating container: cannot lock container metadata file: container already exists', 'AlreadyExists', undefined],
  ['crun', 'container `c1` already exists', 'AlreadyExists', undefined],
  // not running
  ['runc', 'time="2026-12-06T06:19:39Z" level=error msg="exec failed: cannot exec in a stopped container"', 'FailedPrecondition', 'BH_CONTAINER_NOT_RUNNING'],
  ['runc', 'time="2026-12-06T06:19:39Z" level=error msg="container not running"', 'FailedPrecondition', 'BH_CONTAINER_NOT_RUNNING'],
  ['runc', 'time="2026-12-06T06:19:39Z" level=error msg="cannot start a container that has stopped"', 'FailedPrecondition', 'BH_CONTAINER_NOT_RUNNING'],
  ['crun', 'the container `c1` is not running', 'FailedPrecondition', 'BH_CONTAINER_NOT_RUNNING'],
  // everything else keeps a class
  ['runc', 'time="2026-12-06T06:19:39Z" level=error msg="invalid container ID format"', 'InvalidArgument', undefined],
  ['runc', 'time="2026-12-06T06:19:39Z" level=error msg="runc create failed: chdir /nonexistent-bh: no such file or directory"', 'InvalidArgument', undefined],
  ['runc', 'runc create failed: unable to start container process: error during container init: write /proc/self/oom_score_adj: permission denied', 'PermissionDenied', undefined],
  ['crun', 'cgroups in hybrid mode not supported, drop all controllers from cgroupv2', 'Internal', undefined],
  // bulkhead-vm is Bulkhead's own: its JSON error line is taken as it is, not classified
  ['bulkhead-vm', '{"level":"error","msg":"container supervisor: exec nosuchcmd: executable file not found in $PATH","time":"2026-12-06T06:30:00Z","error":{"code":"InvalidArgument","reason":"BH_COMMAND_NOT_FOUND","message":"container supervisor: exec nosuchcmd: executable file not found in $PATH"}}', 'InvalidArgument', 'BH_COMMAND_NOT_FOUND'],
  ['bulkhead-vm', '{"level":"error","msg":"the container is not found in the VM","error":{"code":"Unavailable","reason":"BH_VM_GONE","message":"pod VM gone: killed"}}', 'Unavailable', 'BH_VM_GONE'],
];

test('runtime stderr → class and reason (real lines of runc, runsc, crun)', () => {
  for (const [runtime, stderr, code, reason] of TABLE) {
    const e = classifyRuntimeFailure({ what: `${runtime} create c1`, stderr, code: 1 });
    assert.equal(e.code, code, `${runtime}: ${stderr}\n→ ${e.code}: ${e.message}`);
    assert.equal(e.reason, reason, `${runtime}: ${stderr}`);
    assert.ok(e.message.startsWith(`${runtime} create c1: `), e.message);
  }
});

test('a missing command says what to fix (the pod spec\'s command/args or the image)', () => {
  const e = classifyRuntimeFailure({ what: 'runc create c1', stderr: TABLE[0]![1], code: 1 });
  assert.match(e.message, /exec: "nosuchcmd": executable file not found in \$PATH/);
  assert.match(e.message, /fix the command\/args of the pod spec/);
});

test('live: runc and runsc with bad input give the classes of the table', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-rterr-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const bundle = join(dir, 'bundle');
  await mkdir(bundle);
  await writeBusyboxRootfs(join(bundle, 'rootfs'));
  await writeFile(join(bundle, 'rootfs', 'notexec'), 'hi\n', { mode: 0o644 });
  assert.equal((await run('runc', ['spec', '--bundle', bundle], { timeoutMs: 10_000 })).code, 0);
  const config = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { process: { args: string[]; terminal: boolean } };
  config.process.terminal = false;
  const cases: [string[], string, string, string | undefined][] = [
    [['runc', '--root', join(dir, 'runc'), 'state', 'bh-nosuch'], 'runc state', 'NotFound', 'BH_CONTAINER_NOT_FOUND'],
    [['runc', '--root', join(dir, 'runc'), 'delete', 'bh-nosuch'], 'runc delete', 'NotFound', 'BH_CONTAINER_NOT_FOUND'],
    [['runsc', '--root', join(dir, 'runsc'), 'state', 'bh-nosuch'], 'runsc state', 'NotFound', 'BH_CONTAINER_NOT_FOUND'],
  ];
  for (const [argv, what, code, reason] of cases) {
    const r = await run(argv[0]!, argv.slice(1), { timeoutMs: 30_000 });
    assert.notEqual(r.code, 0, what);
    const e = classifyRuntimeFailure({ what, stderr: r.stderr, code: r.code });
    assert.deepEqual([e.code, e.reason], [code, reason], `${what}: ${r.stderr}`);
  }
  for (const [args, reason] of [[['nosuchcmd'], 'BH_COMMAND_NOT_FOUND'], [['/notexec'], 'BH_COMMAND_NOT_EXECUTABLE']] as const) {
    config.process.args = [...args];
    await writeFile(join(bundle, 'config.json'), JSON.stringify(config));
    const id = `bh-rterr-${process.pid}-${reason.length}`;
    const r = await run('runc', ['--root', join(dir, 'runc'), 'create', '--bundle', bundle, id], { timeoutMs: 30_000 });
    await run('runc', ['--root', join(dir, 'runc'), 'delete', '--force', id], { timeoutMs: 30_000 });
    assert.notEqual(r.code, 0, `runc create ${args[0]}`);
    const e = classifyRuntimeFailure({ what: 'runc create', stderr: r.stderr, code: r.code });
    assert.deepEqual([e.code, e.reason], ['InvalidArgument', reason], r.stderr);
  }
});
