/**
 * bulkhead-vm's flag grammar is runc's (Go's flag package, through urfave/cli), because conmon,
 * podman and containerd call it as they call runc: `-flag` and `--flag` alike, `--flag=value` or
 * `--flag value` for a string flag, a repeated flag collects (`multiple`) or the last one wins, and
 * a flag the command does not know is taken as a boolean and ignored, never refused: callers pass
 * runc flags this runtime has no use for (`--systemd-cgroup`, `--no-new-keyring`, ...).
 */
import { UsageError, type FlagSpec, type FlagValues } from '../../util/command.ts';

/** Flags and positionals of argv; after `stopAfterPositionals` positionals the rest is positional. */
export function parseRuntimeFlags(argv: readonly string[], spec: FlagSpec, stopAfterPositionals = Infinity): { flags: FlagValues; args: string[] } {
  const byShort = new Map<string, string>();
  for (const [name, o] of Object.entries(spec)) if (o.short) byShort.set(o.short, name);
  const flags: FlagValues = {};
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (args.length >= stopAfterPositionals) { args.push(...argv.slice(i)); break; }
    if (a === '--') { args.push(...argv.slice(i + 1)); break; }
    if (!a.startsWith('-') || a === '-') { args.push(a); continue; }
    const body = a.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const given = eq >= 0 ? body.slice(0, eq) : body;
    const name = spec[given] ? given : byShort.get(given) ?? given;
    const o = spec[name];
    let v: string | boolean;
    if (eq >= 0) v = o?.type === 'boolean' ? body.slice(eq + 1) !== 'false' : body.slice(eq + 1);
    else if (o?.type === 'string') {
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`);
      v = argv[++i]!;
    } else v = true;
    const prev = flags[name];
    flags[name] = o?.multiple ? [...(Array.isArray(prev) ? prev : prev === undefined ? [] : [prev]), v] : v;
  }
  return { flags, args };
}

/** A string flag's value (the last one given). */
export function str(flags: FlagValues, name: string): string | undefined {
  const v = flags[name];
  const last = Array.isArray(v) ? v[v.length - 1] : v;
  return typeof last === 'string' ? last : undefined;
}

/** Every value of a repeatable string flag, in order. */
export function list(flags: FlagValues, name: string): string[] {
  const v = flags[name];
  return (Array.isArray(v) ? v : [v]).filter((x): x is string => typeof x === 'string');
}

export function bool(flags: FlagValues, name: string): boolean {
  return flags[name] === true;
}
