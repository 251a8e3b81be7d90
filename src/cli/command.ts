/**
 * The shape of a CLI subcommand: one file per command with its name, synopsis and flags, and a
 * thin `run` that calls library code and returns an exit code. Only cli/ prints for humans or
 * chooses exit codes. All commands are registered in commands.ts.
 */
import type { ParseArgsConfig } from 'node:util';

export type FlagSpec = NonNullable<ParseArgsConfig['options']>;

export interface GlobalOptions {
  /** State directory (content store, snapshots, state.db); --root or BULKHEAD_ROOT. */
  root: string;
  /** Runtime directory (sockets, bundles); --run-dir or BULKHEAD_RUN_DIR. */
  runDir: string;
  /** The daemon's CRI socket; --socket or BULKHEAD_SOCKET. */
  socket: string;
  /** Daemon config file; --config or BULKHEAD_CONFIG. */
  config: string;
  json: boolean;
  debug: boolean;
}

export interface CommandContext {
  global: GlobalOptions;
  /** Flags parsed with the command's own spec. */
  flags: Record<string, string | boolean | (string | boolean)[] | undefined>;
  /** Positional arguments after the command name (everything after IMAGE for `run`). */
  args: string[];
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  signal: AbortSignal;
}

export interface Command {
  name: string;
  aliases?: string[];
  synopsis: string;
  /** One line for `bulkhead help`. */
  summary: string;
  flags: FlagSpec;
  /** Stop parsing flags at the first positional (for `run IMAGE CMD --flag-of-cmd`). */
  stopAtFirstPositional?: boolean;
  /** Internal commands are hidden from `bulkhead help`. */
  internal?: boolean;
  run(ctx: CommandContext): Promise<number>;
}

/** A user-facing error with a hint on what to do; printed without a stack trace. */
export class UsageError extends Error {
  constructor(message: string) { super(message); this.name = 'UsageError'; }
}
