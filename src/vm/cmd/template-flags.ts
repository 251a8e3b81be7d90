// What `create` of a sandbox tells the pod supervisor about VM templates (../template.ts), from the sandbox's spec.
import { FailedPreconditionError } from '../../errors.ts';
import type { OciSpec } from '../../oci/spec.ts';
import { TRUST_LEVEL_ANNOTATION, VOLUMES_ANNOTATION } from '../annotations.ts';
import { templateScope } from '../template-sharing.ts';
import type { VmGlobal } from './global.ts';


/** `_vmd` flags: `--template-scope S` when templates are on (setting --template-sharing), `--volumes none` when the pod says so. */
export function templateFlags(g: VmGlobal, spec: OciSpec): string[] {
  const a = spec.annotations ?? {};
  const scope = templateScope(g.templateSharing, a[TRUST_LEVEL_ANNOTATION]);
  return [...(scope ? ['--template-scope', scope] : []), ...(a[VOLUMES_ANNOTATION] === 'none' ? ['--volumes', 'none'] : [])];
}

/** A container with volumes in a pod whose VM is a template's clone (it has no share): refused, never dropped. */
export function refuseVolumesInClone(podId: string): never {
  throw new FailedPreconditionError(`the VM of pod ${podId} was started from a VM template without a volume share (the pod said ${VOLUMES_ANNOTATION}=none): a container with host paths or kubelet volumes needs a pod without that annotation`);
}
