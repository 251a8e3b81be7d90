// How CLI commands reach the daemon: over the CRI socket, starting a daemon in the background when
// none answers (and saying so), and resolving names and ID prefixes as docker and crictl do.
import type { CommandContext, GlobalOptions } from './command.ts';
import type { CriClient } from '../cri/client.ts';
import type { Container, PodSandbox } from '../api/cri.ts';
import { daemonLogPath, ensureDaemon } from './daemon.ts';
import { CLI_POD_LABEL } from '../daemon/cli-pods.ts';
import { errorReason, NotFoundError, InvalidArgumentError, UnavailableError } from '../errors.ts';

export async function withClient<T>(ctx: CommandContext, fn: (client: CriClient) => Promise<T>): Promise<T> {
  const { client, started } = await ensureDaemon(ctx.global, { signal: ctx.signal, onWait: (line) => { ctx.stderr.write(line + '\n'); } });
  if (started) ctx.stderr.write(`bulkhead: started a Bulkhead daemon in the background (pid ${started.pid}, log ${started.log})\n`);
  try {
    return await fn(client);
  } catch (err) {
    throw explainDaemonError(err, ctx.global);
  } finally {
    client.close();
  }
}

/**
 * A call the daemon's going away cut short (reason BH_CONNECTION_DROPPED) says so, with where the daemon's
 * log is and how to get one back; other errors are returned unchanged.
 */
export function explainDaemonError(err: unknown, global: GlobalOptions): unknown {
  if (errorReason(err) !== 'BH_CONNECTION_DROPPED') return err;
  return new UnavailableError(`the Bulkhead daemon closed the connection during the call (it died or was stopped; the call may have been partly done): see its log ${daemonLogPath(global)} (when the CLI started it), then run the command again, which starts a new daemon when none answers, or run 'bulkhead daemon' in the foreground`, { cause: err });
}

function pick<T>(kind: string, ref: string, items: T[], id: (t: T) => string, name: (t: T) => string): T {
  const exact = items.filter((t) => id(t) === ref || name(t) === ref);
  if (exact.length === 1) return exact[0]!;
  const byPrefix = items.filter((t) => id(t).startsWith(ref));
  if (byPrefix.length === 1) return byPrefix[0]!;
  if (byPrefix.length > 1 || exact.length > 1) throw new InvalidArgumentError(`${kind} "${ref}" is ambiguous: ${[...exact, ...byPrefix].map((t) => id(t).slice(0, 13)).join(', ')}`);
  throw new NotFoundError(`no such ${kind}: ${ref} (see 'bulkhead ${kind === 'pod' ? 'pods' : 'ps -a'}')`, { reason: kind === 'pod' ? 'BH_POD_NOT_FOUND' : 'BH_CONTAINER_NOT_FOUND' });
}

/** A container by full ID, unique ID prefix or name. */
export async function findContainer(client: CriClient, ref: string): Promise<Container> {
  if (!ref) throw new InvalidArgumentError('a container ID or name is required');
  return pick('container', ref, await client.listContainers(), (c) => c.id, (c) => c.metadata.name);
}

/** A pod by full ID, unique ID prefix or name. */
export async function findPod(client: CriClient, ref: string): Promise<PodSandbox> {
  if (!ref) throw new InvalidArgumentError('a pod ID or name is required');
  return pick('pod', ref, await client.listPodSandbox(), (p) => p.id, (p) => p.metadata.name);
}

/**
 * A pod `bulkhead run` made (label io.bulkhead.cli=run) that has no container, found by name or ID:
 * what a run interrupted between making the pod and making its container leaves behind.
 */
export async function findEmptyCliPod(client: CriClient, ref: string): Promise<PodSandbox | undefined> {
  const pods = (await client.listPodSandbox({ labelSelector: { [CLI_POD_LABEL]: 'run' } }))
    .filter((p) => p.metadata.name === ref || p.id === ref || (ref.length >= 6 && p.id.startsWith(ref)));
  for (const p of pods) if ((await client.listContainers({ podSandboxId: p.id })).length === 0) return p;
  return undefined;
}

/**
 * Runs `fn` for each of the command's arguments, as docker does for stop/rm/rmi: a failure is
 * reported for its argument and the rest still run; the exit code is 1 if any failed.
 */
export async function eachRef(ctx: CommandContext, fn: (ref: string) => Promise<string | void>): Promise<number> {
  let rc = 0;
  for (const ref of ctx.args) {
    try {
      const said = await fn(ref);
      ctx.stdout.write((said ?? ref) + '\n');
    } catch (err) {
      ctx.stderr.write(`bulkhead: ${ref}: ${(explainDaemonError(err, ctx.global) as Error).message}\n`);
      rc = 1;
    }
  }
  return rc;
}
