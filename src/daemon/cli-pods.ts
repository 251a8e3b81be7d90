/**
 * Pods that `bulkhead run` makes carry the label `io.bulkhead.cli=run`: one pod per container, made
 * just before it and removed with it. A daemon that dies between the two (during `run -d` or
 * `rm -f`) leaves such a pod without its container: no `ps` row shows it, yet its name is taken.
 * At start, after the engine's recovery and before serving, the daemon removes every such pod that
 * has no container: the CLI call that made it died with the old daemon's connection, and no client
 * of the new daemon can be half-way through a run yet.
 */
import type { PodSandbox, Container } from '../engine/types.ts';
import type { Logger } from '../util/log.ts';

/** Label (key) and value on the pods and containers `bulkhead run` makes. */
export const CLI_POD_LABEL = 'io.bulkhead.cli';
export const CLI_POD_LABEL_VALUE = 'run';

/** The part of the engine this needs. */
export interface CliPodEngine {
  listPodSandbox(filter?: { labelSelector?: Record<string, string> } | null): PodSandbox[];
  listContainers(filter?: { podSandboxId?: string } | null): Container[];
  stopPodSandbox(id: string, signal?: AbortSignal): Promise<void>;
  removePodSandbox(id: string, signal?: AbortSignal): Promise<void>;
}

/** Removes CLI-made pods that have no container; returns their ids. A failure is logged, not thrown. */
export async function removeEmptyCliPods(engine: CliPodEngine, logger: Logger, signal?: AbortSignal): Promise<string[]> {
  const removed: string[] = [];
  for (const pod of engine.listPodSandbox({ labelSelector: { [CLI_POD_LABEL]: CLI_POD_LABEL_VALUE } })) {
    if (engine.listContainers({ podSandboxId: pod.id }).length > 0) continue;
    try {
      await engine.stopPodSandbox(pod.id, signal);
      await engine.removePodSandbox(pod.id, signal);
      removed.push(pod.id);
      logger.info('removed a pod that bulkhead run made but never got its container (the daemon stopped in between)', { pod: pod.id, name: pod.metadata.name });
    } catch (err) {
      logger.warn('removing a CLI pod without its container failed', { pod: pod.id, name: pod.metadata.name, error: err instanceof Error ? err.message : String(err) });
    }
  }
  return removed;
}
