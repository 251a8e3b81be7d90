/**
 * Attach I/O: conmon serves a container's (or an exec session's) stdio on a SOCK_SEQPACKET unix
 * socket `attach` in its directory, and takes window sizes on the `ctl` fifo beside it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { PassThrough, type Writable } from 'node:stream';
import { FailedPreconditionError } from '../../errors.ts';
import type { Logger } from '../../util/log.ts';
import type { AttachOptions, InteractiveProcess } from '../backend.ts';
import { exists, writeCtl, type ConmonContext } from './shared.ts';

/**
 * Perl (perl-base is Essential on Debian) bridges conmon's SOCK_SEQPACKET attach socket, which
 * Node cannot open, to stdio: packets out as [type:1][len:4 BE][data], stdin bytes in raw. Once
 * connected it says so with an empty packet of type CONNECTED (conmon's own types are 1 to 3).
 */
const CONNECTED = 0xff;
const ATTACH_HELPER = String.raw`
use strict; use Socket; use IO::Select;
my ($dir, $name) = @ARGV; chdir($dir) or die "chdir: $!\n";
socket(my $s, AF_UNIX, SOCK_SEQPACKET, 0) or die "socket: $!\n";
connect($s, pack_sockaddr_un($name)) or die "connect: $!\n";
binmode(STDOUT); binmode(STDIN); $| = 1;
syswrite(STDOUT, chr(${CONNECTED}) . pack('N', 0));
my $sel = IO::Select->new($s, \*STDIN); my $in_open = 1;
while (1) {
  for my $fh ($sel->can_read()) {
    if ($fh == $s) {
      my $buf = ''; my $r = sysread($s, $buf, 65536);
      exit 0 if !defined($r) || $r == 0;
      my $t = substr($buf, 0, 1); my $d = substr($buf, 1);
      syswrite(STDOUT, $t . pack('N', length($d)) . $d);
    } else {
      my $buf = ''; my $r = sysread(STDIN, $buf, 32768);
      if (!defined($r) || $r == 0) { $sel->remove(\*STDIN); shutdown($s, 1); $in_open = 0; next; }
      send($s, $buf, 0);
    }
  }
}`;

export interface AttachSession {
  helper: ChildProcess;
  stdin: Writable | null;
  stdout: PassThrough;
  stderr: PassThrough | null;
  ended: Promise<void>;
  close: () => void;
  /** Settles true once the helper is connected to the attach socket, false if it ended before. */
  connected: Promise<boolean>;
}

/** Connects to the attach socket in `dir` and turns conmon's packets into stdout/stderr streams. */
export function connectAttach(dir: string, o: { stdin: boolean; tty: boolean }, log: Logger): AttachSession {
  const helper = spawn('perl', ['-e', ATTACH_HELPER, dir, 'attach'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const stdout = new PassThrough();
  const stderr = o.tty ? null : new PassThrough();
  let buf: Buffer = Buffer.alloc(0);
  let setConnected: (ok: boolean) => void = () => {};
  const connected = new Promise<boolean>((resolve) => { setConnected = resolve; });
  helper.on('error', () => setConnected(false));
  let helperErr = '';
  helper.stderr!.on('data', (b: Buffer) => { if (helperErr.length < 65536) helperErr += b.toString(); });
  helper.stdout!.on('data', (b: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, b]) : b;
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (buf.length < 5 + len) break;
      const type = buf[0]!;
      const data = buf.subarray(5, 5 + len);
      buf = buf.subarray(5 + len);
      if (type === CONNECTED) setConnected(true);
      else if (type === 3 && stderr) stderr.write(data); else stdout.write(data);
    }
  });
  const ended = new Promise<void>((resolve) => {
    helper.on('close', () => {
      setConnected(false);
      if (helperErr.trim()) log.debug('attach helper', { err: helperErr.trim() });
      stdout.end();
      stderr?.end();
      resolve();
    });
  });
  let stdin: Writable | null = null;
  if (o.stdin) {
    stdin = helper.stdin!;
    stdin.on('error', () => {});
  } else {
    helper.stdin!.on('error', () => {});
  }
  return {
    helper, stdin, stdout, stderr, ended, connected,
    close: () => { helper.kill('SIGTERM'); },
  };
}

/** Attaches to a running container's stdio (its conmon must serve the attach socket). */
export async function attachContainer(ctx: ConmonContext, id: string, opts: AttachOptions = {}): Promise<InteractiveProcess> {
  const meta = await ctx.meta(id);
  const dir = ctx.bundleDir(id);
  if (!(await exists(join(dir, 'attach')))) throw new FailedPreconditionError(`container ${id} has no attach socket (not running under conmon)`);
  const session = connectAttach(dir, { stdin: opts.stdin === true && meta.stdin, tty: meta.tty }, ctx.log);
  if (!(await session.connected)) throw new FailedPreconditionError(`cannot attach to ${id}: conmon is not serving it`);
  return {
    stdin: session.stdin,
    stdout: session.stdout,
    stderr: session.stderr,
    resize: async (w, h) => { await resizeTerminal(ctx, id, w, h); },
    wait: async () => {
      await session.ended;
      const st = await ctx.state(id).catch(() => undefined);
      return st?.status === 'stopped' ? (st.exitCode ?? -1) : -1;
    },
    close: () => session.close(),
  };
}

/** Tells conmon the terminal's new size (ctl fifo message 1). */
export async function resizeTerminal(ctx: ConmonContext, id: string, width: number, height: number): Promise<void> {
  await ctx.meta(id);
  await writeCtl(ctx.bundleDir(id), `1 ${Math.max(1, Math.floor(height))} ${Math.max(1, Math.floor(width))}\n`);
}
