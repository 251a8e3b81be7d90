// Entry point of the `bulkhead` command: global flags, command lookup, error → exit code.
import { parseArgs } from 'node:util';
import { loadCommand, loadCommands } from './commands.ts';
import { UsageError, type Command, type GlobalOptions } from './command.ts';
import { BulkheadError } from '../errors.ts';
import { defaultPaths } from '../daemon/paths.ts';
import { commandIndex, globalFlags } from './global-flags.ts';

function usage(commands: Command[]): string {
  const lines = commands.filter((c) => !c.internal).map((c) => `  ${c.name.padEnd(14)} ${c.summary}`);
  return [
    'Usage: bulkhead [--root DIR] [--socket PATH] [--json] COMMAND [ARGS]',
    '',
    'Run untrusted containers in sandboxes (runc, gVisor, microVM) through one CRI daemon.',
    '',
    'Commands:',
    ...lines,
    '',
    'Environment: BULKHEAD_ROOT, BULKHEAD_RUN_DIR, BULKHEAD_SOCKET, BULKHEAD_CONFIG.',
    "Run 'bulkhead COMMAND --help' for a command's flags.",
  ].join('\n');
}

/** Index of the first positional argument, skipping flags and the values of string flags. */
export function firstPositional(args: string[], options: Record<string, { type: 'string' | 'boolean'; short?: string }>): number {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return i + 1;
    if (!a.startsWith('-') || a === '-') return i;
    if (a.includes('=')) continue;
    const spec = a.startsWith('--')
      ? options[a.slice(2)]
      : Object.values(options).find((o) => o.short === a.slice(-1));
    if (spec?.type === 'string') i++;
  }
  return args.length;
}

/** Locations and switches for a command: flags first, then BULKHEAD_* variables, then the defaults. */
export function globalOptions(g: { root?: string; 'run-dir'?: string; socket?: string; config?: string; json?: boolean; debug?: boolean }, env: NodeJS.ProcessEnv): GlobalOptions {
  // --run-dir moves the default socket with it (as BULKHEAD_RUN_DIR does); --socket / BULKHEAD_SOCKET win
  const paths = defaultPaths(g['run-dir'] !== undefined ? { ...env, BULKHEAD_RUN_DIR: g['run-dir'] } : env);
  return {
    root: g.root ?? paths.root,
    runDir: paths.runDir,
    socket: g.socket ?? paths.socket,
    config: g.config ?? paths.config,
    json: Boolean(g.json),
    debug: Boolean(g.debug),
  };
}

type FlagOptions = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

/**
 * Joins a string flag and a value that starts with '-' (`--memory -5`, `-t -1`) into `--memory=-5`,
 * as docker reads them: Node's parser would refuse them as "ambiguous", in its own words, before
 * the command could say what is wrong with the value.
 */
export function joinDashValues(args: string[], options: FlagOptions): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') { out.push(...args.slice(i)); break; }
    const next = args[i + 1];
    const long = a.startsWith('--') && !a.includes('=') ? a.slice(2) : undefined;
    const name = long ?? (/^-[A-Za-z]$/.test(a) ? Object.entries(options).find(([, o]) => o.short === a[1])?.[0] : undefined);
    if (name !== undefined && options[name]?.type === 'string' && next !== undefined && next.startsWith('-') && next !== '--') {
      out.push(`--${name}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

/** Node's argument-parser errors in the CLI's words: what was wrong and where to look. */
export function usageOfParseError(err: unknown, command: string | undefined): UsageError | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (!(err instanceof TypeError) || !code?.startsWith('ERR_PARSE_ARGS')) return undefined;
  const quoted = /'([^']*)'/.exec(err.message)?.[1] ?? '';
  const words = quoted.split(' ').map((w) => w.replace(/,$/, ''));
  const flag = words.find((w) => w.startsWith('--')) ?? words.find((w) => w.startsWith('-')) ?? quoted;
  const help = command ? `see 'bulkhead ${command} --help'` : `see 'bulkhead --help'`;
  const where = command ? ` for 'bulkhead ${command}'` : ' (global flags come before the command)';
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return new UsageError(`unknown flag ${quoted}${where} (${help})`);
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return new UsageError(`unexpected argument "${quoted}"${where} (${help})`);
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    if (/does not take an argument/.test(err.message)) return new UsageError(`${flag} takes no value (${help})`);
    return new UsageError(`${flag} needs a value (${help})`);
  }
  return new UsageError(`${err.message.split('\n')[0]} (${help})`);
}

/** What main() may ask of the process it runs in (the entry point below; tests call main() without it). */
export interface MainHooks {
  /** Ends the process with `code` at once: a command with `exitWhenDone` has returned. */
  exitNow?: (code: number) => void;
}

export async function main(argv: string[], hooks: MainHooks = {}): Promise<number> {
  try {
    return await mainInner(argv, hooks);
  } catch (err) {
    const name = argv.find((a, i) => !a.startsWith('-') && (i === 0 || !/^--(root|run-dir|socket|config)$/.test(argv[i - 1]!)));
    throw usageOfParseError(err, name) ?? err;
  }
}

async function mainInner(argv: string[], hooks: MainHooks): Promise<number> {
  // Global flags come before the command name.
  const i = commandIndex(argv);
  let g: ReturnType<typeof parseArgs<{ args: string[]; options: typeof globalFlags; strict: true }>>['values'];
  try {
    g = parseArgs({ args: joinDashValues(argv.slice(0, i), globalFlags), options: globalFlags, strict: true }).values;
  } catch (err) {
    throw usageOfParseError(err, undefined) ?? err;
  }
  const name = argv[i];
  if (!name || name === 'help' || g.help) {
    const commands = await loadCommands();
    const target = name === 'help' ? commands.find((c) => c.name === argv[i + 1]) : undefined;
    process.stdout.write((target ? `Usage: ${target.synopsis}\n${target.summary}\n` : usage(commands)) + '\n');
    return name || g.help ? 0 : 2;
  }
  const cmd = await loadCommand(name);
  if (!cmd) {
    process.stderr.write(`bulkhead: unknown command "${name}"\n\n${usage(await loadCommands())}\n`);
    return 2;
  }
  const rest = argv.slice(i + 1);
  const options = { ...cmd.flags, json: { type: 'boolean' as const } };
  // Commands that run a workload stop parsing at the first positional (IMAGE or CONTAINER), so the
  // workload's own flags (`run busybox ls -la`) pass through untouched.
  const cut = cmd.stopAtFirstPositional ? firstPositional(rest, options) : rest.length;
  // flags of bulkhead's own end at `--` (`profile learn IMAGE -- httpd -h /www` asks no help)
  const own = rest.slice(0, cut).slice(0, rest.includes('--') ? rest.indexOf('--') : undefined);
  if (own.includes('--help') || (own.includes('-h') && !('h' in Object.fromEntries(Object.values(cmd.flags).map((o) => [o.short, 1]))))) {
    process.stdout.write(`Usage: ${cmd.synopsis}\n${cmd.summary}\n`);
    return 0;
  }
  const parsed = parseArgs({ args: joinDashValues(rest.slice(0, cut), options), allowPositionals: !cmd.stopAtFirstPositional, options, strict: true });
  const flags = parsed.values as Record<string, string | boolean | (string | boolean)[] | undefined>;
  const args = cmd.stopAtFirstPositional ? rest.slice(cut) : parsed.positionals;
  const global = globalOptions({ ...g, json: Boolean(g.json || flags.json) }, process.env);
  const ac = new AbortController();
  const onSignal = (): void => ac.abort();
  // a reader that went away (`bulkhead run ... | head`): the command is cut short as by a signal,
  // so that it still undoes what it made (a --rm run's pod), instead of dying of an unhandled EPIPE
  const onOutputError = (err: NodeJS.ErrnoException): void => {
    if (err.code === 'EPIPE') ac.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.stdout.on('error', onOutputError);
  process.stderr.on('error', onOutputError);
  let code: number;
  try {
    code = await cmd.run({ global, flags, args, stdout: process.stdout, stderr: process.stderr, signal: ac.signal });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.stdout.off('error', onOutputError);
    process.stderr.off('error', onOutputError);
  }
  if (cmd.exitWhenDone) hooks.exitNow?.(code);
  return code;
}

/**
 * The process's run of main(): exit code and error reports as docker's (entry.ts calls it, from the
 * sources or from the bundle; `node main.ts ...` still works).
 */
export function runMain(argv: string[]): void {
  // what the command wrote is handed to the OS first: a write to a pipe whose reader is slower
  // than the command is still queued when it returns (process.exit() then cut a 1 MiB output)
  const exitNow = (code: number): void => {
    process.exitCode = code;
    process.stdout.write('', () => process.stderr.write('', () => process.exit()));
  };
  main(argv, { exitNow }).then(
    (code) => { process.exitCode = code; },
    (err: unknown) => {
      if (err instanceof UsageError) {
        process.stderr.write(`bulkhead: ${err.message}\n`);
        process.exitCode = 2;
      } else if (err instanceof BulkheadError) {
        process.stderr.write(`bulkhead: ${err.message}\n`);
        // docker's codes: 127 the command is not in the image, 126 it cannot run, 125 anything else
        process.exitCode = err.reason === 'BH_COMMAND_NOT_FOUND' ? 127 : err.reason === 'BH_COMMAND_NOT_EXECUTABLE' ? 126 : 125;
      } else if (err instanceof TypeError && (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
        process.stderr.write(`bulkhead: ${err.message}\n`);
        process.exitCode = 2;
      } else {
        process.stderr.write(`bulkhead: unexpected error: ${err instanceof Error ? err.stack : String(err)}\n`);
        process.exitCode = 125;
      }
    },
  );
}

if (import.meta.main) runMain(process.argv.slice(2));
