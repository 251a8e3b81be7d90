import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AGENT_RULES, agentError } from './agent-errors.ts';
import { GUEST_SOURCE_DIR } from './assets.ts';

test('the guest agent\'s failure texts → class and reason', () => {
  const table: [string, string, string | undefined][] = [
    ['exec nosuchcmd: executable file not found in $PATH', 'InvalidArgument', 'BH_COMMAND_NOT_FOUND'],
    ['exec /etc/passwd: Permission denied', 'InvalidArgument', 'BH_COMMAND_NOT_EXECUTABLE'],
    ['exec /bin: Permission denied', 'InvalidArgument', 'BH_COMMAND_NOT_EXECUTABLE'],
    ['chdir /nope: No such file or directory', 'InvalidArgument', undefined],
    ['start: unknown container', 'NotFound', 'BH_CONTAINER_NOT_FOUND'],
    ['kill: unknown session', 'NotFound', 'BH_CONTAINER_NOT_FOUND'],
    ['exec: container 3 is not running', 'FailedPrecondition', 'BH_CONTAINER_NOT_RUNNING'],
    ['kill: process is not running', 'FailedPrecondition', 'BH_CONTAINER_NOT_RUNNING'],
    ['start: already started', 'FailedPrecondition', undefined],
    ['start: the process did not reach its exec within 45000 ms (a step before it blocked or was stopped): killed', 'DeadlineExceeded', undefined],
    ['start: the container was deleted before its process reached its exec', 'Aborted', undefined],
    ['too many sessions', 'ResourceExhausted', undefined],
    ['setuid 1000: Operation not permitted', 'PermissionDenied', undefined],
    ['mount overlay: Invalid argument', 'Internal', undefined],
    ['join the pid namespace of container 3: it is not running', 'FailedPrecondition', 'BH_CONTAINER_NOT_RUNNING'],
    ['join the ipc namespace of container 3: Invalid argument', 'Internal', undefined],
    ['volume /data: the destination is a file, the volume a directory', 'InvalidArgument', undefined],
    ['volume /data: etc: the path crosses a symlink or a non-directory in the image', 'InvalidArgument', undefined],
    ["volume /data: not in the pod's share (3/0): No such file or directory", 'Internal', undefined],
    ['volume: entry too long', 'Internal', undefined],
    ['sysctl kernel.nope=1 in the guest: No such file or directory', 'InvalidArgument', undefined],
    ['sysctl a..b: bad name', 'InvalidArgument', undefined],
    ['identity: eth0 address: File exists', 'Internal', undefined],
    ['copy: write ..2026/app.conf: No space left on device', 'ResourceExhausted', undefined],
    ['copy: bad dir or path', 'Internal', undefined],
    ['something new', 'Internal', undefined],
  ];
  for (const [text, code, reason] of table) {
    const e = agentError('start', text);
    assert.deepEqual([e.code, e.reason], [code, reason], text);
    assert.ok(e.message.startsWith(text), e.message);
  }
  assert.match(agentError('create', 'exec nosuchcmd: executable file not found in $PATH').message, /fix the command\/args of the pod spec/);
  assert.match(agentError('create', '').message, /create failed \(the guest agent gave no reason\)/);
});

test('every failure text guest/agent.c can send meets a rule written for it', () => {
  const src = readFileSync(join(GUEST_SOURCE_DIR, 'agent.c'), 'utf8');
  const formats = [...src.matchAll(/(?:reply_err\([^,]+|child_fail\(errpipe), "((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
  assert.ok(formats.length > 50, `found ${formats.length} format strings`);
  const sample = (f: string): string => f.replace(/\\"/g, '"').replace(/%0?2x/g, '0a').replace(/%z?[ud]/g, '7').replace(/%s: %s$/, 'x: No such file or directory').replace(/%s/g, 'x');
  for (const f of formats) {
    if (f === '%s') continue; // the child's own report, relayed: its formats are in this list too
    // child_exec prefixes the exec failure with "exec " (agent.c writes it before child_fail)
    const text = f.startsWith('%s: ') ? `exec ${sample(f)}` : sample(f);
    assert.ok(AGENT_RULES.some((r) => r.match.test(text)), `no rule for agent.c's "${f}" (as "${text}")`);
  }
});
