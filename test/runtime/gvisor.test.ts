import { GvisorBackend } from '../../src/runtime/gvisor/gvisor-backend.ts';
import { backendSuite } from './backend-suite.ts';

backendSuite('gvisor', (o) => new GvisorBackend(o), {
  kind: 'gvisor',
  skip: {
    // KNOWN GAP (runsc 0.0~20221219): --oci-seccomp installs the profile only on the container's
    // init task; `runsc exec` starts processes without it (Seccomp: 0, unshare succeeds with
    // CAP_SYS_ADMIN). The 'seccomp' case shows the profile enforced on the container process.
    'seccomp-exec': 'known gap: runsc 2022 does not apply the OCI seccomp profile to exec\'d processes',
    // KNOWN GAP (runtime layer): DeadlineExceeded is raised, but the exec'd process survives inside the sandbox
    'exec-timeout': 'known gap: a timed-out exec is not yet killed inside the gVisor sandbox',
    // the sandbox's own threads (Sentry, gofer) count against the pod cgroup's pids limit
    'pids-limit': 'gVisor: the sandbox process tree, not the app, is what the host pids cgroup counts',
  },
});
