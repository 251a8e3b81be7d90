import { podSuite } from './pod-suite.ts';

podSuite('gvisor', {
  todo: {
    'port-forward': 'about one forward in three comes back empty: port-forward execs busybox nc in the sandbox (runsc exec) although runsc runs with --network=host in the pod netns (issue #14: the pod strategy dials through the netns)',
  },
});
