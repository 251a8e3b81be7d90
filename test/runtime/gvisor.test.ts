import { GvisorBackend } from '../../src/runtime/gvisor/gvisor-backend.ts';
import { backendSuite } from './backend-suite.ts';

backendSuite('gvisor', (o) => new GvisorBackend(o), {
  kind: 'gvisor',
  skip: {
    // the sandbox's own threads (Sentry, gofer) count against the pod cgroup's pids limit
    'pids-limit': 'gVisor: the sandbox process tree, not the app, is what the host pids cgroup counts',
  },
});
