/**
 * The guest agent (guest/agent.c) answers a failed request with an `F` frame holding one line of
 * text, and it is compiled into the guest's initramfs: changing its protocol means rebuilding every
 * node's guest assets. So its messages — a fixed set, every format string of agent.c — are mapped to
 * a class and reason here, once, where the supervisor receives them (vmd.ts); from there on the
 * error travels as {code, reason, message}. agent-errors.test.ts checks that every format string
 * in agent.c meets a rule written for it, so a new message in the agent needs a decision here.
 */
import type { ErrorCode, ErrorReason, WireError } from '../errors.ts';

interface AgentRule {
  match: RegExp;
  code: ErrorCode;
  reason?: ErrorReason;
  hint?: string;
}

/** First match wins; tested against the agent's text as it is (strerror texts are capitalised). */
export const AGENT_RULES: readonly AgentRule[] = [
  // child_exec: "exec <argv0>: executable file not found in $PATH" / "exec <argv0>: <strerror>"
  { match: /^exec .*: executable file not found in \$PATH$|^exec .*: No such file or directory$/, code: 'InvalidArgument', reason: 'BH_COMMAND_NOT_FOUND', hint: 'the command is not in the container\'s image: fix the command/args of the pod spec (or the image\'s entrypoint), or use an image that has it' },
  { match: /^exec .*: (Permission denied|Exec format error|Is a directory|Not a directory)$/, code: 'InvalidArgument', reason: 'BH_COMMAND_NOT_EXECUTABLE', hint: 'the command exists in the image but cannot be executed: fix the image or the command of the pod spec' },
  { match: /^chdir .*: (No such file or directory|Not a directory)$/, code: 'InvalidArgument', hint: 'the working directory is not in the image: fix workingDir of the pod spec' },
  { match: /^(create|exec): no process args$/, code: 'InvalidArgument' },
  { match: /^(exec|start|delete): unknown container$|^kill: unknown session$/, code: 'NotFound', reason: 'BH_CONTAINER_NOT_FOUND' },
  { match: /^exec: container \d+ is not running$|^kill: process is not running$/, code: 'FailedPrecondition', reason: 'BH_CONTAINER_NOT_RUNNING' },
  { match: /^start: already started$/, code: 'FailedPrecondition' },
  // a step of the process's start before its exec blocked or was stopped (another process of the container can stop it)
  { match: /^start: the process did not reach its exec within \d+ ms /, code: 'DeadlineExceeded', hint: 'the guest agent killed it; its wait is 3/4 of the VM boot timeout (--boot-timeout / BULKHEAD_VM_BOOT_TIMEOUT_MS)' },
  { match: /^start: the container was deleted before its process reached its exec$/, code: 'Aborted' },
  { match: /^too many sessions$/, code: 'ResourceExhausted' },
  { match: /^(setuid|setgid|setgroups|capset|drop capability|raise ambient capability|clear ambient capabilities|keepcaps|no_new_privs)(?=[\s:]|$)/, code: 'PermissionDenied' },
  // PID TARGET / shared namespaces: the container to join has ended
  { match: /^join the \w+ namespace of container \S+: it is not running$/, code: 'FailedPrecondition', reason: 'BH_CONTAINER_NOT_RUNNING', hint: 'the namespace target container must be running' },
  // volumes: what the pod spec can fix (its mount destination in the image), then the host's own
  { match: /^volume .*: the destination is a (file|directory), the volume a (file|directory)$|^volume .*: the path crosses a symlink or a non-directory in the image$/, code: 'InvalidArgument', hint: 'fix the mount\'s containerPath in the pod spec (or the image)' },
  { match: /^volume(:| \S+:) /, code: 'Internal' },
  // copied volumes (Y): the guest's tmpfs for them full, or the host's own mistake
  { match: /^copy: (write|rename|mkdir|symlink) .*: No space left on device$/, code: 'ResourceExhausted', hint: 'the copied volumes outgrew their guest tmpfs' },
  { match: /^copy: /, code: 'Internal' },
  // pod sysctls in the guest: a bad name, or one the guest kernel does not have
  { match: /^sysctl \S+: (bad name|malformed)$|^sysctl \S+ in the guest: /, code: 'InvalidArgument', hint: 'fix or remove the sysctl in the pod spec (the microVM guest kernel must have it)' },
  // The host's own mistakes or the guest's trouble: nothing a request can fix.
  { match: /^session \d+ exists$|^create: bad or missing slot$|^create: no block device with serial |^(mount|bind root|mount tmpfs|mount overlay|unshare|make \/ private|mount \/proc|mount \/sys|mount \/dev|mask|read-only|sethostname|chdir root|pivot_root|detach old root|identity|chdir \/|join cgroup|enter .* namespace|join the \w+ namespace of container|dup2|seccomp|open pty|open pty slave|pipe|fork|kill|protocol violation)(?=[\s:]|$)/, code: 'Internal' },
];

/** The agent's failure text for request `op` as an error to send on. */
export function agentError(op: string, text: string): WireError {
  const line = text.trim().slice(0, 2000) || `${op} failed (the guest agent gave no reason)`;
  const rule = AGENT_RULES.find((r) => r.match.test(line));
  return {
    code: rule?.code ?? 'Internal',
    ...(rule?.reason ? { reason: rule.reason } : {}),
    message: rule?.hint ? `${line} — ${rule.hint}` : line,
  };
}
