// Every CLI command, registered in one place. Add a line per command file.
import type { Command } from './command.ts';

export async function loadCommands(): Promise<Command[]> {
  const mods = await Promise.all([
    import('./version.ts'),
  ]);
  return mods.map((m) => m.default);
}
