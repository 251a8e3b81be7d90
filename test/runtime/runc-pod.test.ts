import { podSuite } from './pod-suite.ts';

podSuite('runc');
