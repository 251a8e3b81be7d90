/**
 * The shape of a `bulkhead` subcommand (src/util/command.ts, shared with bulkhead-vm) with this
 * program's global options. Only cli/ prints for humans or chooses exit codes. All commands are
 * registered in commands.ts.
 */
import type { Command as BaseCommand, CommandContext as BaseContext } from '../util/command.ts';

export { UsageError, type FlagSpec } from '../util/command.ts';

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

export type CommandContext = BaseContext<GlobalOptions>;
export type Command = BaseCommand<GlobalOptions>;
