// The flags that come before the command name, and where the command name is: shared by main.ts and
// the process entry (entry.ts), which picks the bundled `run` path by the name before main loads.

export const globalFlags = {
  root: { type: 'string' },
  'run-dir': { type: 'string' },
  socket: { type: 'string' },
  config: { type: 'string' },
  json: { type: 'boolean' },
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Index of the command name in `argv` (after the global flags and their values); argv.length if none. */
export function commandIndex(argv: readonly string[]): number {
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-')) {
    const a = argv[i]!;
    const spec = globalFlags[a.replace(/^--?/, '').split('=')[0] as keyof typeof globalFlags];
    i += spec && spec.type === 'string' && !a.includes('=') ? 2 : 1;
  }
  return i;
}
