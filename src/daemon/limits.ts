/**
 * How long the daemon's start may take, in one place: the daemon bounds its start-up steps (the pod
 * network, the sweeps of orphans) with it, and a CLI that started it or finds it starting waits as
 * long (plus its own Node.js start and listen) before giving up on it. Kept apart from daemon.ts so
 * the CLI reads it without loading the daemon.
 */

/** The daemon's start-up steps (pod network, orphan sweeps) end within this. */
export const DAEMON_STARTUP_MS = 120_000;
/** What a CLI waits for a daemon that is starting: its start-up steps, then its process start and listen. */
export const DAEMON_START_WAIT_MS = DAEMON_STARTUP_MS + 15_000;
