/**
 * The registry of backend kinds: the one list of the kinds Bulkhead has (config
 * `backend = "..."`), each with its factory and its isolation class. Everything else that needs
 * the kinds (the daemon's default handlers, the policy's cluster-side catalog, diagnostics)
 * derives them from here; adding a backend is one entry here plus its folder and its tests.
 * src/runtime/backends.test.ts checks that every kind's instances report the isolation listed.
 */
import type { Backend, BackendOptions, Isolation } from './backend.ts';
import { CrunBackend } from './crun/crun-backend.ts';
import { GvisorBackend } from './gvisor/gvisor-backend.ts';
import { RuncBackend } from './runc/runc-backend.ts';
import { MicrovmBackend } from './microvm/microvm-backend.ts';
import { StrictBackend } from './strict/strict-backend.ts';
import { kataHostChecks, kataMissing, ShimV2Backend } from './shimv2/shimv2-backend.ts';

interface BackendKind {
  /** The isolation class of the kind's backends (what the policy reasons about without a node). */
  isolation: Isolation;
  create(opts: BackendOptions): Backend;
  /** A handler of this name is in the default config. */
  configured?: boolean;
  /** In the catalog of shipped handlers the cluster-side parts assume (webhook, manifests). */
  catalog?: boolean;
  /** The host program the kind runs (`bulkhead doctor` checks it) and how to install it. */
  tool?: { name: string; bin: string; install: string };
}

const KINDS: Readonly<Record<string, BackendKind>> = {
  runc: { isolation: 'process', create: (o) => new RuncBackend(o), configured: true, catalog: true, tool: { name: 'runc', bin: 'runc', install: 'apt-get install runc' } },
  crun: { isolation: 'process', create: (o) => new CrunBackend(o), configured: true, tool: { name: 'crun', bin: 'crun', install: 'apt-get install crun' } },
  strict: { isolation: 'strict', create: (o) => new StrictBackend(o, 'enforce', 'eperm'), configured: true, catalog: true },
  'strict-kill': { isolation: 'strict', create: (o) => new StrictBackend(o, 'enforce', 'kill') },
  // a training run is runc with the default profile
  'strict-learn': { isolation: 'process', create: (o) => new StrictBackend(o, 'learn'), configured: true },
  gvisor: { isolation: 'user-kernel', create: (o) => new GvisorBackend(o), configured: true, catalog: true, tool: { name: 'runsc', bin: 'runsc', install: 'apt-get install runsc (gVisor)' } },
  runsc: { isolation: 'user-kernel', create: (o) => new GvisorBackend(o) },
  // containerd shim v2 (./shimv2/): any shim a handler names (`binary = "io.containerd.x.v2"` or a
  // path) is ranked 'process', the weakest class, whatever it claims; the shims Bulkhead knows have
  // their own kinds with their isolation
  shimv2: { isolation: 'process', create: (o) => new ShimV2Backend(o, { name: 'shimv2', isolation: 'process', defaultShim: 'io.containerd.runc.v2', hosted: false }) },
  'runc-shim': {
    isolation: 'process', create: (o) => new ShimV2Backend(o, { name: 'runc-shim', isolation: 'process', defaultShim: 'io.containerd.runc.v2', hosted: false }),
    configured: true, tool: { name: 'containerd-shim-runc-v2', bin: 'containerd-shim-runc-v2', install: 'apt-get install containerd' },
  },
  kata: {
    isolation: 'vm', create: (o) => new ShimV2Backend(o, { name: 'kata', isolation: 'vm', defaultShim: 'io.containerd.kata.v2', hosted: true, hostChecks: kataHostChecks }),
  },
  microvm: { isolation: 'vm', create: (o) => new MicrovmBackend(o), configured: true, catalog: true, tool: { name: 'qemu', bin: 'qemu-system-x86_64', install: 'apt-get install qemu-system-x86' } },
};

/** A backend of `kind`, or undefined for a kind Bulkhead does not have (the daemon reports the handler as unknown). */
export function createBackend(kind: string, opts: BackendOptions): Backend | undefined {
  return Object.hasOwn(KINDS, kind) ? KINDS[kind]!.create(opts) : undefined;
}

export function backendKinds(): string[] {
  return Object.keys(KINDS);
}

/** The isolation class of a kind's backends; undefined for an unknown kind. */
export function kindIsolation(kind: string): Isolation | undefined {
  return Object.hasOwn(KINDS, kind) ? KINDS[kind]!.isolation : undefined;
}

/** The kinds the default config has a handler for (of the same name). */
export function configuredKinds(): string[] {
  return Object.entries(KINDS).filter(([, k]) => k.configured).map(([name]) => name);
}

/** The shipped handlers the cluster-side parts assume, weakest first. */
export function catalogKinds(): { kind: string; isolation: Isolation }[] {
  return Object.entries(KINDS).filter(([, k]) => k.catalog).map(([kind, k]) => ({ kind, isolation: k.isolation }));
}

/** The host programs the kinds run, once each (for `bulkhead doctor`). */
export function kindTools(): { name: string; bin: string; install: string }[] {
  const out: { name: string; bin: string; install: string }[] = [];
  for (const k of Object.values(KINDS)) if (k.tool && !out.some((t) => t.bin === k.tool!.bin)) out.push(k.tool);
  return out;
}

/** What the `kata` kind lacks here (empty = ready), for `bulkhead doctor`. */
export function kataReadiness(): string[] {
  return kataMissing();
}
