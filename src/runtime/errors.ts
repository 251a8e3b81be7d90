/**
 * The one classifier of foreign programs' failures: a failed OCI runtime (runc, runsc, crun) or
 * conmon run becomes a typed error of src/errors.ts — its class and, where a caller branches on
 * it, a stable reason — from its stderr, with an explanation where the runtime's own message
 * misleads. Bulkhead's own processes are not classified: bulkhead-vm (an OCI runtime to conmon)
 * writes its error with --log-format json as a log line carrying `error: {code, reason, message}`,
 * which is taken as it is (ownError).
 *
 * The rules are tried in order; the first whose pattern matches wins. Their patterns are the texts
 * the runtimes really print (errors.test.ts holds lines captured from runc 1.1, runsc and crun 1.8).
 */
import { BulkheadError, fromWire, type ErrorCode, type ErrorReason } from '../errors.ts';

export interface FailedRun {
  /** What was attempted, e.g. "runc create c1". */
  what: string;
  stderr: string;
  stdout?: string;
  code: number | null;
}

/** Last meaningful line(s) of runtime output: runc's JSON log lines are reduced to their msg. */
export function runtimeMessage(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
    if (l.startsWith('{')) {
      try {
        const j = JSON.parse(l) as { msg?: unknown; level?: unknown };
        if (typeof j.msg === 'string') return j.msg;
      } catch { /* plain */ }
    }
    return l;
  });
  return lines.slice(-3).join('; ').slice(0, 2000);
}

interface Rule {
  /** Tested against the lower-cased stderr + stdout. */
  match: RegExp;
  code: ErrorCode;
  reason?: ErrorReason;
  /** Appended to the runtime's message: what it means here and what to do. */
  hint?: string;
}

const COMMAND_HINT = 'the command is not in the container\'s image: fix the command/args of the pod spec (or the image\'s entrypoint), or use an image that has it';

const RULES: readonly Rule[] = [
  // The process's command is missing from the image. runc says "unable to start container process:
  // exec: "x": executable file not found in $PATH" (or "stat /x: no such file or directory" for a
  // path; runc's text log quotes with \"), runsc "error finding executable "x" in PATH [...]" / "failed to load /x: no such file",
  // crun "executable file `x` not found in $PATH". A typo in the request: never NotFound, which
  // would read as "the container is gone".
  { match: /executable file .{0,300}not found in \$path|error finding executable|exec: \\?".{0,300}\\?": stat .{0,300}: no such file or directory|failed to load .{0,300}: no such file or directory/, code: 'InvalidArgument', reason: 'BH_COMMAND_NOT_FOUND', hint: COMMAND_HINT },
  // It exists but cannot run: not executable, a directory, not a binary for this machine.
  { match: /exec: \\?".{0,300}\\?": (permission denied|exec format error|is a directory)|failed to load .{0,300}: (permission denied|exec format error)|open executable: permission denied/, code: 'InvalidArgument', reason: 'BH_COMMAND_NOT_EXECUTABLE', hint: 'the command exists in the image but cannot be executed (not executable, a directory, or built for another machine): fix the image or the command of the pod spec' },
  // Unknown to the runtime: runc "container does not exist", runsc "loading container: file does
  // not exist", crun "error opening file `.../status`: No such file or directory" (state) and
  // "cannot open directory '<root>/<id>': No such file or directory" (delete).
  { match: /container does not exist|container .{0,80} does not exist|loading (container|sandbox).{0,80}: file does not exist|no such container|container not found|error opening file `[^`]{0,300}\/status`|cannot open directory '[^']{0,300}': no such file or directory/, code: 'NotFound', reason: 'BH_CONTAINER_NOT_FOUND' },
  { match: /already exists|container with id exists|id already in use/, code: 'AlreadyExists' },
  { match: /oom_score_adj|can't get final child's pid from pipe/, code: 'PermissionDenied', hint: 'the runtime could not finish setting up the process; the usual cause here is an oom_score_adj (or rlimit) below what this host allows without CAP_SYS_RESOURCE. Request a value ≥ the daemon\'s own oom_score_adj' },
  // runc "container not running", "cannot exec in a stopped container", "cannot start a container
  // that has stopped"; crun "the container `x` is not running".
  { match: /container not running|process already finished|is not running|cannot exec in a stopped|stopped container|container is stopped|that has stopped/, code: 'FailedPrecondition', reason: 'BH_CONTAINER_NOT_RUNNING' },
  { match: /cannot allocate memory|no space left|resource temporarily unavailable|too many/, code: 'ResourceExhausted' },
  { match: /permission denied|operation not permitted/, code: 'PermissionDenied' },
  { match: /no such file or directory|exec format error|invalid argument|unknown capability|invalid/, code: 'InvalidArgument' },
];

/** The last JSON log line with an `error` object (bulkhead-vm's own, see vm/cli.ts logError). */
function ownError(raw: string): unknown {
  let found: unknown;
  for (const l of raw.split('\n')) {
    const t = l.trim();
    if (!t.startsWith('{') || !t.includes('"error"')) continue;
    try {
      const j = JSON.parse(t) as { error?: unknown };
      if (typeof j.error === 'object' && j.error !== null) found = j.error;
    } catch { /* not ours */ }
  }
  return found;
}

export function classifyRuntimeFailure(r: FailedRun): BulkheadError {
  const raw = `${r.stderr}\n${r.stdout ?? ''}`;
  const own = ownError(raw);
  if (own !== undefined) {
    const e = fromWire(own, `exit code ${r.code}`);
    return new BulkheadError(e.code, `${r.what}: ${e.message}`, e.reason ? { reason: e.reason } : undefined);
  }
  const msg = runtimeMessage(raw) || `exit code ${r.code}`;
  const text = raw.toLowerCase();
  const rule = RULES.find((x) => x.match.test(text));
  const message = `${r.what}: ${msg}${rule?.hint ? ` — ${rule.hint}` : ''}`;
  return new BulkheadError(rule?.code ?? 'Internal', message, rule?.reason ? { reason: rule.reason } : undefined);
}
