/**
 * `bulkhead-vm`: an OCI-runtime-compatible command that runs each pod in its own microVM, so
 * conmon and podman drive it like runc:
 *   bulkhead-vm [--root DIR] [--log FILE] [--log-format text|json] [--assets DIR] [--accel auto|kvm|tcg] COMMAND ...
 * Each command is one file in cmd/ (the shape of src/util/command.ts, registered in
 * cmd/commands.ts); flags follow runc's grammar (cmd/flags.ts). `bulkhead-vm help` lists them.
 * Internal: `_vmd` (the pod VM supervisor); a container's supervisor is the C shim (shim.ts).
 * Exit codes: 0 ok, 1 failure (message on stderr and in --log; with --log-format json a JSON line
 * carrying {code, reason, message}), 2 usage. `exec` without --detach exits with the process's
 * exit code.
 */
import { appendFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { BulkheadError, toWire } from '../errors.ts';
import { UsageError } from '../util/command.ts';
import { DEFAULT_ROOT, rootFromIndex } from './state.ts';
import { loadVmCommand, loadVmCommands } from './cmd/commands.ts';
import type { VmCommand } from './cmd/common.ts';
import { bool, parseRuntimeFlags } from './cmd/flags.ts';
import { checkGlobal, GLOBAL_FLAGS, globalOptions, type VmGlobal } from './cmd/global.ts';
import { VERSION_TEXT } from './cmd/version.ts';

function usage(commands: VmCommand[]): string {
  return [
    'Usage: bulkhead-vm [--root DIR] [--log FILE] [--log-format text|json] [--assets DIR] [--accel auto|kvm|tcg] COMMAND [ARGS]',
    '',
    'An OCI runtime that runs each pod in its own microVM (QEMU; Firecracker with --firecracker).',
    '',
    'Commands:',
    ...commands.filter((c) => !c.internal).map((c) => `  ${c.name.padEnd(9)} ${c.summary}`),
    '',
    "Run 'bulkhead-vm COMMAND --help' for a command's flags.",
  ].join('\n') + '\n';
}

/**
 * The failure of a command: on stderr (plain, or with --log-format json a JSON line carrying
 * `error: {code, reason, message}` that runtime/errors.ts takes as it is) and in --log.
 */
function logError(g: VmGlobal, err: unknown): void {
  const msg = err instanceof BulkheadError ? err.message : `unexpected error: ${err instanceof Error ? err.stack : String(err)}`;
  const json = JSON.stringify({ level: 'error', msg, time: new Date().toISOString(), error: { ...toWire(err), message: msg } });
  process.stderr.write(g.logFormat === 'json' ? `${json}\n` : `bulkhead-vm: ${msg}\n`);
  if (!g.log) return;
  try {
    appendFileSync(g.log, (g.logFormat === 'json' ? json : `time=${new Date().toISOString()} level=error msg=${JSON.stringify(msg)}`) + '\n');
  } catch { /* log dir gone */ }
}

export async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseRuntimeFlags>;
  try {
    parsed = parseRuntimeFlags(argv, GLOBAL_FLAGS, 1);
  } catch (e) {
    process.stderr.write(`bulkhead-vm: ${(e as Error).message}\n`);
    return 2;
  }
  const g = globalOptions(parsed.flags, process.env);
  const [name, ...rest] = parsed.args;
  if (bool(parsed.flags, 'version') || name === 'version') { process.stdout.write(VERSION_TEXT); return 0; }
  if (name === undefined || name === 'help') {
    const target = name === 'help' && rest[0] ? await loadVmCommand(rest[0]) : undefined;
    const text = target ? `Usage: ${target.synopsis}\n${target.summary}\n` : usage(await loadVmCommands());
    if (name === undefined && !bool(parsed.flags, 'help')) { process.stderr.write(text); return 2; }
    process.stdout.write(text);
    return 0;
  }
  const cmd = await loadVmCommand(name);
  if (!cmd) {
    process.stderr.write(`bulkhead-vm: unknown command ${JSON.stringify(name)}; see 'bulkhead-vm help'\n`);
    return 2;
  }
  let own: ReturnType<typeof parseRuntimeFlags>;
  try {
    own = parseRuntimeFlags(rest, cmd.flags, cmd.positionalsBeforeArgs ?? Infinity);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`bulkhead-vm ${name}: ${e.message} (see 'bulkhead-vm ${name} --help')\n`);
    return 2;
  }
  if ((own.flags.help === true && !cmd.flags.help) || (own.flags.h === true && !Object.values(cmd.flags).some((o) => o.short === 'h'))) {
    process.stdout.write(`Usage: ${cmd.synopsis}\n${cmd.summary}\n`);
    return 0;
  }
  try {
    // Some callers (podman's cleanup through conmon) run `delete` without the runtime flags:
    // find a container created under another --root through the by-id index of the default root.
    if (cmd.byId && g.root === DEFAULT_ROOT && own.args[0]) g.root = rootFromIndex(own.args[0]) ?? g.root;
    checkGlobal(g);
    await mkdir(g.root, { recursive: true, mode: 0o700 });
    const ac = new AbortController();
    return await cmd.run({ global: g, flags: own.flags, args: own.args, stdout: process.stdout, stderr: process.stderr, signal: ac.signal });
  } catch (e) {
    logError(g, e);
    return 1;
  }
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  main(argv).then((code) => {
    process.exitCode = code;
    // a foreground exec's shim may leave stdin open (conmon's pipe): its work is done, leave now
    if (argv.includes('exec')) process.exit(code);
  }, (e: unknown) => { process.stderr.write(String(e) + '\n'); process.exitCode = 1; });
}
