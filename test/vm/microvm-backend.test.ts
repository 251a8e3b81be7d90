// The runtime layer's conformance suite against the microvm backend (conmon + bulkhead-vm + QEMU).
// Every sandbox case boots its own VM (TCG here), so this file is slow; cases that do not apply say why.
import { MicrovmBackend } from '../../src/runtime/microvm/microvm-backend.ts';
import { backendSuite } from '../runtime/backend-suite.ts';
import { ASSETS } from './helpers.ts';

// The survives-creator case builds the backend in a separate process from the handler kind alone
// (no options): it finds the assets through $BULKHEAD_VM_ASSETS, which that process inherits.
process.env.BULKHEAD_VM_ASSETS = ASSETS;

backendSuite('microvm', (o) => new MicrovmBackend({ ...o, assetsRoot: ASSETS }), {
  kind: 'microvm',
  skip: {
    oom: 'microvm: the OOM kill happens in the guest; conmon reads oomKilled from the host cgroup (guest OOM is covered by test/vm/bulkhead-vm.test.ts)',
    update: 'microvm: resources of a running VM container cannot be changed (bulkhead-vm update is refused)',
  },
});
