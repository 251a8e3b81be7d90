// `bulkhead-vm exec`: runs a process in a running container, from --process FILE or the arguments after ID.
import type { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError } from '../../errors.ts';
import type { OciProcess } from '../../oci/spec.ts';
import { loadGuestAssets } from '../assets.ts';
import { runShim } from '../shim.ts';
import { processKv, readBundleSpec } from '../spec.ts';
import { checkId, containerDir, readRecord, status } from '../state.ts';
import { CLI, closeReadyPipe, NODE_ARGS, readyLine, spawnDetached, type VmCommand } from './common.ts';
import { bool, list, str } from './flags.ts';

const command: VmCommand = {
  name: 'exec',
  synopsis: 'bulkhead-vm exec [--process FILE | --env K=V --cwd DIR --user UID[:GID] --tty] [--detach] [--pid-file FILE] [--console-socket SOCKET] ID [COMMAND [ARG...]]',
  summary: 'Run a process in a running container (without --detach: exits with its exit code)',
  flags: {
    process: { type: 'string', short: 'p' },
    'pid-file': { type: 'string' },
    'console-socket': { type: 'string' },
    cwd: { type: 'string' },
    env: { type: 'string', short: 'e', multiple: true },
    user: { type: 'string', short: 'u' },
    tty: { type: 'boolean', short: 't' },
    detach: { type: 'boolean', short: 'd' },
    // runc's, accepted and not used: the guest applies the container's own profile
    'process-label': { type: 'string' },
    apparmor: { type: 'string' },
    cap: { type: 'string', short: 'c', multiple: true },
    'preserve-fds': { type: 'string' },
    cgroup: { type: 'string' },
  },
  byId: true,
  positionalsBeforeArgs: 1,
  async run({ global: g, flags, args }) {
    const id = checkId(args[0]);
    const rec = await readRecord(g.root, id);
    const st = await status(g.root, rec);
    if (st.status !== 'running') throw new FailedPreconditionError(`cannot exec in a ${st.status} container "${id}"`, { reason: 'BH_CONTAINER_NOT_RUNNING' });
    let proc: OciProcess;
    const pf = str(flags, 'process');
    if (pf) {
      proc = JSON.parse(await readFile(pf, 'utf8')) as OciProcess;
    } else {
      const spec = await readBundleSpec(rec.bundle);
      const user = str(flags, 'user');
      const [uid, gid] = user ? user.split(':').map(Number) : [spec.process!.user.uid, spec.process!.user.gid];
      proc = {
        args: args.slice(1), env: [...(spec.process!.env ?? []), ...list(flags, 'env')],
        cwd: str(flags, 'cwd') ?? spec.process!.cwd, user: { uid: uid ?? 0, gid: gid ?? 0 },
        terminal: bool(flags, 'tty'),
      };
    }
    if (!proc.args?.length) throw new InvalidArgumentError('exec: no command');
    const kv = processKv(proc).map(([k, v]) => [k, String(v)] as [string, string]);
    const detach = bool(flags, 'detach');
    const pidFile = str(flags, 'pid-file');
    if (!detach && !proc.terminal) {
      return await runShim({ mode: 'exec', root: g.root, rec, kv, readyFd: -1, ...(pidFile ? { pidFile } : {}) });
    }
    const tag = `exec-${process.pid}-${Date.now()}.json`;
    const file = join(containerDir(g.root, id), tag);
    await writeFile(file, JSON.stringify({ kv }), { mode: 0o600 });
    const shimArgs = [...NODE_ARGS, CLI, '--root', g.root, '_shim', '--id', id, '--exec', file, ...(pidFile ? ['--pid-file', pidFile] : [])];
    let child: ReturnType<typeof spawn>;
    const consoleSocket = str(flags, 'console-socket');
    if (proc.terminal && consoleSocket) {
      const assets = await loadGuestAssets(g.assetsRoot);
      const cs = proc.consoleSize;
      child = spawnDetached([consoleSocket, String(cs?.height ?? 24), String(cs?.width ?? 80), '--', process.execPath, ...shimArgs], ['ignore', 'ignore', 'inherit', 'pipe'], assets.consoleHelper);
    } else {
      child = spawnDetached(shimArgs, ['inherit', 'inherit', 'inherit', 'pipe']);
    }
    try {
      await readyLine(child, 'exec supervisor', 60_000);
    } finally {
      closeReadyPipe(child);
      if (detach) child.unref();
    }
    if (detach) return 0;
    return await new Promise<number>((r) => child.once('exit', (code) => r(code ?? 255)));
  },
};
export default command;
