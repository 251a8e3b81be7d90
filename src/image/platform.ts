/** Which manifest of a multi-platform index fits this host. */
import { MediaTypes } from './registry/client.ts';

export interface Descriptor { mediaType: string; digest: string; size: number; platform?: { os?: string; architecture?: string; variant?: string } }
export interface Manifest { schemaVersion?: number; mediaType?: string; config?: Descriptor; layers?: Descriptor[]; manifests?: Descriptor[] }

export const MANIFEST_TYPES = new Set<string>([MediaTypes.ociManifest, MediaTypes.dockerManifest]);

export function hostPlatform(): { os: string; architecture: string; variant?: string } {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  const architecture = map[process.arch] ?? process.arch;
  return architecture === 'arm64' ? { os: 'linux', architecture, variant: 'v8' } : { os: 'linux', architecture };
}

/** Picks the manifest for `want` from an index: exact variant first, then one without variant, then any. */
export function selectPlatform(index: Manifest, want: { os: string; architecture: string; variant?: string }): Descriptor | undefined {
  const list = (index.manifests ?? []).filter((d) => d.platform?.os === want.os && d.platform?.architecture === want.architecture && MANIFEST_TYPES.has(d.mediaType));
  return list.find((d) => want.variant !== undefined && d.platform?.variant === want.variant)
    ?? list.find((d) => !d.platform?.variant)
    ?? list[0];
}

