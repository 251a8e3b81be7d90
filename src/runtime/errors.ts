/**
 * One classifier for failed OCI runtime (runc, runsc, crun, bulkhead-vm) and conmon runs: turns
 * their stderr into the typed errors of src/errors.ts, with an explanation where the runtime's
 * own message misleads.
 */
import {
  AlreadyExistsError, BulkheadError, FailedPreconditionError, InternalError, InvalidArgumentError,
  NotFoundError, PermissionDeniedError, ResourceExhaustedError,
} from '../errors.ts';

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

export function classifyRuntimeFailure(r: FailedRun): BulkheadError {
  const raw = `${r.stderr}\n${r.stdout ?? ''}`;
  const msg = runtimeMessage(raw) || `exit code ${r.code}`;
  const text = raw.toLowerCase();
  const say = (m: string): string => `${r.what}: ${m}`;
  if (/container .* does not exist|container does not exist|does not exist|no such container|container not found|not found/.test(text) && /container|sandbox/.test(text)) {
    return new NotFoundError(say(msg));
  }
  if (/already exists|container with id exists|id already in use/.test(text)) return new AlreadyExistsError(say(msg));
  if (/oom_score_adj|can't get final child's pid from pipe/.test(text)) {
    return new PermissionDeniedError(say(`${msg} — the runtime could not finish setting up the process; the usual cause here is an oom_score_adj (or rlimit) below what this host allows without CAP_SYS_RESOURCE. Request a value ≥ the daemon's own oom_score_adj`));
  }
  if (/container not running|process already finished|is not running|cannot exec in a stopped|not running|stopped container|container is stopped/.test(text)) {
    return new FailedPreconditionError(say(msg));
  }
  if (/cannot allocate memory|no space left|resource temporarily unavailable|too many/.test(text)) return new ResourceExhaustedError(say(msg));
  if (/permission denied|operation not permitted/.test(text)) return new PermissionDeniedError(say(msg));
  if (/executable file not found|no such file or directory|exec format error|invalid argument|unknown capability|invalid/.test(text)) {
    return new InvalidArgumentError(say(msg));
  }
  return new InternalError(say(msg));
}
