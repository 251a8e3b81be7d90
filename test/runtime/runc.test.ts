import { RuncBackend } from '../../src/runtime/runc/runc-backend.ts';
import { backendSuite } from './backend-suite.ts';

backendSuite('runc', (o) => new RuncBackend(o), { kind: 'runc' });
