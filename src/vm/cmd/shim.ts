// `bulkhead-vm _shim` (internal): the supervisor of one container or exec'd process (see ../shim.ts).
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { runShim } from '../shim.ts';
import { checkId, containerDir, readRecord } from '../state.ts';
import type { VmCommand } from './common.ts';
import { str } from './flags.ts';

const command: VmCommand = {
  name: '_shim',
  synopsis: 'bulkhead-vm _shim --id ID [--exec FILE] [--pid-file FILE]',
  summary: 'A container\'s (or exec\'s) supervisor, started by create and exec; reports readiness on fd 3',
  internal: true,
  flags: { id: { type: 'string' }, exec: { type: 'string' }, 'pid-file': { type: 'string' } },
  async run({ global: g, flags }) {
    const id = checkId(str(flags, 'id'));
    const rec = await readRecord(g.root, id);
    const execFile = str(flags, 'exec');
    const pidFile = str(flags, 'pid-file');
    if (execFile) {
      const { kv } = JSON.parse(await readFile(execFile, 'utf8')) as { kv: [string, string][] };
      await rm(execFile, { force: true });
      return await runShim({ mode: 'exec', root: g.root, rec, kv, readyFd: 3, ...(pidFile ? { pidFile } : {}) });
    }
    const c = JSON.parse(await readFile(join(containerDir(g.root, id), 'create.json'), 'utf8')) as { kv: [string, string][]; image: string };
    return await runShim({ mode: 'container', root: g.root, rec, kv: c.kv, image: c.image, readyFd: 3 });
  },
};
export default command;
