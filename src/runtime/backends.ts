/**
 * Backend factory: handler kind (config `backend = "..."`) → Backend. Kinds without an
 * implementation here return undefined (the daemon reports the handler as unknown).
 * The microVM backend (src/runtime/microvm/) registers itself with one line in FACTORIES.
 */
import type { Backend, BackendOptions } from './backend.ts';
import { CrunBackend } from './crun/crun-backend.ts';
import { GvisorBackend } from './gvisor/gvisor-backend.ts';
import { RuncBackend } from './runc/runc-backend.ts';
import { MicrovmBackend } from './microvm/microvm-backend.ts';
import { StrictBackend } from './strict/strict-backend.ts';

const FACTORIES: Record<string, (opts: BackendOptions) => Backend> = {
  runc: (o) => new RuncBackend(o),
  gvisor: (o) => new GvisorBackend(o),
  runsc: (o) => new GvisorBackend(o),
  crun: (o) => new CrunBackend(o),
  microvm: (o) => new MicrovmBackend(o),
  strict: (o) => new StrictBackend(o, 'enforce', 'eperm'),
  'strict-kill': (o) => new StrictBackend(o, 'enforce', 'kill'),
  'strict-learn': (o) => new StrictBackend(o, 'learn'),
};

export function createBackend(kind: string, opts: BackendOptions): Backend | undefined {
  return FACTORIES[kind]?.(opts);
}

export function backendKinds(): string[] {
  return Object.keys(FACTORIES);
}
