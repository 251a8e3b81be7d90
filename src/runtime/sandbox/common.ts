/**
 * What both pod-sandbox strategies share: the three ways to reach a port inside a pod, and the
 * stop and ordered removal of a sandbox container.
 */
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { isNotFound } from '../../errors.ts';
import type { ContainerRuntime } from '../backend.ts';
import type { PodConnection, PodSandboxState } from './pod-sandbox.ts';

/** 127.0.0.1:`port` of the host (a pod on the host's network). */
export function dialHost(port: number): PodConnection {
  const sock = connect({ host: '127.0.0.1', port });
  sock.on('error', () => undefined);
  const done = new Promise<void>((resolve) => sock.on('close', () => resolve()));
  return { readable: sock, writable: sock, close: () => sock.destroy(), done };
}

/** 127.0.0.1:`port` inside a network namespace, through `nsenter --net … busybox nc` (lives as long as the connection; `signal` ends it). */
export function dialNetns(netnsPath: string, port: number, signal: AbortSignal): PodConnection {
  const child = spawn('nsenter', [`--net=${netnsPath}`, '/bin/busybox', 'nc', '127.0.0.1', String(port)], { stdio: ['pipe', 'pipe', 'ignore'], signal });
  child.on('error', () => undefined);
  const done = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return { readable: child.stdout, writable: child.stdin, close: () => child.kill('SIGKILL'), done };
}

/** 127.0.0.1:`port` as the sandbox container sees it (its own network stack: a VM, gVisor's netstack), by exec'ing busybox nc in it. */
export async function dialInside(rt: ContainerRuntime, sandboxId: string, port: number, signal: AbortSignal): Promise<PodConnection> {
  const proc = await rt.execInteractive(sandboxId, { args: ['/bin/busybox', 'nc', '127.0.0.1', String(port)], stdin: true, signal });
  const done = proc.wait().then(() => undefined, () => undefined);
  return { readable: proc.stdout, writable: proc.stdin!, close: () => proc.close(), done };
}

/** Kills the sandbox container and waits for it (StopPodSandbox). Idempotent. */
export async function stopSandbox(rt: ContainerRuntime, state: PodSandboxState, signal: AbortSignal): Promise<void> {
  if (!state.sandboxId) return;
  try {
    const st = await rt.state(state.sandboxId, signal);
    if (st.status !== 'running') return;
    await rt.kill(state.sandboxId, 'SIGKILL', signal);
    await rt.wait(state.sandboxId, AbortSignal.any([signal, AbortSignal.timeout(30_000)]));
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/**
 * The containers, then the sandbox container, then `release` (what else holds the pod's
 * namespaces). When a container cannot be removed this stops there: the sandbox still holds what
 * is left, and the caller's retry (RemovePodSandbox again, or recovery) starts over. The sandbox
 * and `release` are both tried before the first of their errors is thrown.
 */
export async function destroyInOrder(
  rt: ContainerRuntime, state: PodSandboxState, removeContainers: () => Promise<void>, release: () => Promise<void>, signal: AbortSignal,
): Promise<void> {
  await removeContainers();
  const [a, b] = await Promise.allSettled([state.sandboxId ? rt.delete(state.sandboxId, signal) : Promise.resolve(), Promise.resolve().then(release)]);
  for (const r of [a, b]) if (r.status === 'rejected') throw r.reason;
}
