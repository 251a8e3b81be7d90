// `bulkhead-vm _vmhost` (internal): the node-wide pod VM supervisor (`--supervisor node`). One
// Node.js process per --root hosts every pod VM's supervisor (../vmd.ts, one PodVmSupervisor each,
// each still serving its own <podDir>/vmd.sock, so clients and shims do not change), instead of one
// `_vmd` process per pod: an idle pod then costs the host process's share, not a Node.js runtime.
// The price is the blast radius: the VMMs die with their supervisor (setpriv --pdeathsig), so if
// this process dies every pod VM of the node goes, each container reporting why.
//
// `create` of a sandbox connects to <root>/vmhost.sock (starting this process when nothing answers)
// and sends `Q {op: "start", argv: [the _vmd flags]}`; the answer `A {pid}` comes once the VM is
// ready, `F {code, reason, message}` when it is not. The creator owns the start until then: its
// connection closing first (killed on its caller's timeout) abandons the start, as `_vmd` does when
// its creator goes. Idle (no pod, no connection) for IDLE_EXIT_MS, the host leaves.
import { createHash } from 'node:crypto';
import { appendFileSync, chmodSync, closeSync, statSync, writeSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { flushCompileCache } from 'node:module';
import { createServer, type Socket } from 'node:net';
import { join, resolve, sep } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError, toWire, UnavailableError } from '../../errors.ts';
import { createLogger } from '../../util/log.ts';
import { probeSocket } from '../../util/socket.ts';
import { sweepOrphanPods } from '../orphans.ts';
import { recordProc } from '../procs.ts';
import { StandbyVmms } from '../standby-vmm.ts';
import { encodeFrame, FrameDecoder, type Frame } from '../protocol.ts';
import { readyErrorLine, readyOkLine } from '../ready.ts';
import type { PodVmSupervisor } from '../vmd.ts';
import { hostSocket, type VmCommand } from './common.ts';
import { parseRuntimeFlags, str } from './flags.ts';
import { podSupervisor, VMD_FLAGS } from './vmd.ts';

export const IDLE_EXIT_MS = 10_000;
/** How long an `end` (a pod's forced delete) waits for the pod's supervisor to finish. */
const END_WAIT_MS = 3000;

const command: VmCommand = {
  name: '_vmhost',
  synopsis: 'bulkhead-vm _vmhost',
  summary: 'The node-wide pod VM supervisor (--supervisor node); reports readiness on fd 3',
  internal: true,
  flags: {},
  async run({ global: g }) {
    const sockPath = hostSocket(g.root);
    const ready = (line: string): void => { try { writeSync(3, line); closeSync(3); } catch { /* no creator */ } };
    const log = createLogger({ fields: { component: 'vmhost', pid: process.pid } });
    // One host of this root starts at a time: creates that found no host each start one, and the
    // probe, removal of a stale socket and listen below must not interleave (a second host's removal
    // took the first's fresh socket: its creator met ENOENT). The lock is an abstract unix socket,
    // gone with its process whatever kills it; it is held until this host listens (or leaves).
    const lock = createServer();
    const lockName = `\0bulkhead-vmhost-${createHash('sha256').update(resolve(g.root)).digest('hex').slice(0, 32)}`;
    for (const until = Date.now() + 30_000; ;) {
      const got = await new Promise<boolean>((res) => { lock.once('error', () => res(false)); lock.listen(lockName, () => res(true)); });
      if (got) break;
      // another host is starting: once it answers, it serves this root
      if (await probeSocket(sockPath) === 'answers') { ready(readyOkLine(process.pid)); return 0; }
      if (Date.now() > until) { ready(readyErrorLine(new UnavailableError(`another node-wide VM supervisor of ${g.root} is starting and did not answer within 30 s`))); return 1; }
      await new Promise((r) => setTimeout(r, 20));
    }
    // another host answers: it serves this root (this one was started in a race)
    if (await probeSocket(sockPath) === 'answers') { lock.close(); ready(readyOkLine(process.pid)); return 0; }
    await rm(sockPath, { force: true });
    const pods = new Map<string, PodVmSupervisor>();
    // a clone's QEMU spawned ahead per template recently cloned (standby-vmm.ts); they do not keep the host
    const standbys = new StandbyVmms({ root: g.root, log });
    const conns = new Set<Socket>();
    let idle: NodeJS.Timeout | undefined;
    let finish: (code: number) => void = () => {};
    const done = new Promise<number>((r) => { finish = r; });
    const server = createServer((c) => accept(c));
    const ours = (): boolean => { try { return statSync(sockPath).ino === ino; } catch { return false; } };
    let ino = 0;
    let gone = false;
    /** Asked to leave (`leave`): goes once idle, without IDLE_EXIT_MS. */
    let leaveWhenIdle = false;
    const leave = (code: number): void => {
      gone = true;
      if (idle) { clearTimeout(idle); idle = undefined; }
      server.close();
      if (ours()) void rm(sockPath, { force: true });
      // no forced exit: what still runs (a template build another pod may wait for) finishes first;
      // the standby VMMs end and their directories go before the host does
      void standbys.close().finally(() => finish(code));
    };
    const checkIdle = (): void => {
      if (idle) { clearTimeout(idle); idle = undefined; }
      if (pods.size || conns.size || gone) return;
      if (leaveWhenIdle) { log.info('asked to leave, no pod VM and no client left: leaving'); leave(0); return; }
      idle = setTimeout(() => { if (!pods.size && !conns.size) { log.info('no pod VM left: leaving'); leave(0); } }, IDLE_EXIT_MS);
    };
    const podsRoot = resolve(g.root, 'pods') + sep;

    const podDirOf = (op: string, p: unknown): string => {
      const podDir = resolve(typeof p === 'string' ? p : '');
      if (!podDir.startsWith(podsRoot) || podDir.slice(podsRoot.length).includes(sep)) throw new InvalidArgumentError(`${op}: the pod dir must be a directory of ${podsRoot}`);
      return podDir;
    };

    async function startPod(conn: Socket, reqId: number, argv: unknown): Promise<void> {
      if (!Array.isArray(argv) || !argv.every((a) => typeof a === 'string')) throw new InvalidArgumentError('start: argv must be a list of strings');
      const flags = parseRuntimeFlags(argv, VMD_FLAGS, Infinity).flags;
      const podDir = podDirOf('start', str(flags, 'pod-dir'));
      if (pods.has(podDir)) throw new InvalidArgumentError(`start: the pod VM of ${podDir} is already hosted here`);
      leaveWhenIdle = false;
      // the pod's supervisor, recorded before it spawns anything: a VMM of this pod with no live
      // supervisor is an orphan (orphans.ts); `host`, unlike `vmd`, is never ended by a pod's delete
      try { recordProc(podDir, 'host', process.pid); } catch (e) {
        throw new FailedPreconditionError(`start: cannot record the node-wide VM supervisor in ${podDir} (${(e as NodeJS.ErrnoException).code ?? 'error'}); create makes the pod dir first`);
      }
      const vmdLog = join(podDir, 'vmd.log');
      const plog = createLogger({ write: (l) => appendFileSync(vmdLog, l + '\n'), fields: { component: 'vmd', pod: str(flags, 'pod') } });
      const sup = await podSupervisor(g, flags, plog, standbys);
      pods.set(podDir, sup);
      checkIdle();
      let settled = false;
      const abandon = (): void => {
        if (settled) return;
        settled = true;
        void sup.abortStart('its creator (bulkhead-vm create) went away before the VM was ready');
      };
      conn.once('close', abandon);
      void sup.finished().then((code) => {
        pods.delete(podDir);
        log.info('pod VM ended', { podDir, code });
        checkIdle();
        // ended before it was ready (a forced delete's `end`): its creator hears it now, not when the start unwinds
        if (settled) return;
        settled = true;
        conn.off('close', abandon);
        if (!conn.destroyed) conn.write(encodeFrame('F', reqId, JSON.stringify(toWire(new UnavailableError('the pod VM was ended before it was ready (its sandbox was deleted)', { reason: 'BH_VM_GONE' })))));
      });
      try {
        await sup.start();
      } catch (e) {
        if (settled) return; // abandoned or ended meanwhile: the creator is gone or was told
        settled = true;
        pods.delete(podDir);
        checkIdle();
        throw e;
      }
      if (settled) return; // abandoned meanwhile: abortStart ends it
      settled = true;
      conn.off('close', abandon);
      await writeFile(join(podDir, 'vmd.pid'), String(process.pid));
      if (!conn.destroyed) conn.write(encodeFrame('A', reqId, JSON.stringify({ pid: process.pid })));
      flushCompileCache();
    }

    /**
     * A pod's forced delete (cmd/delete.ts): its supervisor ends the VM now, a start under way
     * included (no VMM may be spawned for it after this answers), bounded by END_WAIT_MS.
     */
    async function endPod(dir: unknown, reason: unknown): Promise<{ hosted: boolean; ended: boolean }> {
      const sup = pods.get(podDirOf('end', dir));
      if (!sup) return { hosted: false, ended: true };
      const why = typeof reason === 'string' ? reason.slice(0, 200) : 'the pod was deleted';
      const ended = await Promise.race([sup.end(why).then(() => sup.finished()).then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), END_WAIT_MS))]);
      return { hosted: true, ended };
    }

    function accept(conn: Socket): void {
      conns.add(conn);
      checkIdle();
      const dec = new FrameDecoder('vmhost client');
      conn.on('data', (b: Buffer) => {
        let frames: Frame[];
        try { frames = dec.push(b); } catch { conn.destroy(); return; }
        for (const f of frames) {
          if (f.type !== 'Q') { conn.destroy(); return; }
          let m: { op?: unknown; argv?: unknown; podDir?: unknown; reason?: unknown };
          try { m = JSON.parse(f.payload.toString('utf8')) as typeof m; } catch { conn.destroy(); return; }
          const fail = (e: unknown): void => { if (!conn.destroyed) conn.write(encodeFrame('F', f.id, JSON.stringify(toWire(e)))); };
          if (m.op === 'start') void startPod(conn, f.id, m.argv).catch(fail);
          else if (m.op === 'end') void endPod(m.podDir, m.reason).then((r) => { if (!conn.destroyed) conn.write(encodeFrame('A', f.id, JSON.stringify(r))); }, fail);
          else if (m.op === 'ping') conn.write(encodeFrame('A', f.id, JSON.stringify({ pid: process.pid, pods: pods.size, clients: conns.size, standbys: standbys.counts() })));
          else if (m.op === 'leave') {
            // its daemon closing (vmhost-client.ts): with no pod, it leaves as soon as no client is
            // connected (this one hangs up after the answer; a create's connection before its pod is
            // known here keeps it, and that create's start cancels the leave)
            const left = pods.size ? 'busy' : conns.size === 1 ? 'now' : 'idle';
            if (!pods.size) leaveWhenIdle = true;
            conn.end(encodeFrame('A', f.id, JSON.stringify({ left, pid: process.pid })));
          }
          else fail(new InvalidArgumentError(`unknown op ${String(m.op)}`));
        }
      });
      conn.on('error', () => {});
      conn.on('close', () => { conns.delete(conn); checkIdle(); });
    }

    const stopAll = (why: string): void => {
      void Promise.all([...pods.values()].map((p) => p.shutdown(why, false))).finally(() => leave(0));
    };
    process.on('SIGTERM', () => stopAll('the node-wide VM supervisor was terminated'));
    process.on('SIGINT', () => stopAll('the node-wide VM supervisor was interrupted'));
    // one pod's bug must not take every pod VM of the node with this process: logged, not fatal
    process.on('uncaughtException', (e) => { log.error('uncaught exception in the node-wide VM supervisor', { err: e instanceof Error ? e.stack ?? e.message : String(e) }); });
    process.on('unhandledRejection', (e) => { log.error('unhandled rejection in the node-wide VM supervisor', { err: e instanceof Error ? e.stack ?? e.message : String(e) }); });
    // tests widen the window between the probe above and this listen, where two hosts race (vmhost-race.test.ts)
    const raceMs = Number(process.env.BULKHEAD_VM_TEST_HOST_LISTEN_DELAY_MS) || 0;
    if (raceMs > 0) await new Promise((r) => setTimeout(r, Math.min(raceMs, 5000)));
    try {
      await new Promise<void>((res, rej) => { server.once('error', rej); server.listen(sockPath, () => res()); });
      chmodSync(sockPath, 0o600);
      ino = statSync(sockPath).ino;
    } catch (e) {
      // two creates that found no host each started one: the other bound the socket between this
      // one's probe and its listen. It serves the root; this one reports ready and goes
      if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') {
        for (let i = 0; i < 20; i++) {
          if (await probeSocket(sockPath) === 'answers') { server.close(); lock.close(); ready(readyOkLine(process.pid)); return 0; }
          await new Promise((r) => setTimeout(r, 25));
        }
      }
      lock.close();
      ready(readyErrorLine(new UnavailableError(`the node-wide VM supervisor cannot listen on ${sockPath}: ${(e as Error).message}`)));
      return 1;
    }
    lock.close();
    log.info('node-wide VM supervisor up', { socket: sockPath });
    ready(readyOkLine(process.pid));
    checkIdle();
    // a host that died (and its pods' VMMs with it, normally): whatever of its pods still runs unowned goes now
    void sweepOrphanPods(resolve(g.root, 'pods'), new Set(pods.keys()), log).catch((e: unknown) => log.warn('orphan sweep failed', { err: (e as Error).message }));
    void standbys.sweep().catch((e: unknown) => log.warn('standby VMM sweep failed', { err: (e as Error).message }));
    return await done;
  },
};
export default command;
