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
export type Command = BaseCommand<GlobalOptions> & {
  /**
   * The process exits as soon as run() has returned, instead of waiting for Node to wind down what
   * is still open (the daemon connection's close, file handles, the event stream): measured 3-65 ms
   * (median ~20) after the last write of a `bulkhead run` on a loaded host, ~4 with it. Only for a
   * command that awaits everything it starts; its output is flushed first (see main.ts).
   */
  exitWhenDone?: boolean;
};
