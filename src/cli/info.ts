// `bulkhead info`: the daemon's paths, handlers and warm pools.
import type { Command } from './command.ts';
import { withClient } from './client.ts';
import { table, writeJson } from './format.ts';

const command: Command = {
  name: 'info',
  synopsis: 'bulkhead info [--json]',
  summary: 'Show the daemon: version, paths, handlers, warm pools (levels, hits, misses)',
  flags: {},
  async run(ctx) {
    return await withClient(ctx, async (client) => {
      const info = await client.info();
      if (ctx.global.json) { writeJson(ctx.stdout, info); return 0; }
      const out = ctx.stdout;
      out.write(`Version:   ${info.version} (pid ${info.pid})\nSocket:    ${info.socket}\nRoot:      ${info.root}\nRun dir:   ${info.runDir}\nConfig:    ${info.config || '(defaults)'}\n`);
      out.write('\nHandlers\n');
      out.write(table(['HANDLER', 'BACKEND', 'ISOLATION', 'WORKS'], info.handlers.map((h) => [
        h.name + (h.isDefault ? ' (default)' : ''), h.backend, h.isolation, h.available ? 'yes' : `NO: ${h.reason}`,
      ])));
      const pools = info.warmPools ?? [];
      out.write('\nWarm pools\n');
      if (pools.length === 0) out.write('  none configured ([pools] in the daemon config)\n');
      else {
        out.write(table(['HANDLER', 'LEVEL', 'READY', 'TARGET', 'FILLING', 'HITS', 'MISSES', 'FAILURES', 'LAST MISS'], pools.map((p) => [
          p.handler, p.level || '-', String(p.ready), String(p.target), String(p.filling), String(p.hits), String(p.misses), String(p.failures),
          p.lastMiss + (p.lastError ? ` (last error: ${p.lastError})` : ''),
        ])));
      }
      return 0;
    });
  },
};
export default command;
