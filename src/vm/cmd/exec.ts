// `bulkhead-vm exec`: runs a process in a running container, from --process FILE or the arguments after ID.
import { spawn } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError } from '../../errors.ts';
import type { OciProcess } from '../../oci/spec.ts';
import { loadGuestAssets } from '../assets.ts';
import { shimArgv, VM_GONE_EXIT } from '../shim.ts';
import { processKv, readBundleSpec } from '../spec.ts';
import { checkId, containerDir, readRecord, status } from '../state.ts';
import { closeReadyPipe, readyLine, spawnDetached, type VmCommand } from './common.ts';
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
    const assets = await loadGuestAssets(g.assetsRoot);
    const tty = proc.terminal === true;
    // the session request, read (and removed) by the exec's shim
    const request = join(containerDir(g.root, id), `exec-${process.pid}-${Date.now()}.json`);
    await writeFile(request, JSON.stringify({ op: 'exec', name: id, kv }), { mode: 0o600 });
    const launch = { mode: 'exec', shim: assets.shim, podDir: rec.podDir, request, removeRequest: true, tty, ...(pidFile ? { pidFile } : {}) } as const;
    if (!detach && !tty) {
      // in the foreground: the shim has our stdio, says its own errors on stderr, and dies with us
      const shim = shimArgv({ ...launch, parent: process.pid });
      const child = spawn(assets.shim, shim.args, { cwd: shim.cwd, stdio: 'inherit' });
      return await new Promise<number>((r) => {
        child.once('error', (e) => { process.stderr.write(`bulkhead-vm: cannot start ${assets.shim}: ${e.message}\n`); void rm(request, { force: true }); r(126); });
        child.once('exit', (code) => r(code ?? VM_GONE_EXIT));
      });
    }
    const shim = shimArgv({ ...launch, readyFd: 3 });
    let child: ReturnType<typeof spawn>;
    const consoleSocket = str(flags, 'console-socket');
    if (tty && consoleSocket) {
      const cs = proc.consoleSize;
      child = spawnDetached([consoleSocket, String(cs?.height ?? 24), String(cs?.width ?? 80), '--', assets.shim, ...shim.args], ['ignore', 'ignore', 'inherit', 'pipe'], assets.consoleHelper, shim.cwd);
    } else {
      child = spawnDetached(shim.args, ['inherit', 'inherit', 'inherit', 'pipe'], assets.shim, shim.cwd);
    }
    child.on('error', () => { void rm(request, { force: true }); });
    try {
      await readyLine(child, 'exec supervisor', 60_000);
    } finally {
      closeReadyPipe(child);
      if (detach) child.unref();
    }
    if (detach) return 0;
    return await new Promise<number>((r) => child.once('exit', (code) => r(code ?? VM_GONE_EXIT)));
  },
};
export default command;
