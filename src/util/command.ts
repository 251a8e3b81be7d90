/**
 * The shape of a subcommand, shared by Bulkhead's two command-line programs (`bulkhead`, in cli/,
 * and the OCI runtime `bulkhead-vm`, in vm/cmd/), as runsc's cmd package has it: one file per
 * command with its name, synopsis and flags, and a thin `run` that calls library code and returns
 * an exit code. Each program registers its commands in one place and parses flags its own way
 * (`bulkhead` strictly, with node:util parseArgs; `bulkhead-vm` as runc does, since conmon, podman
 * and containerd speak runc's grammar), but both declare flags with the same FlagSpec.
 */
import type { ParseArgsConfig } from 'node:util';

export type FlagSpec = NonNullable<ParseArgsConfig['options']>;

/** Parsed flag values by long name; repeated flags (`multiple`) are arrays. */
export type FlagValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface CommandContext<G> {
  /** The program's global options (its flags before the command name, its environment). */
  global: G;
  /** Flags parsed with the command's own spec. */
  flags: FlagValues;
  /** Positional arguments after the command name (after the command's own flags). */
  args: string[];
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  signal: AbortSignal;
}

export interface Command<G> {
  name: string;
  aliases?: string[];
  synopsis: string;
  /** One line for the program's help. */
  summary: string;
  flags: FlagSpec;
  /** Stop parsing flags at the first positional (for `run IMAGE CMD --flag-of-cmd`). */
  stopAtFirstPositional?: boolean;
  /** Internal commands are hidden from help. */
  internal?: boolean;
  run(ctx: CommandContext<G>): Promise<number>;
}

/** A user-facing error with a hint on what to do; printed without a stack trace (exit code 2). */
export class UsageError extends Error {
  constructor(message: string) { super(message); this.name = 'UsageError'; }
}
