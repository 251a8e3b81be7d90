// The backend conformance suite against the `runc-shim` kind: Debian's containerd-shim-runc-v2
// driven over ttrpc (src/runtime/shimv2/), output through Bulkhead's CRI log writer.
import { createBackend } from '../../src/runtime/backends.ts';
import { backendSuite } from './backend-suite.ts';

backendSuite('runc-shim', (o) => createBackend('runc-shim', o)!, { kind: 'runc-shim' });
