// The pod conformance suite on strict-learn: a training run (runc + the default profile with every
// allowed call sent through the seccomp agent) must behave exactly like runc for pods.
import { podSuite } from './pod-suite.ts';

podSuite('strict-learn');
