// Every CLI command, registered in one place: a name and a loader each, so running one command
// loads only its own module (start-up time matters: `bulkhead run` is on the hot path).
import type { Command } from './command.ts';

type Loader = () => Promise<{ default: Command }>;

const registry: [name: string, load: Loader][] = [
  ['run', () => import('./run.ts')],
  ['ps', () => import('./ps.ts')],
  ['pods', () => import('./pods.ts')],
  ['logs', () => import('./logs.ts')],
  ['exec', () => import('./exec.ts')],
  ['stop', () => import('./stop.ts')],
  ['rm', () => import('./rm.ts')],
  ['inspect', () => import('./inspect.ts')],
  ['stats', () => import('./stats.ts')],
  ['port-forward', () => import('./port-forward.ts')],
  ['pull', () => import('./pull.ts')],
  ['images', () => import('./images.ts')],
  ['rmi', () => import('./rmi.ts')],
  ['load', () => import('./load.ts')],
  ['df', () => import('./df.ts')],
  ['system', () => import('./system.ts')],
  ['info', () => import('./info.ts')],
  ['doctor', () => import('./doctor.ts')],
  ['demo', () => import('./demo.ts')],
  ['report', () => import('./report.ts')],
  ['daemon', () => import('./daemon.ts')],
  ['policy', () => import('./policy.ts')],
  ['profile', () => import('./profile.ts')],
  ['webhook', () => import('./webhook.ts')],
  ['k8s', () => import('./k8s.ts')],
  ['version', () => import('./version.ts')],
];

/** The command registered under `name`, loading only its module; undefined when there is none. */
export async function loadCommand(name: string): Promise<Command | undefined> {
  const entry = registry.find(([n]) => n === name);
  return entry ? (await entry[1]()).default : undefined;
}

/** Every command (for help). */
export async function loadCommands(): Promise<Command[]> {
  return (await Promise.all(registry.map(([, load]) => load()))).map((m) => m.default);
}
