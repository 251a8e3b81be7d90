/** Annotations the microVM runtime reads (a leaf module: the CLI imports it without the VM code). */

/**
 * A pod annotation: "none" = the pod binds no volumes, "copy" = its containers' volumes are copied
 * into the guest (copy-volumes.ts); either way its VM needs no virtio-fs share and may be a
 * template's clone (template.ts) or a warm-pool member.
 */
export const VOLUMES_ANNOTATION = 'io.bulkhead.vm.volumes';
/** The pod's trust level on the sandbox's spec, set by the microvm backend from the pod's record (never by the pod). */
export const TRUST_LEVEL_ANNOTATION = 'io.bulkhead.vm.trust-level';
/**
 * On a container spec, set by the engine (never from a request): JSON {staging point: real host path}
 * of its bind mounts, whose sources are the engine's staging points. Copied volumes (copy-volumes.ts)
 * tell a kubelet emptyDir and termination log by it.
 */
export const MOUNT_ORIGINS_ANNOTATION = 'io.bulkhead.mount-origins';
