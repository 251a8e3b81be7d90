/**
 * Per-handler pod overhead measured by bench/overhead (memory and CPU a sandbox costs beyond its
 * containers), read for RuntimeClass `overhead.podFixed`. The file is written by the benchmark,
 * never guessed: when it is missing or has no entry for a handler, the RuntimeClass has no
 * overhead and the manifests say so.
 *
 * File (JSON, default <root>/overhead.json):
 *   { "version": 1, "measuredAt": "2026-...Z", "handlers": { "gvisor": { "memoryBytes": 31457280, "cpuMillicores": 30 } } }
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError } from '../errors.ts';

export interface HandlerOverhead {
  /** Extra memory per pod, bytes. */
  memoryBytes: number;
  /** Extra CPU per pod, millicores. */
  cpuMillicores: number;
}

export interface OverheadMeasurements {
  version: 1;
  measuredAt: string;
  handlers: Record<string, HandlerOverhead>;
}

export function defaultOverheadPath(root: string): string {
  return join(root, 'overhead.json');
}

export function parseOverhead(text: string, source: string): OverheadMeasurements {
  let doc: unknown;
  try { doc = JSON.parse(text); } catch (err) {
    throw new InvalidArgumentError(`overhead file ${source}: not JSON: ${(err as Error).message}`, { cause: err });
  }
  const bad = (what: string): never => { throw new InvalidArgumentError(`overhead file ${source}: ${what}`); };
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return bad('must be an object');
  const d = doc as Record<string, unknown>;
  if (d.version !== 1) bad('version must be 1');
  if (typeof d.measuredAt !== 'string') bad('measuredAt must be a string');
  if (typeof d.handlers !== 'object' || d.handlers === null || Array.isArray(d.handlers)) return bad('handlers must be an object');
  const handlers: Record<string, HandlerOverhead> = {};
  for (const [name, v] of Object.entries(d.handlers as Record<string, unknown>)) {
    const h = v as Record<string, unknown>;
    const ok = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x >= 0;
    if (typeof v !== 'object' || v === null || !ok(h.memoryBytes) || !ok(h.cpuMillicores)) bad(`handlers.${name} needs memoryBytes and cpuMillicores (numbers ≥ 0)`);
    handlers[name] = { memoryBytes: h.memoryBytes as number, cpuMillicores: h.cpuMillicores as number };
  }
  return { version: 1, measuredAt: d.measuredAt as string, handlers };
}

/** The measurements, or undefined when the file does not exist (a broken file is an error). */
export async function readOverhead(path: string): Promise<OverheadMeasurements | undefined> {
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InvalidArgumentError(`overhead file ${path} cannot be read: ${(err as Error).message}`, { cause: err });
  }
  return parseOverhead(text, path);
}

/** Kubernetes quantities, rounded up: 31457280 bytes → "30Mi", 12.3 millicores → "13m". */
export function memoryQuantity(bytes: number): string {
  return `${Math.max(1, Math.ceil(bytes / (1024 * 1024)))}Mi`;
}
export function cpuQuantity(millicores: number): string {
  return `${Math.max(1, Math.ceil(millicores))}m`;
}
