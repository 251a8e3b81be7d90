// The pod conformance suite (test/runtime/pod-suite.ts) against the microvm handler with every pod a
// clone of a VM template (src/vm/template.ts): the pods say they bind no volumes
// (io.bulkhead.vm.volumes=none), so after the first pod built the template each pod VM is restored,
// not booted. The volumes case is the refusal's (test/vm/template.test.ts): a clone has no share.
import { podSuite } from '../runtime/pod-suite.ts';
import { skipReason } from '../../harness/vm-assets.ts';

const skip = skipReason();
const all = ['shared-ipc', 'shared-uts-net', 'pid-container', 'pid-pod', 'pid-target', 'delete-order', 'port-forward'] as const;
podSuite('microvm', {
  variant: 'template clones',
  timeoutMs: 600_000,
  podAnnotations: { 'io.bulkhead.vm.volumes': 'none' },
  skip: {
    volumes: 'a template clone has no volume share: a container with volumes is refused (test/vm/template.test.ts)',
    ...(skip ? Object.fromEntries(all.map((c) => [c, skip])) : {}),
  },
});
