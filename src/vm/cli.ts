/**
 * `bulkhead-vm`: an OCI-runtime-compatible command that runs each pod in its own microVM, so
 * conmon and podman drive it like runc:
 *   bulkhead-vm [--root DIR] [--log FILE] [--log-format text|json] [--assets DIR] [--accel auto|kvm|tcg]
 *               create [--bundle DIR] [--pid-file F] [--console-socket S] ID | start ID | state ID
 *               | kill ID [SIGNAL] [--all] | delete [--force] ID | exec [...] ID [ARGS...] | features
 *               | setup [--kernel-deb F]
 * Internal: `_vmd` (the pod VM supervisor) and `_shim` (a container's supervisor).
 * Exit codes: 0 ok, 1 failure (message on stderr and in --log), 2 usage. `exec` without
 * --detach exits with the process's exit code.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, openSync, readFileSync, writeSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AlreadyExistsError, BulkheadError, FailedPreconditionError, InvalidArgumentError, toWire, UnavailableError, UnimplementedError } from '../errors.ts';
import { createLogger } from '../util/log.ts';
import type { OciProcess } from '../oci/spec.ts';
import { detectAccel } from './accel.ts';
import { ensureGuestAssets, loadGuestAssets, SETUP_COMMAND } from './assets.ts';
import { VmdClient } from './client.ts';
import { parseReadyLine, readyErrorLine, readyOkLine } from './ready.ts';
import { QemuVmm } from './qemu.ts';
import { FirecrackerVmm } from './firecracker.ts';
import { releaseRootfsImage, rootfsImage } from './rootfs-image.ts';
import { runShim } from './shim.ts';
import { containerKv, fileMountsKv, podIdentity, podNetnsPath, processKv, readBundleSpec, rootfsPath, signalNumber, vmSize } from './spec.ts';
import { alive, checkId, containerDir, DEFAULT_ROOT, indexAdd, indexRemove, podDir, readRecord, rootFromIndex, status, writeJsonAtomic, type ContainerRecord } from './state.ts';
import { PodVmSupervisor } from './vmd.ts';
import { killPodProcesses, recordProc } from './procs.ts';
import { liveStartTime } from '../util/proc.ts';
import { cleanCgroupPath, removeVmmCgroups } from './vm-cgroup.ts';
import type { Accel } from './vmm.ts';

const CLI = fileURLToPath(import.meta.url);
const NODE_ARGS = ['--disable-warning=ExperimentalWarning'];

interface Global {
  root: string;
  log?: string;
  logFormat: 'text' | 'json';
  assetsRoot: string;
  accel: 'auto' | Accel;
  bootTimeoutMs: number;
  cgroupParent: string;
  /** Firecracker binary: use the Firecracker driver instead of QEMU. */
  firecracker?: string;
}

type Flags = Record<string, string | boolean | string[]>;

/** Minimal flag parser: --k=v, --k v (for known value flags), -x; repeats collect. Stops at the first positional after `stopAt` positionals. */
function parse(argv: string[], valueFlags: Set<string>, stopAfterPositionals = Infinity): { flags: Flags; pos: string[] } {
  const flags: Flags = {};
  const pos: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (pos.length >= stopAfterPositionals) { pos.push(...argv.slice(i)); break; }
    if (a === '--') { pos.push(...argv.slice(i + 1)); break; }
    if (a.startsWith('-') && a.length > 1) {
      const body = a.replace(/^--?/, '');
      const eq = body.indexOf('=');
      const k = eq >= 0 ? body.slice(0, eq) : body;
      let v: string | boolean = true;
      if (eq >= 0) v = body.slice(eq + 1);
      else if (valueFlags.has(k)) { v = argv[++i] ?? ''; }
      const prev = flags[k];
      if (prev === undefined) flags[k] = v;
      else flags[k] = [...(Array.isArray(prev) ? prev : [String(prev)]), String(v)];
    } else pos.push(a);
  }
  return { flags, pos };
}

const str = (v: Flags[string] | undefined): string | undefined => (v === undefined || v === true || v === false ? undefined : Array.isArray(v) ? v[v.length - 1] : v);
const list = (v: Flags[string] | undefined): string[] => (v === undefined || typeof v === 'boolean' ? [] : Array.isArray(v) ? v : [v]);

/**
 * The failure of a command: on stderr (plain, or with --log-format json a JSON line carrying
 * `error: {code, reason, message}` that runtime/errors.ts takes as it is) and in --log.
 */
function logError(g: Global, err: unknown): void {
  const msg = err instanceof BulkheadError ? err.message : `unexpected error: ${err instanceof Error ? err.stack : String(err)}`;
  const json = JSON.stringify({ level: 'error', msg, time: new Date().toISOString(), error: { ...toWire(err), message: msg } });
  process.stderr.write(g.logFormat === 'json' ? `${json}\n` : `bulkhead-vm: ${msg}\n`);
  if (!g.log) return;
  try {
    appendFileSync(g.log, (g.logFormat === 'json' ? json : `time=${new Date().toISOString()} level=error msg=${JSON.stringify(msg)}`) + '\n');
  } catch { /* log dir gone */ }
}

function spawnDetached(args: string[], stdio: ('inherit' | 'ignore' | 'pipe' | number)[], cmd: string = process.execPath): ReturnType<typeof spawn> {
  return spawn(cmd, args, { detached: true, stdio });
}

/** Reads the ready line (ready.ts) from a child's fd 3; rejects with the error it carries, or if it exits first. */
function readyLine(child: ReturnType<typeof spawn>, what: string, timeoutMs: number): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    let buf = '';
    const timer = setTimeout(() => reject(new UnavailableError(`${what} did not become ready within ${timeoutMs} ms`)), timeoutMs);
    pipe.on('data', (b: Buffer) => {
      buf += b.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        const r = parseReadyLine(buf.slice(0, nl), what);
        if ('pid' in r) resolvePromise(r.pid); else reject(r.error);
      }
    });
    pipe.on('end', () => { clearTimeout(timer); if (!buf.includes('\n')) reject(new UnavailableError(`${what} exited before it was ready`)); });
  });
}

async function chooseAccel(g: Global): Promise<Accel> {
  if (g.accel !== 'auto') return g.accel;
  const assets = await loadGuestAssets(g.assetsRoot);
  return (await detectAccel(assets)).accel;
}

async function ensurePodVm(g: Global, podId: string, dir: string, size: { memoryMiB: number; vcpus: number }, cgroup: string, cpu: { quota: number; period: number } | undefined, netns: string | undefined): Promise<boolean> {
  if (existsSync(join(dir, 'vmd.sock'))) {
    try { (await VmdClient.connect(join(dir, 'vmd.sock'), undefined, 5000)).close(); return false; } catch { /* stale: restart */ }
  }
  await killPodProcesses(dir, 500);
  await removeVmmCgroups(dir);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const accel = await chooseAccel(g);
  const logFd = openSync(join(dir, 'vmd.log'), 'a');
  const child = spawnDetached([...NODE_ARGS, CLI, '--root', g.root, '--assets', g.assetsRoot, '_vmd',
    '--pod', podId, '--pod-dir', dir, '--memory', String(size.memoryMiB), '--vcpus', String(size.vcpus),
    '--accel', accel, '--boot-timeout', String(g.bootTimeoutMs), '--cgroup', cgroup, ...(cpu ? ['--cpu-quota', String(cpu.quota), '--cpu-period', String(cpu.period)] : []), ...(netns ? ['--netns', netns] : []), ...(g.firecracker ? ['--firecracker', g.firecracker] : [])], ['ignore', logFd, logFd, 'pipe']);
  if (child.pid !== undefined) recordProc(dir, 'vmd', child.pid);
  try {
    await readyLine(child, 'pod VM', g.bootTimeoutMs + 30_000);
  } catch (e) {
    // whatever the start left running (supervisor, VMM) ends before its slot files go
    await killPodProcesses(dir, 500);
    await removeVmmCgroups(dir);
    await rm(dir, { recursive: true, force: true });
    throw e;
  } finally {
    (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
    child.unref();
  }
  return true;
}

async function cmdCreate(g: Global, argv: string[]): Promise<number> {
  const { flags, pos } = parse(argv, new Set(['bundle', 'b', 'pid-file', 'console-socket']));
  const id = checkId(pos[0]);
  const bundle = resolve(str(flags.bundle) ?? str(flags.b) ?? process.cwd());
  const spec = await readBundleSpec(bundle);
  const pod = podIdentity(id, spec);
  const cdir = containerDir(g.root, id);
  if (existsSync(cdir)) throw new AlreadyExistsError(`container "${id}" already exists`);
  const assets = await loadGuestAssets(g.assetsRoot);
  const image = await rootfsImage(rootfsPath(bundle, spec), assets.imagesDir, undefined, cdir);
  const kv = [...containerKv(spec), ...(await fileMountsKv(spec))].map(([k, v]) => [k, String(v)] as [string, string]);
  const pdir = podDir(g.root, pod.podId);
  await mkdir(cdir, { recursive: true, mode: 0o700 });
  const rec: ContainerRecord = { id, bundle, podId: pod.podId, podDir: pdir, sandbox: pod.sandbox, pid: 0, annotations: spec.annotations ?? {}, created: new Date().toISOString() };
  await writeJsonAtomic(join(cdir, 'state.json'), rec);
  if (g.root !== DEFAULT_ROOT) await indexAdd(id, cdir);
  let startedVm = false;
  try {
    if (pod.sandbox) {
      const given = spec.linux?.cgroupsPath && !spec.linux.cgroupsPath.includes(':') ? cleanCgroupPath(spec.linux.cgroupsPath) : undefined;
      const cg = given ?? cleanCgroupPath(join(g.cgroupParent, id)) ?? '';
      const q = spec.linux?.resources?.cpu;
      const cpu = q?.quota && q.quota > 0 ? { quota: Math.max(1000, Math.floor(q.quota)), period: Math.min(1_000_000, Math.max(1000, Math.floor(q.period || 100000))) } : undefined;
      startedVm = await ensurePodVm(g, pod.podId, pdir, vmSize(spec, availableParallelism()), cg, cpu, podNetnsPath(spec));
    } else if (!existsSync(join(pdir, 'vmd.sock'))) {
      throw new FailedPreconditionError(`the VM of pod ${pod.podId} is not running (create its sandbox container first)`);
    }
    await writeFile(join(cdir, 'create.json'), JSON.stringify({ kv, image: image.path }), { mode: 0o600 });
    const consoleSocket = str(flags['console-socket']);
    const shimArgs = [...NODE_ARGS, CLI, '--root', g.root, '_shim', '--id', id];
    let child: ReturnType<typeof spawn>;
    if (spec.process?.terminal) {
      if (!consoleSocket) throw new InvalidArgumentError('process.terminal is set: --console-socket is required');
      const cs = spec.process.consoleSize;
      child = spawnDetached([consoleSocket, String(cs?.height ?? 24), String(cs?.width ?? 80), '--', process.execPath, ...shimArgs], ['ignore', 'ignore', 'inherit', 'pipe'], assets.consoleHelper);
    } else {
      child = spawnDetached(shimArgs, ['inherit', 'inherit', 'inherit', 'pipe']);
    }
    try {
      await readyLine(child, 'container supervisor', 120_000);
    } finally {
      (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
      child.unref();
    }
    rec.pid = child.pid!;
    const start = liveStartTime(rec.pid);
    if (start !== undefined) rec.pidStart = start;
    await writeJsonAtomic(join(cdir, 'state.json'), rec);
    const pidFile = str(flags['pid-file']);
    if (pidFile) await writeFile(pidFile, String(rec.pid));
    return 0;
  } catch (e) {
    if (startedVm) {
      try { const c = await VmdClient.connect(join(pdir, 'vmd.sock')); await c.request('shutdown', { reason: 'sandbox create failed' }); c.close(); } catch { /* gone */ }
    }
    await rm(cdir, { recursive: true, force: true });
    await indexRemove(id, cdir);
    await releaseRootfsImage(image.path, cdir).catch(() => {});
    throw e;
  }
}

async function withPod<T>(rec: ContainerRecord, f: (c: VmdClient) => Promise<T>): Promise<T> {
  const c = await VmdClient.connect(join(rec.podDir, 'vmd.sock'));
  try { return await f(c); } finally { c.close(); }
}

async function cmdStart(g: Global, argv: string[]): Promise<number> {
  const id = checkId(parse(argv, new Set()).pos[0]);
  const rec = await readRecord(g.root, id);
  const st = await status(g.root, rec);
  if (st.status !== 'created') throw new FailedPreconditionError(`container "${id}" is ${st.status}, not created`);
  await withPod(rec, (c) => c.request('start', { name: id }));
  await writeFile(join(containerDir(g.root, id), 'started'), new Date().toISOString());
  return 0;
}

async function cmdState(g: Global, argv: string[]): Promise<number> {
  const id = checkId(parse(argv, new Set()).pos[0]);
  const rec = await readRecord(g.root, id);
  const st = await status(g.root, rec);
  const annotations: Record<string, string> = { ...rec.annotations, 'io.bulkhead.vm.pod': rec.podId };
  if (st.exit) {
    annotations['io.bulkhead.vm.exit-code'] = String(st.exit.code);
    if (st.exit.reason) annotations['io.bulkhead.vm.exit-reason'] = st.exit.reason;
  }
  process.stdout.write(JSON.stringify({
    ociVersion: '1.0.2', id, status: st.status === 'creating' ? 'creating' : st.status,
    pid: st.status === 'stopped' ? 0 : rec.pid, bundle: rec.bundle, rootfs: join(rec.bundle, 'rootfs'), created: rec.created, annotations,
  }, null, 2) + '\n');
  return 0;
}

async function cmdKill(g: Global, argv: string[]): Promise<number> {
  const { flags, pos } = parse(argv, new Set());
  const id = checkId(pos[0]);
  const sig = signalNumber(pos[1] ?? 'SIGTERM');
  const rec = await readRecord(g.root, id);
  const st = await status(g.root, rec);
  if (st.status === 'stopped') throw new FailedPreconditionError(`container "${id}" is not running`);
  await withPod(rec, (c) => c.request('kill', { name: id, signal: sig, all: flags.all === true || flags.a === true }));
  return 0;
}

async function cmdDelete(g: Global, argv: string[]): Promise<number> {
  const { flags, pos } = parse(argv, new Set());
  const id = checkId(pos[0]);
  const force = flags.force === true || flags.f === true;
  let rec: ContainerRecord;
  try { rec = await readRecord(g.root, id); } catch (e) {
    if (force && (e as BulkheadError).code === 'NotFound') {
      // a create killed before it wrote its record may still have started the pod VM (a sandbox's pod is its id)
      const pdir = podDir(g.root, id);
      if (existsSync(pdir)) { await killPodProcesses(pdir, 500); await removeVmmCgroups(pdir); await rm(pdir, { recursive: true, force: true }); }
      return 0;
    }
    throw e;
  }
  const st = await status(g.root, rec);
  if ((st.status === 'running' || st.status === 'created') && !force && st.status === 'running') {
    throw new FailedPreconditionError(`container "${id}" is running; stop it first or use --force`);
  }
  // Bounded throughout: a wedged supervisor costs at most the request timeout, then its processes
  // are ended by pid (verified by start time), SIGKILL after a short grace.
  const sock = join(rec.podDir, 'vmd.sock');
  if (existsSync(sock)) {
    try {
      const c = await VmdClient.connect(sock, undefined, force ? 2000 : 10_000);
      try { await c.request('delete', { name: id }, force ? 2000 : 30_000); } finally { c.close(); }
    } catch (e) {
      const code = (e as BulkheadError).code;
      if (!force && code !== 'Unavailable') throw e;
    }
  }
  if (alive(rec.pid) && (rec.pidStart === undefined || liveStartTime(rec.pid) === rec.pidStart)) { try { process.kill(rec.pid, 'SIGKILL'); } catch { /* gone */ } }
  if (rec.sandbox) {
    // the VM stops with its sandbox: give the supervisor a moment to power it off and clean up
    for (const until = Date.now() + (force ? 1500 : 15_000); Date.now() < until && existsSync(join(rec.podDir, 'vmd.sock'));) await new Promise((r) => setTimeout(r, 100));
    await killPodProcesses(rec.podDir, force ? 500 : 2000);
    await removeVmmCgroups(rec.podDir);
    await rm(rec.podDir, { recursive: true, force: true });
  }
  const created = JSON.parse(readFileSafe(join(containerDir(g.root, id), 'create.json')) || '{}') as { image?: unknown };
  await rm(containerDir(g.root, id), { recursive: true, force: true });
  await indexRemove(id, containerDir(g.root, id));
  // The container's disk image goes once no other container uses it.
  if (typeof created.image === 'string') await releaseRootfsImage(created.image, containerDir(g.root, id)).catch(() => {});
  return 0;
}

function readFileSafe(p: string): string { try { return readFileSync(p, 'utf8'); } catch { return ''; } }

async function cmdExec(g: Global, argv: string[]): Promise<number> {
  const { flags, pos } = parse(argv, new Set(['process', 'p', 'pid-file', 'console-socket', 'cwd', 'env', 'e', 'user', 'u', 'process-label', 'apparmor', 'cap', 'c', 'preserve-fds', 'cgroup']), 1);
  const id = checkId(pos[0]);
  const rec = await readRecord(g.root, id);
  const st = await status(g.root, rec);
  if (st.status !== 'running') throw new FailedPreconditionError(`cannot exec in a ${st.status} container "${id}"`);
  let proc: OciProcess;
  const pf = str(flags.process) ?? str(flags.p);
  if (pf) {
    proc = JSON.parse(await readFile(pf, 'utf8')) as OciProcess;
  } else {
    const spec = await readBundleSpec(rec.bundle);
    const user = str(flags.user) ?? str(flags.u);
    const [uid, gid] = user ? user.split(':').map(Number) : [spec.process!.user.uid, spec.process!.user.gid];
    proc = {
      args: pos.slice(1), env: [...(spec.process!.env ?? []), ...list(flags.env), ...list(flags.e)],
      cwd: str(flags.cwd) ?? spec.process!.cwd, user: { uid: uid ?? 0, gid: gid ?? 0 },
      terminal: flags.tty === true || flags.t === true,
    };
  }
  if (!proc.args?.length) throw new InvalidArgumentError('exec: no command');
  const kv = processKv(proc).map(([k, v]) => [k, String(v)] as [string, string]);
  const detach = flags.detach === true || flags.d === true;
  const pidFile = str(flags['pid-file']);
  if (!detach && !proc.terminal) {
    return await runShim({ mode: 'exec', root: g.root, rec, kv, readyFd: -1, ...(pidFile ? { pidFile } : {}) });
  }
  const tag = `exec-${process.pid}-${Date.now()}.json`;
  const file = join(containerDir(g.root, id), tag);
  await writeFile(file, JSON.stringify({ kv }), { mode: 0o600 });
  const shimArgs = [...NODE_ARGS, CLI, '--root', g.root, '_shim', '--id', id, '--exec', file, ...(pidFile ? ['--pid-file', pidFile] : [])];
  let child: ReturnType<typeof spawn>;
  const consoleSocket = str(flags['console-socket']);
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
    (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
    if (detach) child.unref();
  }
  if (detach) return 0;
  return await new Promise<number>((r) => child.once('exit', (code) => r(code ?? 255)));
}

async function cmdShim(g: Global, argv: string[]): Promise<number> {
  const { flags } = parse(argv, new Set(['id', 'exec', 'pid-file']));
  const id = checkId(str(flags.id));
  const rec = await readRecord(g.root, id);
  const execFile = str(flags.exec);
  const pidFile = str(flags['pid-file']);
  if (execFile) {
    const { kv } = JSON.parse(await readFile(execFile, 'utf8')) as { kv: [string, string][] };
    await rm(execFile, { force: true });
    return await runShim({ mode: 'exec', root: g.root, rec, kv, readyFd: 3, ...(pidFile ? { pidFile } : {}) });
  }
  const c = JSON.parse(await readFile(join(containerDir(g.root, id), 'create.json'), 'utf8')) as { kv: [string, string][]; image: string };
  return await runShim({ mode: 'container', root: g.root, rec, kv: c.kv, image: c.image, readyFd: 3 });
}

async function cmdVmd(g: Global, argv: string[]): Promise<number> {
  const { flags } = parse(argv, new Set(['pod', 'pod-dir', 'memory', 'vcpus', 'accel', 'boot-timeout', 'cgroup', 'cpu-quota', 'cpu-period', 'firecracker', 'netns']));
  const fc = str(flags.firecracker);
  const netns = str(flags.netns);
  const log = createLogger({ fields: { component: 'vmd', pod: str(flags.pod) } });
  const sup = new PodVmSupervisor({
    podId: str(flags.pod)!, podDir: str(flags['pod-dir'])!, assets: await loadGuestAssets(g.assetsRoot), vmm: fc ? new FirecrackerVmm(fc) : new QemuVmm(),
    accel: (str(flags.accel) ?? 'tcg') as Accel, memoryMiB: Number(str(flags.memory)), vcpus: Number(str(flags.vcpus)),
    bootTimeoutMs: Number(str(flags['boot-timeout'])), cgroup: str(flags.cgroup) ?? '', logger: log,
    ...(str(flags['cpu-quota']) ? { cpuQuota: Number(str(flags['cpu-quota'])), cpuPeriod: Number(str(flags['cpu-period']) ?? 100000) } : {}),
    ...(netns ? { netns } : {}),
  });
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
  await writeFile(join(str(flags['pod-dir'])!, 'vmd.pid'), String(process.pid));
  try { writeSync(3, readyOkLine(process.pid)); closeSync(3); } catch { /* creator gone */ }
  return await sup.finished();
}

async function cmdStats(g: Global, argv: string[]): Promise<number> {
  const id = checkId(parse(argv, new Set()).pos[0]);
  const rec = await readRecord(g.root, id);
  const s = await withPod(rec, (c) => c.request('stats', { name: id }));
  process.stdout.write(JSON.stringify(s) + '\n');
  return 0;
}

function cmdFeatures(): number {
  process.stdout.write(JSON.stringify({
    ociVersionMin: '1.0.0', ociVersionMax: '1.1.0', hooks: [], mountOptions: ['ro', 'rw'],
    linux: { namespaces: ['mount', 'uts', 'ipc'], capabilities: [], cgroup: { v1: false, v2: true, systemd: false, systemdUser: false } },
    annotations: { 'io.bulkhead.vm.isolation': 'vm', 'io.bulkhead.vm.memory-mib': 'guest memory for a pod VM', 'io.bulkhead.vm.vcpus': 'vCPUs for a pod VM' },
  }, null, 2) + '\n');
  return 0;
}

async function cmdSetup(g: Global, argv: string[]): Promise<number> {
  const { flags } = parse(argv, new Set(['kernel-deb']));
  const deb = str(flags['kernel-deb']);
  const assets = await ensureGuestAssets(g.assetsRoot, { progress: (l) => process.stdout.write(`bulkhead-vm setup: ${l}\n`), ...(deb ? { kernelDeb: deb } : {}) });
  process.stdout.write(`bulkhead-vm setup: probing the accelerator (boots a guest under KVM once)\n`);
  const a = await detectAccel(assets, { force: flags.reprobe === true });
  process.stdout.write(`bulkhead-vm setup: accel ${a.accel} (${a.reason})\nbulkhead-vm setup: guest kernel ${assets.kernelRelease}; assets in ${assets.dir}\n`);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const { flags, pos } = parse(argv, new Set(['root', 'log', 'log-format', 'assets', 'accel', 'boot-timeout', 'cgroup-parent', 'criu', 'firecracker']), 1);
  const env = process.env;
  const g: Global = {
    root: resolve(str(flags.root) ?? env.BULKHEAD_VM_STATE ?? DEFAULT_ROOT),
    logFormat: str(flags['log-format']) === 'json' ? 'json' : 'text',
    assetsRoot: resolve(str(flags.assets) ?? env.BULKHEAD_ROOT ?? '/var/lib/bulkhead'),
    accel: (str(flags.accel) ?? env.BULKHEAD_VM_ACCEL ?? 'auto') as Global['accel'],
    bootTimeoutMs: Number(str(flags['boot-timeout']) ?? env.BULKHEAD_VM_BOOT_TIMEOUT_MS ?? 120_000),
    cgroupParent: str(flags['cgroup-parent']) ?? 'bulkhead-vm',
  };
  const log = str(flags.log);
  if (log) g.log = log;
  const fc = str(flags.firecracker) ?? env.BULKHEAD_VM_FIRECRACKER;
  if (fc) g.firecracker = fc;
  const [cmd, ...rest] = pos;
  try {
    // Some callers (podman's cleanup through conmon) run `delete` without the runtime flags:
    // find a container created under another --root through the by-id index of the default root.
    const target = rest.find((a) => !a.startsWith('-'));
    if (g.root === DEFAULT_ROOT && target && ['start', 'state', 'kill', 'delete', 'exec', 'stats'].includes(cmd ?? '')) {
      g.root = rootFromIndex(target) ?? g.root;
    }
    if (!['auto', 'kvm', 'tcg'].includes(g.accel)) throw new InvalidArgumentError(`--accel must be auto, kvm or tcg`);
    await mkdir(g.root, { recursive: true, mode: 0o700 });
    switch (cmd) {
      case 'create': return await cmdCreate(g, rest);
      case 'start': return await cmdStart(g, rest);
      case 'state': return await cmdState(g, rest);
      case 'kill': return await cmdKill(g, rest);
      case 'delete': return await cmdDelete(g, rest);
      case 'exec': return await cmdExec(g, rest);
      case 'features': return cmdFeatures();
      case 'stats': return await cmdStats(g, rest);
      case 'setup': return await cmdSetup(g, rest);
      case 'update': throw new UnimplementedError('update: resources of a running microVM container cannot be changed');
      case '_shim': return await cmdShim(g, rest);
      case '_vmd': return await cmdVmd(g, rest);
      case '--version': case 'version': case undefined:
        if (flags.version || cmd) { process.stdout.write('bulkhead-vm version 0.1.0\nspec: 1.0.2\n'); return 0; }
        process.stderr.write(`usage: bulkhead-vm [--root DIR] create|start|state|kill|delete|exec|features|setup ...\n`);
        return 2;
      default:
        process.stderr.write(`bulkhead-vm: unknown command ${cmd}\n`);
        return 2;
    }
  } catch (e) {
    logError(g, e);
    return 1;
  }
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  main(argv).then((code) => {
    process.exitCode = code;
    // a supervisor may still hold stdin open (conmon's pipe): its work is done, leave now
    if (argv.includes('_shim') || argv.includes('exec')) process.exit(code);
  }, (e: unknown) => { process.stderr.write(String(e) + '\n'); process.exitCode = 1; });
}

export const SETUP = SETUP_COMMAND;
