/**
 * The handler catalog the cluster-side parts (webhook, `policy check`, manifests) reason about
 * when they cannot probe a node: handler name → isolation class. On a node, the CRI server passes
 * the real probe results instead.
 */
import { InvalidArgumentError } from '../errors.ts';
import { ISOLATIONS, type HandlerInfo, type Isolation } from './policy.ts';
import { backendKinds, catalogKinds, kindIsolation } from '../runtime/backends.ts';

/** Isolation class of each backend kind (the registry, src/runtime/backends.ts). */
export const BACKEND_ISOLATION: Readonly<Record<string, Isolation>> = Object.fromEntries(backendKinds().map((k) => [k, kindIsolation(k)!]));

/** The handlers Bulkhead ships with, all assumed available. */
export const DEFAULT_HANDLERS: readonly HandlerInfo[] = catalogKinds().map((k) => ({ handler: k.kind, isolation: k.isolation, available: true }));

/** "runc=process,gvisor=user-kernel,microvm=vm" (or bare names of known backends) → handler list. */
export function parseHandlerList(spec: string): HandlerInfo[] {
  const out: HandlerInfo[] = [];
  for (const item of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [name, cls] = item.split('=', 2) as [string, string | undefined];
    if (!/^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$/.test(name)) throw new InvalidArgumentError(`handlers: "${name}" is not a valid handler name`);
    const isolation = cls ?? BACKEND_ISOLATION[name];
    if (isolation === undefined) throw new InvalidArgumentError(`handlers: give the isolation class of "${name}" (${name}=process|strict|user-kernel|vm)`);
    if (!ISOLATIONS.includes(isolation as Isolation)) throw new InvalidArgumentError(`handlers: "${isolation}" is not an isolation class (${ISOLATIONS.join(', ')})`);
    if (out.some((h) => h.handler === name)) throw new InvalidArgumentError(`handlers: "${name}" is listed twice`);
    out.push({ handler: name, isolation: isolation as Isolation, available: true });
  }
  if (out.length === 0) throw new InvalidArgumentError('handlers: the list is empty');
  return out;
}

/** Handlers configured in the daemon config's [runtime.handlers] (backend kind → isolation), assumed available. */
export function handlersFromRuntimeConfig(handlers: Record<string, { backend: string }>): HandlerInfo[] {
  return Object.entries(handlers).flatMap(([name, h]) => {
    const isolation = BACKEND_ISOLATION[h.backend];
    return isolation ? [{ handler: name, isolation, available: true }] : [];
  });
}
