// `bulkhead-vm create`: a container from an OCI bundle; a sandbox container boots its pod's VM first.
import type { spawn } from 'node:child_process';
import { existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { AlreadyExistsError, FailedPreconditionError, fromWire, InvalidArgumentError, toWire } from '../../errors.ts';
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
import type { Accel } from '../vmm.ts';
import { CLI, closeReadyPipe, hostSocket, readyLine, spawnDetached, vmdNodeArgs, type VmCommand } from './common.ts';
import { str } from './flags.ts';
import { refuseVolumesInClone, templateFlags } from './template-flags.ts';
import type { VmGlobal } from './global.ts';

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

/** Starts the pod's VM supervisor unless one answers; true when this call started it. */
async function ensurePodVm(g: VmGlobal, podId: string, dir: string, size: { memoryMiB: number; vcpus: number }, cgroup: string, cpu: { quota: number; period: number } | undefined, netns: string | undefined, tpl: string[] = []): Promise<boolean> {
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
      await startInHost(g, vmdFlags);
    } catch (e) {
      await endPodDir(dir);
      throw e;
    }
    return true;
  }
  const logFd = openSync(join(dir, 'vmd.log'), 'a');
  const child = spawnDetached([...vmdNodeArgs(), CLI, '--root', g.root, '--assets', g.assetsRoot, '_vmd', ...vmdFlags], ['ignore', logFd, logFd, 'pipe']);
  if (child.pid !== undefined) recordProc(dir, 'vmd', child.pid);
  try {
    await readyLine(child, 'pod VM', g.bootTimeoutMs + 30_000);
  } catch (e) {
    // whatever the start left running (supervisor, VMM) ends before its slot files go
    await endPodDir(dir);
    throw e;
  } finally {
    closeReadyPipe(child);
    child.unref();
  }
  return true;
}

/**
 * `--supervisor node`: the node-wide host (vmhost.ts) starts the pod's supervisor; this waits for
 * its answer (the VM ready) on a connection it holds open, so going away abandons the start.
 */
async function startInHost(g: VmGlobal, vmdFlags: string[]): Promise<void> {
  const sock = hostSocket(g.root);
  let c: VmdClient;
  try {
    c = await VmdClient.connect(sock, undefined, 5000);
  } catch {
    const logFd = openSync(join(g.root, 'vmhost.log'), 'a');
    const child = spawnDetached([...vmdNodeArgs(), CLI, '--root', g.root, '--assets', g.assetsRoot, '_vmhost'], ['ignore', logFd, logFd, 'pipe']);
    child.on('error', () => {});
    try { await readyLine(child, 'node-wide VM supervisor', 30_000); } finally { closeReadyPipe(child); child.unref(); }
    c = await VmdClient.connect(sock, undefined, 5000);
  }
  try {
    await c.request('start', { argv: vmdFlags }, g.bootTimeoutMs + 30_000);
  } catch (e) {
    // as the ready line's errors read (ready.ts): the class and reason kept, "pod VM: " in front
    const w = toWire(e);
    throw fromWire({ ...w, message: `pod VM: ${w.message}` });
  } finally {
    c.close();
  }
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
    const spec = await readBundleSpec(bundle);
    const pod = podIdentity(id, spec);
    const cdir = containerDir(g.root, id);
    if (existsSync(cdir)) throw new AlreadyExistsError(`container "${id}" already exists`);
    const assets = await loadGuestAssets(g.assetsRoot);
    const image = await rootfsImage(rootfsPath(bundle, spec), assets.imagesDir, undefined, cdir);
    const kv = [...containerKv(spec), ...(await fileMountsKv(spec))].map(([k, v]) => [k, String(v)] as [string, string]);
    const vols = guestVolumes(spec);
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
        startedVm = await ensurePodVm(g, pod.podId, pdir, vmSize(spec, availableParallelism()), cg, cpu, podNetnsPath(spec), templateFlags(g, spec));
      } else if (!existsSync(join(pdir, 'vmd.sock'))) {
        throw new FailedPreconditionError(`the VM of pod ${pod.podId} is not running (create its sandbox container first)`);
      }
      // the pod's sysctls come with its sandbox's spec; every container of the pod applies them in the guest
      const sysctlFile = join(pdir, 'sysctls.json');
      if (pod.sandbox) await writeFile(sysctlFile, JSON.stringify(spec.linux?.sysctl ?? {}), { mode: 0o600 });
      const podSysctls = JSON.parse(await readFile(sysctlFile, 'utf8').catch(() => '{}')) as Record<string, string>;
      kv.push(...sysctlKv(pod.sandbox ? {} : podSysctls, spec).map(([k, v]) => [k, String(v)] as [string, string]));
      if (!pod.sandbox) kv.push(...namespaceKv(spec, pod.podId, (pid) => podMemberWithPid(g.root, pod.podId, pid)).map(([k, v]) => [k, String(v)] as [string, string]));
      // host paths and kubelet volumes: bind-mounted into the pod's virtio-fs share (refused, never dropped)
      if (vols.length && existsSync(join(pdir, 'template.json'))) refuseVolumesInClone(pod.podId);
      kv.push(...await attachVolumes(shareDir(pdir), id, vols));
      // the session request the container's shim sends to the pod supervisor (delete reads its image)
      const request = join(cdir, 'create.json');
      await writeFile(request, JSON.stringify({ op: 'create', name: id, image: image.path, kv, sandbox: pod.sandbox }), { mode: 0o600 });
      const consoleSocket = str(flags, 'console-socket');
      const tty = spec.process?.terminal === true;
      const shim = shimArgv({ mode: 'container', shim: assets.shim, podDir: pdir, request, tty, exitFile: exitFile(cdir), readyFd: 3 });
      let child: ReturnType<typeof spawn>;
      if (tty) {
        if (!consoleSocket) throw new InvalidArgumentError('process.terminal is set: --console-socket is required');
        const cs = spec.process!.consoleSize;
        child = spawnDetached([consoleSocket, String(cs?.height ?? 24), String(cs?.width ?? 80), '--', assets.shim, ...shim.args], ['ignore', 'ignore', 'inherit', 'pipe'], assets.consoleHelper, shim.cwd);
      } else {
        child = spawnDetached(shim.args, ['inherit', 'inherit', 'inherit', 'pipe'], assets.shim, shim.cwd);
      }
      child.on('error', () => {});
      try {
        await readyLine(child, 'container supervisor', 120_000);
      } finally {
        closeReadyPipe(child);
        child.unref();
      }
      rec.pid = child.pid!;
      const start = liveStartTime(rec.pid);
      if (start !== undefined) rec.pidStart = start;
      await writeJsonAtomic(join(cdir, 'state.json'), rec);
      const pidFile = str(flags, 'pid-file');
      if (pidFile) await writeFile(pidFile, String(rec.pid));
      return 0;
    } catch (e) {
      if (startedVm) {
        try { const c = await VmdClient.connect(join(pdir, 'vmd.sock')); await c.request('shutdown', { reason: 'sandbox create failed' }); c.close(); } catch { /* gone */ }
      }
      await detachVolumes(shareDir(pdir), id).catch(() => {});
      await rm(cdir, { recursive: true, force: true });
      await indexRemove(id, cdir);
      await releaseRootfsImage(image.path, cdir).catch(() => {});
      throw e;
    }
  },
};
export default command;
