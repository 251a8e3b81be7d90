/**
 * Annotations between the engine and the strict backends. The engine writes the image's manifest
 * digest into every app container's spec from its own image record (a request cannot set it), and
 * copies the two strict annotations a container may ask with; the backend judges them.
 */

/** The image's manifest digest (set by the engine from the image record). */
export const IMAGE_DIGEST_ANNOTATION = 'io.bulkhead.image.manifest-digest';
/** The image's id (config digest), for messages. */
export const IMAGE_ID_ANNOTATION = 'io.bulkhead.image.id';
/** A name of the image from the image record (its first tag), for messages. */
export const IMAGE_NAME_ANNOTATION = 'io.bulkhead.image.name';
/** A profile file under the strict profile root to enforce instead of the learned one (container annotation). */
export const PROFILE_ANNOTATION = 'io.bulkhead.strict.profile';
/** `probe`: a training pod's probe container (run under the default profile, nothing learned). */
export const ROLE_ANNOTATION = 'io.bulkhead.strict.role';
/** `runc`: the pod's level allows running without a profile (strict_fallback); set by the engine from the stored decision only. */
export const FALLBACK_ANNOTATION = 'io.bulkhead.strict.fallback';

/** The spec annotations the engine adds to an app container's spec for the strict backends. */
export function strictSpecAnnotations(image: { id: string; manifestDigest?: string; repoTags?: string[] }, requested: Readonly<Record<string, string>> | undefined, fallback?: 'runc'): Record<string, string> {
  const out: Record<string, string> = { [IMAGE_ID_ANNOTATION]: image.id };
  if (fallback) out[FALLBACK_ANNOTATION] = fallback;
  if (image.manifestDigest) out[IMAGE_DIGEST_ANNOTATION] = image.manifestDigest;
  const name = image.repoTags?.[0];
  if (name) out[IMAGE_NAME_ANNOTATION] = name.slice(0, 512);
  for (const k of [PROFILE_ANNOTATION, ROLE_ANNOTATION]) {
    const v = requested?.[k];
    if (typeof v === 'string') out[k] = v.slice(0, 4096);
  }
  return out;
}
