/**
 * The image service's own settings: the `[images]` table of the daemon config. The daemon keeps
 * the raw table (config.ts `sections`) and hands it to `parseImageConfig`, so this part owns its
 * keys, defaults and checks.
 *
 *   [images]
 *   reserve_bytes = "1GiB"        # pulls and loads keep at least this much free on the image fs
 *   reserve_percent = 5           # ... or this share of the fs, whichever is larger
 *   max_layer_bytes = "8GiB"      # uncompressed size of one layer (gzip bombs stop here)
 *   registry_timeout_ms = 30000   # one registry request: answer, and each stall of a body
 */
import { InvalidArgumentError } from '../errors.ts';

export interface ImageConfig {
  /** Bytes a pull or load leaves free on the image filesystem, at least. */
  reserveBytes: number;
  /** Percent of the image filesystem a pull or load leaves free, at least (the larger of the two counts). */
  reservePercent: number;
  /** Uncompressed bytes of one layer; never more than the free space above the reserve. */
  maxLayerBytes: number;
  /** Bound of one registry request (with its retries) until it answers, and of each stall of a blob body. */
  registryTimeoutMs: number;
}

const GiB = 1024 * 1024 * 1024;

export const DEFAULT_IMAGE_CONFIG: ImageConfig = {
  reserveBytes: GiB,
  reservePercent: 5,
  maxLayerBytes: 8 * GiB,
  registryTimeoutMs: 30_000,
};

/** Config key names, for messages ("setting [images] max_layer_bytes"). */
export const SETTING = {
  reserve: '[images] reserve_bytes / reserve_percent',
  maxLayerBytes: '[images] max_layer_bytes',
  registryTimeout: '[images] registry_timeout_ms',
} as const;

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12, kib: 1024, mib: 1024 ** 2, gib: GiB, tib: 1024 * GiB };

/** "8GiB", "512MiB", "1e9" or a number → bytes; InvalidArgument naming the key otherwise. */
export function parseSize(v: unknown, key: string): number {
  if (typeof v === 'number' || typeof v === 'bigint') {
    const n = Number(v);
    if (Number.isSafeInteger(n) && n >= 0) return n;
  } else if (typeof v === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
    const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
    if (m && unit !== undefined) {
      const n = Math.floor(Number(m[1]) * unit);
      if (Number.isSafeInteger(n)) return n;
    }
  }
  throw new InvalidArgumentError(`config: images.${key} must be a byte size such as 8GiB, 512MiB or a number of bytes`);
}

/** The `[images]` table (undefined = all defaults). Unknown keys and bad values are errors. */
export function parseImageConfig(raw: unknown): ImageConfig {
  const cfg = { ...DEFAULT_IMAGE_CONFIG };
  if (raw === undefined) return cfg;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new InvalidArgumentError('config: images must be a table');
  const t = raw as Record<string, unknown>;
  const allowed = ['reserve_bytes', 'reserve_percent', 'max_layer_bytes', 'registry_timeout_ms'];
  for (const k of Object.keys(t)) if (!allowed.includes(k)) throw new InvalidArgumentError(`config: unknown key images.${k} (allowed: ${allowed.join(', ')})`);
  if (t.reserve_bytes !== undefined) cfg.reserveBytes = parseSize(t.reserve_bytes, 'reserve_bytes');
  if (t.max_layer_bytes !== undefined) {
    cfg.maxLayerBytes = parseSize(t.max_layer_bytes, 'max_layer_bytes');
    if (cfg.maxLayerBytes < 1024 * 1024) throw new InvalidArgumentError('config: images.max_layer_bytes must be at least 1MiB');
  }
  if (t.reserve_percent !== undefined) {
    const p = Number(t.reserve_percent);
    if (typeof t.reserve_percent !== 'number' && typeof t.reserve_percent !== 'bigint' || !(p >= 0 && p < 100)) throw new InvalidArgumentError('config: images.reserve_percent must be a number from 0 to 99');
    cfg.reservePercent = p;
  }
  if (t.registry_timeout_ms !== undefined) {
    const n = Number(t.registry_timeout_ms);
    if (typeof t.registry_timeout_ms !== 'number' && typeof t.registry_timeout_ms !== 'bigint' || !Number.isSafeInteger(n) || n < 100 || n > 3_600_000) {
      throw new InvalidArgumentError('config: images.registry_timeout_ms must be an integer from 100 to 3600000');
    }
    cfg.registryTimeoutMs = n;
  }
  return cfg;
}

/** Bytes the image filesystem must keep free: the larger of reserve_bytes and reserve_percent of its size. */
export function reserveFor(cfg: ImageConfig, fsTotalBytes: number): number {
  return Math.max(cfg.reserveBytes, Math.ceil(fsTotalBytes * cfg.reservePercent / 100));
}
