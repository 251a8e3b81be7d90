/** Pod annotations of Bulkhead's own that a runtime backend reads (a leaf module: the CLI imports it without runtime code). */

/**
 * `io.bulkhead.single-container: "true"` (set by `bulkhead run --rm`): the pod will hold one
 * container at a time, so a sandbox-hosted backend may run that container *as* the sandbox (its
 * root container) instead of a sandbox container with the app inside it (gVisor: one runsc
 * sandbox per run, as podman makes it). Hostile input like every annotation: what it can do is
 * make the pod refuse a second container while one exists (the backend decides whether it applies),
 * have its containers' writable layers mounted unsynced (engine: nothing reads them again), and on
 * runc/crun have its containers make IPC and UTS namespaces of their own, and on the loopback-only
 * network their netns too (nothing pinned; port-forward refused).
 */
export const SINGLE_CONTAINER_ANNOTATION = 'io.bulkhead.single-container';
