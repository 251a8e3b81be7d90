/** Where Bulkhead keeps state, run-time files, its socket and its config, unless told otherwise. */
import { join } from 'node:path';

export interface Paths {
  root: string;
  runDir: string;
  socket: string;
  config: string;
}

export function defaultPaths(env: NodeJS.ProcessEnv): Paths {
  const root = env.BULKHEAD_ROOT ?? '/var/lib/bulkhead';
  const runDir = env.BULKHEAD_RUN_DIR ?? '/run/bulkhead';
  return {
    root,
    runDir,
    socket: env.BULKHEAD_SOCKET ?? join(runDir, 'cri.sock'),
    config: env.BULKHEAD_CONFIG ?? '/etc/bulkhead/config.toml',
  };
}
