import { podSuite } from './pod-suite.ts';

// skipped with crun's own reason where its probe fails (a cgroup v1 hybrid host)
podSuite('crun');
