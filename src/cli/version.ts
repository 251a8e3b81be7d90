import type { Command } from './command.ts';
import { readFileSync } from 'node:fs';

const command: Command = {
  name: 'version',
  synopsis: 'bulkhead version [--json]',
  summary: 'Print the Bulkhead version',
  flags: {},
  async run(ctx) {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    if (ctx.global.json) ctx.stdout.write(JSON.stringify({ version: pkg.version, node: process.version }) + '\n');
    else ctx.stdout.write(`bulkhead ${pkg.version} (Node.js ${process.version})\n`);
    return 0;
  },
};
export default command;
