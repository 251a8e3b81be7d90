/**
 * Pods that `bulkhead run` makes carry the label `io.bulkhead.cli=run`: one pod per container, made
 * just before it and removed with it. A daemon that dies between the two (during `run -d` or
 * `rm -f`) leaves such a pod without its container: no `ps` row shows it, yet its name is taken.
 * At start, after the engine's recovery and before serving, the daemon removes every such pod that
 * has no container: the CLI call that made it died with the old daemon's connection, and no client
 * of the new daemon can be half-way through a run yet.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { PodSandbox, Container } from '../api/cri.ts';
import type { Logger } from '../util/log.ts';

/** Label (key) and value on the pods and containers `bulkhead run` makes. */
export const CLI_POD_LABEL = 'io.bulkhead.cli';
export const CLI_POD_LABEL_VALUE = 'run';

/**
 * Where `bulkhead run` puts a pod's logs: `<root>/logs/<namespace>_<name>_<uid>`. The CRI leaves a
 * log directory the client chose to the client (the kubelet removes its own), so whoever removes a
 * CLI pod removes this too. Undefined when a part could step out of `<root>/logs`.
 */
export function cliLogDirectory(root: string, md: { namespace?: string | null; name?: string | null; uid?: string | null } | null | undefined): string | undefined {
  const part = `${md?.namespace ?? ''}_${md?.name ?? ''}_${md?.uid ?? ''}`;
  if (!md?.name || !md.uid || /[\0/]/.test(part)) return undefined;
  return join(root, 'logs', part);
}

/** Removes a CLI pod's log directory (after the pod is gone); never throws. */
export async function removeCliLogDirectory(root: string, md: { namespace?: string | null; name?: string | null; uid?: string | null } | null | undefined): Promise<void> {
  const dir = cliLogDirectory(root, md);
  if (dir) await rm(dir, { recursive: true, force: true }).catch(() => {});
}

/** The part of the engine this needs. */
export interface CliPodEngine {
  listPodSandbox(filter?: { labelSelector?: Record<string, string> } | null): PodSandbox[];
  listContainers(filter?: { podSandboxId?: string } | null): Container[];
  stopPodSandbox(id: string, signal?: AbortSignal): Promise<void>;
  removePodSandbox(id: string, signal?: AbortSignal): Promise<void>;
}

/** Removes CLI-made pods that have no container; returns their ids. A failure is logged, not thrown. */
export async function removeEmptyCliPods(engine: CliPodEngine, root: string, logger: Logger, signal?: AbortSignal): Promise<string[]> {
  const removed: string[] = [];
  for (const pod of engine.listPodSandbox({ labelSelector: { [CLI_POD_LABEL]: CLI_POD_LABEL_VALUE } })) {
    if (engine.listContainers({ podSandboxId: pod.id }).length > 0) continue;
    try {
      await engine.stopPodSandbox(pod.id, signal);
      await engine.removePodSandbox(pod.id, signal);
      await removeCliLogDirectory(root, pod.metadata);
      removed.push(pod.id);
      logger.info('removed a pod that bulkhead run made but never got its container (the daemon stopped in between)', { pod: pod.id, name: pod.metadata.name });
    } catch (err) {
      logger.warn('removing a CLI pod without its container failed', { pod: pod.id, name: pod.metadata.name, error: err instanceof Error ? err.message : String(err) });
    }
  }
  return removed;
}
