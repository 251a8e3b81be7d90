import { podSuite } from './pod-suite.ts';

// the pod cases through the engine against Debian's containerd-shim-runc-v2 (src/runtime/shimv2/)
podSuite('runc-shim');
