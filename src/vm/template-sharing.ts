/**
 * Who may share a VM template's memory, and a pod's sharing scope (template.ts): apart from the
 * template machinery so that every `bulkhead-vm` command's flags (global.ts) and the daemon's
 * microvm backend read them without loading QEMU's driver and the pod supervisor.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '../errors.ts';

/**
 * Who may share a template's memory (setting `[vm] template_sharing`, bulkhead-vm
 * `--template-sharing`): 'level' = pods of one trust level (the default), 'node' = every pod on the
 * node, 'none' = no templates (every pod VM boots).
 */
export type TemplateSharing = 'level' | 'node' | 'none';
export const TEMPLATE_SHARING: readonly TemplateSharing[] = ['level', 'node', 'none'];

export function parseTemplateSharing(v: string | undefined, what: string): TemplateSharing | undefined {
  if (v === undefined) return undefined;
  if (!(TEMPLATE_SHARING as readonly string[]).includes(v)) throw new InvalidArgumentError(`${what} must be one of ${TEMPLATE_SHARING.join(', ')}`);
  return v as TemplateSharing;
}

/** The sharing scope of a pod's template: its trust level (setting 'level') or "node"; undefined = no template. */
export function templateScope(sharing: TemplateSharing, trustLevel: string | undefined): string | undefined {
  if (sharing === 'none') return undefined;
  if (sharing === 'node') return 'node';
  // a pod whose level the runtime was not told shares only with other such pods; a level name
  // with other characters is hashed (never merged with another level)
  if (!trustLevel) return 'level:(unknown)';
  return /^[A-Za-z0-9_.-]{1,64}$/.test(trustLevel) ? `level:${trustLevel}` : `level:#${createHash('sha256').update(trustLevel).digest('hex').slice(0, 16)}`;
}

/**
 * Whether the host's KSM runs (`/sys/kernel/mm/ksm/run`; undefined: no KSM in this kernel). It merges
 * only the RAM of clones of a node-wide template (template_sharing `node`, qemu.ts mem-merge): a
 * merged page's copy-on-write timing tells one guest what another holds, so never across levels.
 */
export function hostKsm(runFile = '/sys/kernel/mm/ksm/run'): 'on' | 'off' | undefined {
  let v: string;
  try { v = readFileSync(runFile, 'utf8').trim(); } catch { return undefined; }
  return v === '1' ? 'on' : 'off';
}
