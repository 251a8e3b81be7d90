// What `create` of a sandbox tells the pod supervisor about VM templates (../template.ts), from the sandbox's spec.
import { FailedPreconditionError } from '../../errors.ts';
import type { OciSpec } from '../../oci/spec.ts';
import { TRUST_LEVEL_ANNOTATION, VOLUMES_ANNOTATION } from '../annotations.ts';
import { templateScope } from '../template-sharing.ts';
import type { VmGlobal } from './global.ts';


/**
 * A sandbox's volume mode: the spec's annotation (`none`: the pod binds no volumes; `copy`: they are
 * copied in, copy-volumes.ts; `share`: virtio-fs, whatever the default), else the handler's default (--volumes copy), else `share` (virtio-fs).
 * `none` and `copy` VMs have no share, so they may be template clones.
 */
export function volumeMode(g: VmGlobal, spec: OciSpec): 'none' | 'copy' | 'share' {
  const v = spec.annotations?.[VOLUMES_ANNOTATION];
  return v === 'none' || v === 'copy' || v === 'share' ? v : g.volumes ?? 'share';
}

/**
 * `_vmd` flags: `--template-scope S` when templates are on (setting --template-sharing), `--volumes none|copy` for a VM without a share,
 * `--standby-vmm off` when the host's standby clone VMMs are off for this handler (--standby-vmm, standby-vmm.ts).
 */
export function templateFlags(g: VmGlobal, spec: OciSpec): string[] {
  const a = spec.annotations ?? {};
  const scope = templateScope(g.templateSharing, a[TRUST_LEVEL_ANNOTATION]);
  const mode = volumeMode(g, spec);
  return [...(scope ? ['--template-scope', scope] : []), ...(mode !== 'share' ? ['--volumes', mode] : []), ...(scope && g.standbyVmm === 'off' ? ['--standby-vmm', 'off'] : [])];
}

/** A container with volumes in a pod whose VM is a template's clone (it has no share): refused, never dropped. */
export function refuseVolumesInClone(podId: string): never {
  throw new FailedPreconditionError(`the VM of pod ${podId} was started from a VM template without a volume share (the pod said ${VOLUMES_ANNOTATION}=none): a container with host paths or kubelet volumes needs a pod without that annotation, or with ${VOLUMES_ANNOTATION}=copy (its volumes copied in)`);
}
