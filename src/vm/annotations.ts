/** Annotations the microVM runtime reads (a leaf module: the CLI imports it without the VM code). */

/** A pod annotation: "none" = the pod binds no volumes, so its VM needs no virtio-fs share and may be a template's clone (template.ts). */
export const VOLUMES_ANNOTATION = 'io.bulkhead.vm.volumes';
/** The pod's trust level on the sandbox's spec, set by the microvm backend from the pod's record (never by the pod). */
export const TRUST_LEVEL_ANNOTATION = 'io.bulkhead.vm.trust-level';
