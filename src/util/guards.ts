/** Type guards for parsed input (JSON, TOML, YAML), which is hostile until checked. */

/** A plain object: not null, not an array (a JSON object, a TOML table). */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
