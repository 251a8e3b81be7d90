// Every CLI command, registered in one place. Add a line per command file.
import type { Command } from './command.ts';

export async function loadCommands(): Promise<Command[]> {
  const mods = await Promise.all([
    import('./run.ts'),
    import('./ps.ts'),
    import('./pods.ts'),
    import('./logs.ts'),
    import('./exec.ts'),
    import('./stop.ts'),
    import('./rm.ts'),
    import('./inspect.ts'),
    import('./stats.ts'),
    import('./pull.ts'),
    import('./images.ts'),
    import('./rmi.ts'),
    import('./load.ts'),
    import('./doctor.ts'),
    import('./demo.ts'),
    import('./daemon.ts'),
    import('./policy.ts'),
    import('./webhook.ts'),
    import('./k8s.ts'),
    import('./version.ts'),
  ]);
  return mods.map((m) => m.default);
}
