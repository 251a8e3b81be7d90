// Every bulkhead-vm command, registered in one place: a name and a loader each, so a call loads only
// its own module (conmon and the daemon call `state`, `start`, `kill` often).
import type { VmCommand } from './common.ts';

type Loader = () => Promise<{ default: VmCommand }>;

const registry: [name: string, load: Loader][] = [
  ['create', () => import('./create.ts')],
  ['start', () => import('./start.ts')],
  ['state', () => import('./state.ts')],
  ['kill', () => import('./kill.ts')],
  ['delete', () => import('./delete.ts')],
  ['exec', () => import('./exec.ts')],
  ['stats', () => import('./stats.ts')],
  ['update', () => import('./update.ts')],
  ['features', () => import('./features.ts')],
  ['setup', () => import('./setup.ts')],
  ['version', () => import('./version.ts')],
  // internal: the pod supervisor bulkhead-vm starts itself (a container's is the C shim, ../shim.ts)
  ['_vmd', () => import('./vmd.ts')],
  ['_vmhost', () => import('./vmhost.ts')],
];

/** The command registered under `name`, loading only its module; undefined when there is none. */
export async function loadVmCommand(name: string): Promise<VmCommand | undefined> {
  const entry = registry.find(([n]) => n === name);
  return entry ? (await entry[1]()).default : undefined;
}

/** Every command (for help). */
export async function loadVmCommands(): Promise<VmCommand[]> {
  return (await Promise.all(registry.map(([, load]) => load()))).map((m) => m.default);
}
