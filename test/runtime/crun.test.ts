import { CrunBackend } from '../../src/runtime/crun/crun-backend.ts';
import { backendSuite } from './backend-suite.ts';

backendSuite('crun', (o) => new CrunBackend(o), { kind: 'crun' });
