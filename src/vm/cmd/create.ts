// `bulkhead-vm create`: a container from an OCI bundle; a sandbox container boots its pod's VM first.
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { AbortedError, AlreadyExistsError, FailedPreconditionError, fromWire, InvalidArgumentError, toWire } from '../../errors.ts';
import { liveStartTime } from '../../util/proc.ts';
import { detectAccel } from '../accel.ts';
import { loadGuestAssets } from '../assets.ts';
import { VmdClient } from '../client.ts';
import { endPodDir } from '../pod-dir.ts';
import { recordProc } from '../procs.ts';
import { releaseRootfsImage, rootfsImage } from '../rootfs-image.ts';
import { exitFile, shimArgv } from '../shim.ts';
import { attachVolumes, detachVolumes, guestVolumes, shareDir } from '../share.ts';
import { containerKv, fileMountsKv, podIdentity, podNetnsPath, readBundleSpec, namespaceKv, rootfsPath, sysctlKv, vmSize } from '../spec.ts';
import { checkId, containerDir, DEFAULT_ROOT, indexAdd, indexRemove, podDir, writeJsonAtomic, type ContainerRecord } from '../state.ts';
import { cleanCgroupPath } from '../vm-cgroup.ts';
import { trace } from '../trace.ts';
import type { Accel } from '../vmm.ts';
import { closeReadyPipe, hostSocket, readFileSafe, readyLine, spawnDetached, supervisorEntry, vmdNodeArgs, type VmCommand } from './common.ts';
import { str } from './flags.ts';
import { refuseVolumesInClone, templateFlags, volumeMode } from './template-flags.ts';
import { classifyCopies, mountOrigins, type CopyVolume } from '../copy-volumes.ts';
import type { VmGlobal } from './global.ts';
import { podVmReadyMs, SUPERVISOR_READY_MS } from '../limits.ts';

async function chooseAccel(g: VmGlobal): Promise<Accel> {
  if (g.accel !== 'auto') return g.accel;
  const assets = await loadGuestAssets(g.assetsRoot);
  return (await detectAccel(assets)).accel;
}

/** The id of the container of pod `podId` whose supervisor pid (what `state` reports) is `pid`. */
function podMemberWithPid(root: string, podId: string, pid: number): string | undefined {
  let names: string[];
  try { names = readdirSync(root); } catch { return undefined; }
  for (const n of names) {
    try {
      const r = JSON.parse(readFileSync(join(root, n, 'state.json'), 'utf8')) as Partial<ContainerRecord>;
      if (r.podId === podId && r.pid === pid && typeof r.id === 'string') return r.id;
    } catch { /* not a container dir */ }
  }
  return undefined;
}

/** `p`, or AbortedError as soon as `signal` aborts (what `p` started is the caller's to end). */
function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolvePromise, reject) => {
    const onAbort = (): void => reject(new AbortedError('create aborted'));
    if (signal.aborted) { onAbort(); return; }
    signal.addEventListener('abort', onAbort, { once: true });
    p.then((v) => { signal.removeEventListener('abort', onAbort); resolvePromise(v); }, (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e); });
  });
}

/**
 * Supervisors started ahead of their pod (`_vmd --standby`, cmd/vmd.ts) by a daemon that creates
 * sandboxes in its own process (prepareCreate with `standby`): a pod's start then waits for neither
 * a Node.js start nor the supervisor's modules (~70 ms quiet, 200+ ms under load). One per root,
 * assets and Node.js flags, started again once taken (STANDBY_DELAY_MS after the pod's VM is up). Its stdin is the
 * daemon's pipe: the pod's flags come as one line; EOF (the daemon gone, endStandbys) ends it, and
 * so does its creator going away. Its stdout and stderr go to `<root>/vmd-standby.log` (a pod's own
 * lines go to its vmd.log).
 */
const standbys = new Map<string, ChildProcess>();
const standbyTimers = new Map<string, NodeJS.Timeout>();
/**
 * How long after a pod's VM is up the next standby is started: its Node.js start (~100 ms of CPU,
 * several times that on a loaded 2-core host) then runs after this pod's own start, not during it
 * (measured: started at once, it cost the pod's later steps as much as it saved the next pod).
 */
const STANDBY_DELAY_MS = 1000;
const standbyKey = (g: VmGlobal): string => JSON.stringify([g.root, g.assetsRoot, vmdNodeArgs()]);

function startStandby(g: VmGlobal): void {
  const key = standbyKey(g);
  if (standbys.has(key)) return;
  let logFd: number;
  try { logFd = openSync(join(g.root, 'vmd-standby.log'), 'a', 0o600); } catch { return; }
  let child: ChildProcess;
  try {
    child = spawnDetached([...vmdNodeArgs(), supervisorEntry(), '--root', g.root, '--assets', g.assetsRoot, '_vmd', '--standby'], ['pipe', logFd, logFd, 'pipe']);
  } finally {
    closeSync(logFd);
  }
  const forget = (): void => { if (standbys.get(key) === child) standbys.delete(key); };
  child.on('error', forget);
  child.on('exit', forget);
  child.stdin?.on('error', () => {});
  // it must not keep the daemon's event loop alive
  (child.stdin as Socket | null)?.unref();
  (child.stdio[3] as Socket | null)?.unref();
  child.unref();
  standbys.set(key, child);
}

function scheduleStandby(g: VmGlobal): void {
  const key = standbyKey(g);
  if (standbys.has(key) || standbyTimers.has(key)) return;
  const t = setTimeout(() => { standbyTimers.delete(key); startStandby(g); }, STANDBY_DELAY_MS);
  t.unref();
  standbyTimers.set(key, t);
}

function takeStandby(g: VmGlobal): ChildProcess | undefined {
  const key = standbyKey(g);
  const c = standbys.get(key);
  standbys.delete(key);
  if (!c || c.pid === undefined || c.exitCode !== null || c.signalCode !== null || !c.stdin?.writable) return undefined;
  return c;
}

/** Ends the standby supervisors this process keeps (the daemon's microvm backend closing): EOF, SIGKILL after 2 s. */
export async function endStandbys(): Promise<void> {
  for (const t of standbyTimers.values()) clearTimeout(t);
  standbyTimers.clear();
  const all = [...standbys.values()];
  standbys.clear();
  await Promise.all(all.map(async (c) => {
    if (c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    c.stdin?.end();
    const t = setTimeout(() => { try { c.kill('SIGKILL'); } catch { /* gone */ } }, 2000);
    await gone;
    clearTimeout(t);
  }));
}

/**
 * Starts the pod's VM supervisor unless one answers; true when this call started it. `signal`
 * (a create in the daemon's process, whose caller gave up) abandons the start as its creator's exit
 * does; `standby`: a supervisor started ahead is taken when there is one (see standbys).
 */
async function ensurePodVm(g: VmGlobal, podId: string, dir: string, size: { memoryMiB: number; vcpus: number }, cgroup: string, cpu: { quota: number; period: number } | undefined, netns: string | undefined, tpl: string[], opts: CreateOptions): Promise<boolean> {
  const { signal } = opts;
  if (existsSync(join(dir, 'vmd.sock'))) {
    try { (await VmdClient.connect(join(dir, 'vmd.sock'), undefined, 5000)).close(); return false; } catch { /* stale: restart */ }
  }
  await endPodDir(dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const accel = await chooseAccel(g);
  const vmdFlags = ['--pod', podId, '--pod-dir', dir, '--memory', String(size.memoryMiB), '--vcpus', String(size.vcpus),
    '--accel', accel, '--boot-timeout', String(g.bootTimeoutMs), '--cgroup', cgroup, ...(cpu ? ['--cpu-quota', String(cpu.quota), '--cpu-period', String(cpu.period)] : []), ...(netns ? ['--netns', netns] : []), ...(g.firecracker ? ['--firecracker', g.firecracker] : []), ...tpl];
  if (g.supervisor === 'node') {
    try {
      await abortable(startInHost(g, vmdFlags, signal), signal);
    } catch (e) {
      await endPodDir(dir);
      throw e;
    }
    return true;
  }
  let child = opts.standby ? takeStandby(g) : undefined;
  if (child) {
    recordProc(dir, 'vmd', child.pid!);
    child.stdin!.end(JSON.stringify(vmdFlags) + '\n');
    trace('standby handed the pod');
  } else {
    const logFd = openSync(join(dir, 'vmd.log'), 'a');
    try {
      child = spawnDetached([...vmdNodeArgs(), supervisorEntry(), '--root', g.root, '--assets', g.assetsRoot, '_vmd', ...vmdFlags], ['ignore', logFd, logFd, 'pipe']);
    } finally {
      closeSync(logFd);
    }
    if (child.pid !== undefined) recordProc(dir, 'vmd', child.pid);
  }
  try {
    await abortable(readyLine(child, 'pod VM', podVmReadyMs(g.bootTimeoutMs, tpl.includes('--template-scope'))), signal);
    trace('pod VM ready line');
  } catch (e) {
    // whatever the start left running (supervisor, VMM) ends before its slot files go
    await endPodDir(dir);
    throw e;
  } finally {
    closeReadyPipe(child);
    child.unref();
  }
  if (opts.standby) scheduleStandby(g);
  return true;
}

/**
 * `--supervisor node`: the node-wide host (vmhost.ts) starts the pod's supervisor; this waits for
 * its answer (the VM ready) on a connection it holds open, so going away abandons the start.
 */
async function startInHost(g: VmGlobal, vmdFlags: string[], signal?: AbortSignal): Promise<void> {
  const sock = hostSocket(g.root);
  let c: VmdClient;
  try {
    c = await VmdClient.connect(sock, undefined, 5000);
  } catch {
    const logFd = openSync(join(g.root, 'vmhost.log'), 'a');
    const child = spawnDetached([...vmdNodeArgs(), supervisorEntry(), '--root', g.root, '--assets', g.assetsRoot, '_vmhost'], ['ignore', logFd, logFd, 'pipe']);
    child.on('error', () => {});
    try { await readyLine(child, 'node-wide VM supervisor', 30_000); } finally { closeReadyPipe(child); child.unref(); }
    c = await VmdClient.connect(sock, undefined, 5000);
  }
  // the host abandons the start when this connection closes
  const onAbort = (): void => c.close();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await c.request('start', { argv: vmdFlags }, podVmReadyMs(g.bootTimeoutMs, vmdFlags.includes('--template-scope')));
  } catch (e) {
    // as the ready line's errors read (ready.ts): the class and reason kept, "pod VM: " in front
    const w = toWire(e);
    throw fromWire({ ...w, message: `pod VM: ${w.message}` });
  } finally {
    signal?.removeEventListener('abort', onAbort);
    c.close();
  }
}

/** A container whose create is done up to starting its supervisor (the C shim): prepareCreate. */
export interface PreparedCreate {
  rec: ContainerRecord;
  /** The shim's program, argv (without the program) and working directory (the pod dir). */
  shim: { bin: string; args: string[]; cwd: string };
  /** Started only with a console socket (process.terminal): bulkhead-vm-console in front of the shim. */
  consoleHelper?: { bin: string; args: string[] };
  /** This create started the pod's VM (a sandbox container): a failed create stops it. */
  startedVm: boolean;
  image: string;
}

/**
 * Everything `create` does before it starts the container's supervisor: the record, the rootfs
 * image, the pod VM for a sandbox container (`signal`: abandons its start), the session request.
 * Undone (undoCreate) when it fails.
 */
export interface CreateOptions {
  /** The caller gave up: a pod VM this create is starting is abandoned. */
  signal?: AbortSignal;
  /** Keep a supervisor started ahead for the next pod (a long-lived caller: the daemon). */
  standby?: boolean;
}

export async function prepareCreate(g: VmGlobal, id: string, bundle: string, consoleSocket: string | undefined, opts: CreateOptions = {}): Promise<PreparedCreate> {
  checkId(id);
  trace(`prepareCreate ${id.slice(0, 8)}`);
  const spec = await readBundleSpec(bundle);
  const pod = podIdentity(id, spec);
  const cdir = containerDir(g.root, id);
  if (existsSync(cdir)) throw new AlreadyExistsError(`container "${id}" already exists`);
  const assets = await loadGuestAssets(g.assetsRoot);
  const image = await rootfsImage(rootfsPath(bundle, spec), assets.imagesDir, undefined, cdir, assets.rootFormat ?? 'ext4');
  trace(`rootfs image ${id.slice(0, 8)}`);
  const kv = [...containerKv(spec), ...(await fileMountsKv(spec))].map(([k, v]) => [k, String(v)] as [string, string]);
  if (assets.rootFormat === 'erofs') kv.push(['fstype', 'erofs']);
  const vols = guestVolumes(spec);
  const pdir = podDir(g.root, pod.podId);
  await mkdir(cdir, { recursive: true, mode: 0o700 });
  const rec: ContainerRecord = { id, bundle, podId: pod.podId, podDir: pdir, sandbox: pod.sandbox, pid: 0, annotations: spec.annotations ?? {}, created: new Date().toISOString() };
  const p: PreparedCreate = { rec, shim: { bin: assets.shim, args: [], cwd: pdir }, startedVm: false, image: image.path };
  await writeJsonAtomic(join(cdir, 'state.json'), rec);
  if (g.root !== DEFAULT_ROOT) await indexAdd(id, cdir);
  try {
    // a sandbox's create request as the agent will get it (the slot aside), named to its supervisor
    // before the VM starts: a template with this sandbox container already started is cloned, and
    // the request adopts that container (template-sandbox.ts). Not for a sandbox with volumes or a terminal.
    let sandboxRequest: string | undefined;
    if (pod.sandbox) {
      kv.push(...sysctlKv({}, spec).map(([k, v]) => [k, String(v)] as [string, string]));
      const tpl = templateFlags(g, spec);
      if (g.templateSandbox === 'on' && tpl.includes('--template-scope') && !vols.length && spec.process?.terminal !== true && !g.firecracker) {
        sandboxRequest = join(cdir, 'sandbox-request.json');
        await writeFile(sandboxRequest, JSON.stringify({ image: image.path, kv }), { mode: 0o600 });
      }
    }
    if (pod.sandbox) {
      const given = spec.linux?.cgroupsPath && !spec.linux.cgroupsPath.includes(':') ? cleanCgroupPath(spec.linux.cgroupsPath) : undefined;
      const cg = given ?? cleanCgroupPath(join(g.cgroupParent, id)) ?? '';
      const q = spec.linux?.resources?.cpu;
      const cpu = q?.quota && q.quota > 0 ? { quota: Math.max(1000, Math.floor(q.quota)), period: Math.min(1_000_000, Math.max(1000, Math.floor(q.period || 100000))) } : undefined;
      p.startedVm = await ensurePodVm(g, pod.podId, pdir, vmSize(spec, availableParallelism()), cg, cpu, podNetnsPath(spec), [...templateFlags(g, spec), ...(sandboxRequest ? ['--sandbox-request', sandboxRequest] : [])], opts);
    } else if (!existsSync(join(pdir, 'vmd.sock'))) {
      throw new FailedPreconditionError(`the VM of pod ${pod.podId} is not running (create its sandbox container first)`);
    }
    // the pod's sysctls come with its sandbox's spec; every container of the pod applies them in the guest
    const sysctlFile = join(pdir, 'sysctls.json');
    if (pod.sandbox) await writeFile(sysctlFile, JSON.stringify(spec.linux?.sysctl ?? {}), { mode: 0o600 });
    const podSysctls = JSON.parse(await readFile(sysctlFile, 'utf8').catch(() => '{}')) as Record<string, string>;
    // the pod's volume mode comes with its sandbox's spec too (a pool member's: the pool's)
    const modeFile = join(pdir, 'volume-mode');
    if (pod.sandbox) await writeFile(modeFile, volumeMode(g, spec), { mode: 0o600 });
    const mode = (await readFile(modeFile, 'utf8').catch(() => 'share')).trim();
    if (!pod.sandbox) kv.push(...sysctlKv(podSysctls, spec).map(([k, v]) => [k, String(v)] as [string, string]));
    if (!pod.sandbox) kv.push(...namespaceKv(spec, pod.podId, (pid) => podMemberWithPid(g.root, pod.podId, pid)).map(([k, v]) => [k, String(v)] as [string, string]));
    // host paths and kubelet volumes: copied into the guest by its supervisor (copy-volumes.ts), or
    // bind-mounted into the pod's virtio-fs share (refused, never dropped)
    let copies: CopyVolume[] = [];
    if (vols.length && mode === 'copy') copies = await classifyCopies(vols, mountOrigins(spec));
    else {
      if (vols.length && existsSync(join(pdir, 'template.json'))) refuseVolumesInClone(pod.podId);
      kv.push(...await attachVolumes(shareDir(pdir), id, vols));
    }
    // the session request the container's shim sends to the pod supervisor (delete reads its image)
    const request = join(cdir, 'create.json');
    await writeFile(request, JSON.stringify({ op: 'create', name: id, image: image.path, kv, sandbox: pod.sandbox, ...(copies.length ? { copies } : {}) }), { mode: 0o600 });
    const tty = spec.process?.terminal === true;
    const shim = shimArgv({ mode: 'container', shim: assets.shim, podDir: pdir, request, tty, exitFile: exitFile(cdir), readyFd: 3 });
    p.shim = { bin: assets.shim, args: shim.args, cwd: shim.cwd };
    trace(`prepared ${id.slice(0, 8)}`);
    if (tty) {
      if (!consoleSocket) throw new InvalidArgumentError('process.terminal is set: --console-socket is required');
      const cs = spec.process!.consoleSize;
      p.consoleHelper = { bin: assets.consoleHelper, args: [consoleSocket, String(cs?.height ?? 24), String(cs?.width ?? 80), '--', assets.shim, ...shim.args] };
    }
    return p;
  } catch (e) {
    await undoCreate(g, p);
    throw e;
  }
}

/**
 * For a create prepared in the daemon's process (the microvm backend): `<container dir>/front`, what
 * bin/bulkhead-vm's `create` then starts without Node.js — the shim's working directory, program
 * and arguments, one a line. Not for a terminal container (its console socket is conmon's).
 */
export async function writeFront(g: VmGlobal, p: PreparedCreate): Promise<void> {
  if (p.consoleHelper) throw new InvalidArgumentError('a terminal container is created by bulkhead-vm create itself');
  const lines = [p.shim.cwd, p.shim.bin, ...p.shim.args];
  if (lines.some((l) => l.includes('\n') || l === '')) throw new InvalidArgumentError('a path of the container\'s supervisor has a newline: bulkhead-vm create cannot start it (choose another --root or assets directory)');
  await writeFile(join(containerDir(g.root, p.rec.id), 'front'), lines.join('\n') + '\n', { mode: 0o600 });
}

/** Records the started supervisor's pid in the container's record (and `pidFile`). */
export async function recordCreated(g: VmGlobal, p: PreparedCreate, pid: number, pidFile?: string): Promise<void> {
  p.rec.pid = pid;
  const start = liveStartTime(pid);
  if (start !== undefined) p.rec.pidStart = start;
  await writeJsonAtomic(join(containerDir(g.root, p.rec.id), 'state.json'), p.rec);
  if (pidFile) await writeFile(pidFile, String(pid));
}

/** Undoes a prepared create whose supervisor did not start: the pod VM it started, volumes, the record, the image's use. */
export async function undoCreate(g: VmGlobal, p: PreparedCreate): Promise<void> {
  const { id, podDir: pdir } = p.rec;
  const cdir = containerDir(g.root, id);
  if (p.startedVm) {
    try { const c = await VmdClient.connect(join(pdir, 'vmd.sock')); await c.request('shutdown', { reason: 'sandbox create failed' }); c.close(); } catch { /* gone */ }
  }
  await detachVolumes(shareDir(pdir), id).catch(() => {});
  await rm(cdir, { recursive: true, force: true });
  await indexRemove(id, cdir);
  await releaseRootfsImage(p.image, cdir).catch(() => {});
}

const command: VmCommand = {
  name: 'create',
  synopsis: 'bulkhead-vm create [--bundle DIR] [--pid-file FILE] [--console-socket SOCKET] ID',
  summary: 'Create a container from an OCI bundle (a sandbox container boots its pod\'s microVM)',
  flags: {
    bundle: { type: 'string', short: 'b' },
    'pid-file': { type: 'string' },
    'console-socket': { type: 'string' },
    'preserve-fds': { type: 'string' },
  },
  async run({ global: g, flags, args }) {
    const id = checkId(args[0]);
    const bundle = resolve(str(flags, 'bundle') ?? process.cwd());
    // prepared by the daemon (writeFront) but not started by bin/bulkhead-vm's sh (a flag it does not
    // know): only the supervisor is started here; the daemon records it and undoes a failure
    const front = readFileSafe(join(containerDir(g.root, id), 'front')).split('\n').filter(Boolean);
    if (front.length >= 3) {
      const child = spawnDetached(front.slice(2), ['inherit', 'inherit', 'inherit', 'pipe'], front[1], front[0]);
      child.on('error', () => {});
      try { await readyLine(child, 'container supervisor', SUPERVISOR_READY_MS); } finally { closeReadyPipe(child); child.unref(); }
      const pidFile = str(flags, 'pid-file');
      if (pidFile) await writeFile(pidFile, String(child.pid));
      return 0;
    }
    const p = await prepareCreate(g, id, bundle, str(flags, 'console-socket'));
    try {
      const child = p.consoleHelper
        ? spawnDetached(p.consoleHelper.args, ['ignore', 'ignore', 'inherit', 'pipe'], p.consoleHelper.bin, p.shim.cwd)
        : spawnDetached(p.shim.args, ['inherit', 'inherit', 'inherit', 'pipe'], p.shim.bin, p.shim.cwd);
      child.on('error', () => {});
      try {
        await readyLine(child, 'container supervisor', SUPERVISOR_READY_MS);
      } finally {
        closeReadyPipe(child);
        child.unref();
      }
      await recordCreated(g, p, child.pid!, str(flags, 'pid-file'));
      return 0;
    } catch (e) {
      await undoCreate(g, p);
      throw e;
    }
  },
};
export default command;
