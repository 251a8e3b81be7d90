// `bulkhead-vm _vmd` (internal): the pod's VM supervisor (see ../vmd.ts), started by create of a sandbox container.
import { appendFileSync, closeSync, writeSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { flushCompileCache } from 'node:module';
import { join, resolve, sep } from 'node:path';
import { InvalidArgumentError } from '../../errors.ts';
import type { FlagSpec, FlagValues } from '../../util/command.ts';
import { createLogger, type Logger } from '../../util/log.ts';
import { liveStartTime } from '../../util/proc.ts';
import { loadGuestAssets } from '../assets.ts';
import { QemuVmm } from '../qemu.ts';
import { readyErrorLine, readyOkLine } from '../ready.ts';
import { TemplateStore } from '../template.ts';
import { readSandboxRequest } from '../template-sandbox.ts';
import { PodVmSupervisor } from '../vmd.ts';
import type { Accel, StandbyProvider } from '../vmm.ts';
import type { VmCommand } from './common.ts';
import { bool, parseRuntimeFlags, str } from './flags.ts';
import { trace } from '../trace.ts';
import type { VmGlobal } from './global.ts';

/** The pod's supervisor from `_vmd`'s flags (also what the node-wide host, vmhost.ts, runs per pod). */
export async function podSupervisor(g: VmGlobal, flags: FlagValues, log: Logger, standbys?: StandbyProvider): Promise<PodVmSupervisor> {
  const fc = str(flags, 'firecracker');
  const netns = str(flags, 'netns');
  const podDir = str(flags, 'pod-dir')!;
  const cpuQuota = str(flags, 'cpu-quota');
  const assets = await loadGuestAssets(g.assetsRoot);
  const scope = str(flags, 'template-scope');
  const bootTimeoutMs = Number(str(flags, 'boot-timeout'));
  // the sandbox's create request (template-sandbox.ts); unreadable = no sandbox container from a template
  const reqFile = str(flags, 'sandbox-request');
  const sandboxRequest = reqFile && scope && !fc ? await readSandboxRequest(reqFile).catch((e: unknown) => { log.warn('sandbox request not read', { reason: (e as Error).message }); return undefined; }) : undefined;
  return new PodVmSupervisor({
    podId: str(flags, 'pod')!, podDir, assets, vmm: fc ? new (await import('../firecracker.ts')).FirecrackerVmm(fc) : new QemuVmm(),
    accel: (str(flags, 'accel') ?? 'tcg') as Accel, memoryMiB: Number(str(flags, 'memory')), vcpus: Number(str(flags, 'vcpus')),
    bootTimeoutMs, cgroup: str(flags, 'cgroup') ?? '', logger: log,
    ...(cpuQuota ? { cpuQuota: Number(cpuQuota), cpuPeriod: Number(str(flags, 'cpu-period') ?? 100000) } : {}),
    ...(netns ? { netns } : {}),
    ...(scope && !fc ? { templates: new TemplateStore({ root: g.root, assets, scope, bootTimeoutMs }) } : {}),
    // none: the pod binds no volumes; copy: they are copied in (copy-volumes.ts); either way no share
    volumes: str(flags, 'volumes') !== 'none' && str(flags, 'volumes') !== 'copy',
    ...(sandboxRequest ? { sandbox: sandboxRequest } : {}),
    // a host's standby clone VMMs (standby-vmm.ts), unless the pod's handler turned them off
    ...(standbys && scope && !fc && str(flags, 'standby-vmm') !== 'off' ? { standbys } : {}),
  });
}

export const VMD_FLAGS: FlagSpec = Object.fromEntries(['pod', 'pod-dir', 'memory', 'vcpus', 'accel', 'boot-timeout', 'cgroup', 'cpu-quota', 'cpu-period', 'firecracker', 'netns', 'template-scope', 'volumes', 'sandbox-request', 'standby-vmm'].map((k) => [k, { type: 'string' as const }]));

/**
 * `--standby`: the flags come later, as one line on stdin (a JSON list of strings), from the daemon
 * that started this supervisor ahead of its pod (cmd/create.ts takeStandby), so a pod's start does
 * not wait for a Node.js start and these modules' load. Undefined when stdin ends first or the
 * creator goes (the standby is not needed any more).
 */
function standbyArgv(): Promise<string[] | undefined> {
  return new Promise((resolvePromise) => {
    const creator = process.ppid;
    let buf = '';
    const done = (v: string[] | undefined): void => {
      clearInterval(watch);
      process.stdin.off('data', onData);
      process.stdin.pause();
      resolvePromise(v);
    };
    const watch = setInterval(() => { if (process.ppid !== creator) done(undefined); }, 250);
    const onData = (b: Buffer): void => {
      buf += b.toString('utf8');
      const nl = buf.indexOf('\n');
      if (nl < 0) { if (buf.length > 65536) done(undefined); return; }
      let v: unknown;
      try { v = JSON.parse(buf.slice(0, nl)); } catch { v = undefined; }
      done(Array.isArray(v) && v.every((a) => typeof a === 'string') ? v : undefined);
    };
    process.stdin.on('data', onData);
    process.stdin.once('end', () => done(undefined));
    process.stdin.on('error', () => done(undefined));
  });
}

const command: VmCommand = {
  name: '_vmd',
  synopsis: 'bulkhead-vm _vmd --pod ID --pod-dir DIR --memory MIB --vcpus N --accel kvm|tcg --boot-timeout MS --cgroup PATH [--cpu-quota Q --cpu-period P] [--netns PATH] [--firecracker BIN] [--template-scope SCOPE] [--volumes none|copy] [--sandbox-request FILE] [--standby-vmm off] | _vmd --standby',
  summary: 'The pod VM supervisor; reports readiness on fd 3',
  internal: true,
  flags: { ...VMD_FLAGS, standby: { type: 'boolean' } },
  async run({ global: g, flags: given }) {
    let flags = given;
    let log = createLogger({ fields: { component: 'vmd', pod: str(flags, 'pod') } });
    if (bool(given, 'standby')) {
      const argv = await standbyArgv();
      if (!argv) return 0;
      trace('standby got the pod');
      flags = parseRuntimeFlags(argv, VMD_FLAGS, Infinity).flags;
      // stdout and stderr are the daemon's standby log: this pod's lines go to its vmd.log
      const podsRoot = resolve(g.root, 'pods') + sep;
      const dir = resolve(str(flags, 'pod-dir') ?? '');
      if (!dir.startsWith(podsRoot) || dir.slice(podsRoot.length).includes(sep)) {
        try { writeSync(3, readyErrorLine(new InvalidArgumentError(`_vmd --standby: the pod dir must be a directory of ${podsRoot}`))); } catch { /* creator gone */ }
        return 1;
      }
      const vmdLog = join(dir, 'vmd.log');
      log = createLogger({ write: (l) => { try { appendFileSync(vmdLog, l + '\n'); } catch { /* pod dir gone */ } }, fields: { component: 'vmd', pod: str(flags, 'pod') } });
    }
    const podDir = str(flags, 'pod-dir')!;
    const sup = await podSupervisor(g, flags, log);
    process.on('SIGTERM', () => { void sup.shutdown('the VM supervisor was terminated', false); });
    process.on('SIGINT', () => { void sup.shutdown('the VM supervisor was interrupted', false); });
    // Until the VM is ready, its creator (`create`, waiting on fd 3) owns the start: if the creator
    // goes away (killed on its caller's timeout), nobody would ever delete this VM, so it ends here.
    const creator = process.ppid;
    const creatorStart = liveStartTime(creator);
    const watch = setInterval(() => {
      if (process.ppid === creator && liveStartTime(creator) === creatorStart) return;
      clearInterval(watch);
      void sup.abortStart('its creator (bulkhead-vm create) went away before the VM was ready').finally(() => process.exit(1));
    }, 250);
    try {
      await sup.start();
    } catch (e) {
      try { writeSync(3, readyErrorLine(e)); } catch { /* creator gone */ }
      return 1;
    } finally {
      clearInterval(watch);
    }
    await writeFile(join(podDir, 'vmd.pid'), String(process.pid));
    try { writeSync(3, readyOkLine(process.pid)); closeSync(3); } catch { /* creator gone */ }
    // every module this supervisor needs is loaded now: with them in Node's compile cache
    // ($NODE_COMPILE_CACHE, set by bin/bulkhead-vm), the next pod's supervisor never loads the
    // TypeScript stripper (a WebAssembly module: ~13 MiB of private memory per process, measured)
    flushCompileCache();
    return await sup.finished();
  },
};
export default command;
