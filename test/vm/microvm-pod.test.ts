// The pod conformance suite (test/runtime/pod-suite.ts) against the microvm handler: one QEMU VM
// per pod (TCG here), so every case boots a VM. Known gaps (issue #18) run as TODO.
import { podSuite } from '../runtime/pod-suite.ts';
import { skipReason } from '../../harness/vm-assets.ts';

const skip = skipReason();
podSuite('microvm', {
  timeoutMs: 600_000,
  ...(skip ? { skip: { 'shared-ipc': skip, 'shared-uts-net': skip, 'pid-container': skip, 'pid-pod': skip, 'pid-target': skip, 'delete-order': skip, 'port-forward': skip } } : {}),
  todo: {
    'shared-ipc': 'issue #18: the guest agent gives every container its own IPC namespace (a segment made in one is not seen by the other)',
    'pid-pod': 'issue #18: the guest agent gives every container its own PID namespace; PID POD (shareProcessNamespace) is not shared in the VM',
    'pid-target': 'issue #18: the guest agent cannot join a container to another\'s PID namespace (TARGET)',
  },
});
