/**
 * How long bulkhead-vm waits for each step of a pod VM's start, in one place, each outer wait
 * derived from the inner ones it wraps (plus a margin), so the innermost limit that is hit names
 * its cause: a template build (template.ts) inside a pod VM's start (create.ts) inside the daemon's
 * runtime call (runtime/microvm/microvm-backend.ts). All follow the boot timeout (--boot-timeout,
 * BULKHEAD_VM_BOOT_TIMEOUT_MS): a guest under emulation is as slow at every step as at its boot.
 */

/** The default of --boot-timeout: a booting guest's agent must say hello within it. */
export const DEFAULT_BOOT_TIMEOUT_MS = 120_000;
/** What a create waits for the pod VM beyond its own steps (the supervisor's start, its socket, the network). */
export const POD_VM_READY_EXTRA_MS = 30_000;
/** What a create waits for a container's supervisor (the C shim) to say it is ready. */
export const SUPERVISOR_READY_MS = 120_000;
/** Saving a template VM (template.ts #save): QMP connect 10 s + migration 60 s + the state stream's end 10 s. */
export const TEMPLATE_SAVE_MS = 80_000;

/**
 * How long the guest agent waits for a started process to reach its exec before it fails the start
 * and kills the process (sent in each create and exec request as start_wait_ms): inside the host's
 * own wait for a start (the boot timeout, bulkhead-vm start), so the agent's answer, naming the
 * cause, comes first.
 */
export function agentStartWaitMs(bootTimeoutMs: number): number {
  return Math.max(100, Math.floor(bootTimeoutMs * 3 / 4));
}

/** One step of a clone's start: the restore of the template's state, then the agent's answer to its identity. */
export function cloneStepMs(bootTimeoutMs: number): number {
  return Math.min(bootTimeoutMs, 30_000);
}

/**
 * The longest a template build takes when each of its steps uses its limit: the boot (agent's
 * hello), the sandbox container's start in it (as long again), the save, and a margin. A waiter
 * for another's build (its lock) allows this much.
 */
export function templateBuildMs(bootTimeoutMs: number): number {
  return 2 * bootTimeoutMs + TEMPLATE_SAVE_MS + 10_000;
}

/**
 * What a create waits for its pod VM to be ready: a boot, or — a pod that may be a clone — a
 * template build (its own, or waiting for another's) and the clone's two steps; plus the rest.
 */
export function podVmReadyMs(bootTimeoutMs: number, templated: boolean): number {
  const start = templated ? Math.max(bootTimeoutMs, templateBuildMs(bootTimeoutMs) + 2 * cloneStepMs(bootTimeoutMs)) : bootTimeoutMs;
  return start + POD_VM_READY_EXTRA_MS;
}
