/**
 * Image references as docker and crictl accept them:
 *   busybox                          → docker.io/library/busybox:latest
 *   localhost:5000/a/b:tag           → localhost:5000/a/b:tag
 *   name@sha256:<64 hex>             → pinned by digest (no tag)
 *   name:tag@sha256:<64 hex>         → the digest wins; the tag is kept for display
 * Parsing is pure; invalid input throws InvalidArgumentError saying what is wrong.
 */
import { InvalidArgumentError } from '../errors.ts';

export const DEFAULT_DOMAIN = 'docker.io';
const LEGACY_DOMAINS = new Set(['index.docker.io', 'registry-1.docker.io']);

export interface ImageReference {
  /** Registry host, possibly with port: "docker.io", "127.0.0.1:5000". */
  domain: string;
  /** Repository path inside the registry: "library/busybox". */
  path: string;
  tag?: string;
  /** "sha256:<hex>" */
  digest?: string;
}

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const MAX_NAME = 255;

function validDomain(d: string): boolean {
  let host = d;
  const ipv6 = /^\[[0-9a-fA-F:.]+\](?::(\d+))?$/.exec(d);
  if (ipv6) return ipv6[1] === undefined || Number(ipv6[1]) <= 65535;
  const colon = d.lastIndexOf(':');
  if (colon >= 0) {
    const port = d.slice(colon + 1);
    if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) return false;
    host = d.slice(0, colon);
  }
  return host.length > 0 && host.split('.').every((c) => DOMAIN_COMPONENT.test(c));
}

/** Parses and normalises a reference. Throws InvalidArgumentError. */
export function parseReference(input: string): ImageReference {
  const s = input.trim();
  if (s === '') throw new InvalidArgumentError('image reference is empty');
  if (s.length > 4096) throw new InvalidArgumentError('image reference is too long');
  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) {
      if (/^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(digest) && !digest.startsWith('sha256:')) {
        throw new InvalidArgumentError(`image reference "${input}": unsupported digest algorithm (only sha256)`);
      }
      throw new InvalidArgumentError(`image reference "${input}": invalid digest "${digest}" (want sha256:<64 lowercase hex>)`);
    }
  }
  let tag: string | undefined;
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new InvalidArgumentError(`image reference "${input}": invalid tag "${tag}"`);
  }
  if (rest === '') throw new InvalidArgumentError(`image reference "${input}": missing repository name`);
  let domain = DEFAULT_DOMAIN;
  let path = rest;
  const first = rest.indexOf('/');
  if (first >= 0) {
    const head = rest.slice(0, first);
    if (head.includes('.') || head.includes(':') || head === 'localhost' || head.startsWith('[')) {
      domain = head;
      path = rest.slice(first + 1);
      if (!validDomain(domain)) throw new InvalidArgumentError(`image reference "${input}": invalid registry host "${domain}"`);
    } else if (head !== head.toLowerCase() && /[A-Z]/.test(head)) {
      throw new InvalidArgumentError(`image reference "${input}": repository name must be lowercase`);
    }
  }
  if (LEGACY_DOMAINS.has(domain)) domain = DEFAULT_DOMAIN;
  if (path === '') throw new InvalidArgumentError(`image reference "${input}": missing repository name`);
  if (/[A-Z]/.test(path)) throw new InvalidArgumentError(`image reference "${input}": repository name must be lowercase`);
  for (const c of path.split('/')) {
    if (!PATH_COMPONENT.test(c)) throw new InvalidArgumentError(`image reference "${input}": invalid repository path component "${c}"`);
  }
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = `library/${path}`;
  if (`${domain}/${path}`.length > MAX_NAME) throw new InvalidArgumentError(`image reference "${input}": repository name longer than ${MAX_NAME} characters`);
  if (tag === undefined && digest === undefined) tag = 'latest';
  const ref: ImageReference = { domain, path };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** "docker.io/library/busybox" */
export function repositoryName(ref: ImageReference): string {
  return `${ref.domain}/${ref.path}`;
}

/** Canonical string: name:tag, name@digest or name:tag@digest. */
export function formatReference(ref: ImageReference): string {
  let s = repositoryName(ref);
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** The name an image is stored under: name:tag, or name@digest when pulled by digest only. */
export function tagName(ref: ImageReference): string | undefined {
  return ref.tag !== undefined && ref.digest === undefined ? `${repositoryName(ref)}:${ref.tag}` : undefined;
}

/** True when the string is a (possibly "sha256:"-prefixed) hex ID or ID prefix rather than a name. */
export function looksLikeId(s: string): boolean {
  return /^(sha256:)?[a-f0-9]{6,64}$/.test(s);
}
