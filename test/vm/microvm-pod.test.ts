// The pod conformance suite (test/runtime/pod-suite.ts) against the microvm handler: one QEMU VM
// per pod (TCG here), so every case boots a VM.
import { podSuite } from '../runtime/pod-suite.ts';
import { skipReason } from '../../harness/vm-assets.ts';

const skip = skipReason();
podSuite('microvm', {
  timeoutMs: 600_000,
  ...(skip ? { skip: { 'shared-ipc': skip, 'shared-uts-net': skip, 'pid-container': skip, 'pid-pod': skip, 'pid-target': skip, 'delete-order': skip, 'port-forward': skip } } : {}),
});
