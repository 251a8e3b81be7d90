import { podSuite } from './pod-suite.ts';

podSuite('runc', {
  todo: {
    'delete-order': 'namespaces-joined pods delete the pause container alongside their containers today (issue #14: the pod strategy removes the sandbox last)',
  },
});
