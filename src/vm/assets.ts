/**
 * Guest assets of the microVM runtime, kept under `<root>/vm/` (root = Bulkhead's state root,
 * /var/lib/bulkhead by default):
 *
 *   kernel/            Debian's cloud kernel package unpacked (boot/vmlinuz-*, lib/modules/*), never the host's /boot
 *   bin/bulkhead-agent the guest agent (guest/agent.c, linked statically with the host's gcc)
 *   bin/bulkhead-vm-console  host helper that hands a pty master to a --console-socket
 *   bin/bulkhead-vm-shim     host: each container's (and exec's) supervisor (guest/vm-shim.c, static)
 *   initramfs.cpio     /init (busybox sh) + busybox-static + agent + the virtio/overlay/erofs modules
 *   assets.json        what was built, from which inputs
 *   accel.json         whether KVM really runs a guest here (written by the accel probe)
 *   images/            read-only erofs (or ext4) images of container root filesystems, by content key
 *
 * `ensureGuestAssets` builds what is missing or stale and reports each step through `progress`.
 * `loadGuestAssets` only reads, and says which setup command to run when something is missing.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FailedPreconditionError, InternalError, UnavailableError } from '../errors.ts';
import { run, runChecked } from '../util/exec.ts';
import { findOnPath } from '../util/which.ts';
import type { CpioEntry } from './cpio.ts';
import type { RootImageFormat } from './rootfs-image.ts';

export const SETUP_COMMAND = 'bin/bulkhead-vm setup';
const KERNEL_META_PACKAGE = 'linux-image-cloud-amd64';
/** Modules the guest needs, loaded in this order after their dependencies (from modules.dep). */
const GUEST_MODULES = ['virtio_mmio', 'virtio_blk', 'virtio_console', 'virtio_net', 'overlay', 'vmw_vsock_virtio_transport', 'virtiofs', 'bridge', 'erofs'];

const here = dirname(fileURLToPath(import.meta.url));
export const GUEST_SOURCE_DIR = resolve(here, '../../guest');

export interface GuestAssets {
  dir: string;
  kernelRelease: string;
  kernel: string;
  initramfs: string;
  agent: string;
  consoleHelper: string;
  /** The per-container supervisor conmon waits on (guest/vm-shim.c). */
  shim: string;
  imagesDir: string;
  /**
   * The format of container root images (rootfs-image.ts): erofs when the initramfs loads its module
   * (assets.json `rootFormat`, from a setup of this tree) and mkfs.erofs is installed; else ext4, which
   * every guest kernel of ours mounts (assets from before erofs keep working until setup runs again).
   * Unset: ext4.
   */
  rootFormat?: RootImageFormat;
}

export interface AssetOptions {
  progress?: (line: string) => void;
  signal?: AbortSignal;
  /** A kernel .deb to unpack instead of downloading one with apt-get. */
  kernelDeb?: string;
  /** busybox-static binary for the initramfs. */
  busybox?: string;
}

export function vmDir(root: string): string {
  return join(root, 'vm');
}

async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

async function findKernel(kdir: string): Promise<{ release: string; vmlinuz: string } | undefined> {
  let names: string[];
  try { names = await readdir(join(kdir, 'boot')); } catch { return undefined; }
  const v = names.find((n) => n.startsWith('vmlinuz-'));
  if (!v) return undefined;
  const release = v.slice('vmlinuz-'.length);
  if (!existsSync(join(kdir, 'lib/modules', release, 'modules.dep'))) return undefined;
  return { release, vmlinuz: join(kdir, 'boot', v) };
}

/** Reads what setup built; FailedPrecondition naming the setup command when anything is missing. */
export async function loadGuestAssets(root: string): Promise<GuestAssets> {
  const dir = vmDir(root);
  const k = await findKernel(join(dir, 'kernel'));
  if (!k) throw new FailedPreconditionError(`no guest kernel under ${join(dir, 'kernel')}; run \`bin/bulkhead-vm --assets ${root} setup\` (or scripts/setup.sh)`, { reason: 'BH_VM_NOT_SET_UP' });
  const a: GuestAssets = {
    dir,
    kernelRelease: k.release,
    kernel: k.vmlinuz,
    initramfs: join(dir, 'initramfs.cpio'),
    agent: join(dir, 'bin/bulkhead-agent'),
    consoleHelper: join(dir, 'bin/bulkhead-vm-console'),
    shim: join(dir, 'bin/bulkhead-vm-shim'),
    imagesDir: join(dir, 'images'),
  };
  for (const f of [a.initramfs, a.agent, a.consoleHelper, a.shim]) {
    if (!existsSync(f)) throw new FailedPreconditionError(`guest asset ${f} is missing; run \`bin/bulkhead-vm --assets ${root} setup\``, { reason: 'BH_VM_NOT_SET_UP' });
  }
  const meta = JSON.parse(await readFile(join(dir, 'assets.json'), 'utf8').catch(() => '{}')) as Record<string, unknown>;
  if (meta.rootFormat === 'erofs' && findOnPath('mkfs.erofs')) a.rootFormat = 'erofs';
  return a;
}

/**
 * Whether `<root>/vm` holds an agent, console helper and container shim built from this tree's
 * guest/ sources (assets.json records the sources' hashes). A stale agent lacks what the host side
 * now sends; a stale shim speaks an older session protocol.
 */
export async function guestAssetsCurrent(root: string): Promise<boolean> {
  let meta: Record<string, string>;
  try { meta = JSON.parse(await readFile(join(vmDir(root), 'assets.json'), 'utf8')) as Record<string, string>; } catch { return false; }
  return meta.agentSource === await sha256File(join(GUEST_SOURCE_DIR, 'agent.c'))
    && meta.consoleSource === await sha256File(join(GUEST_SOURCE_DIR, 'console-helper.c'))
    && meta.shimSource === await sha256File(join(GUEST_SOURCE_DIR, 'vm-shim.c'));
}

async function downloadKernel(dir: string, opts: AssetOptions): Promise<void> {
  const say = opts.progress ?? (() => {});
  const kdir = join(dir, 'kernel');
  const tmp = await mkdtemp(join(dir, '.kernel-'));
  try {
    let deb = opts.kernelDeb;
    if (!deb) {
      say(`downloading ${KERNEL_META_PACKAGE} with apt-get download`);
      const meta = await run('apt-get', ['download', KERNEL_META_PACKAGE], { cwd: tmp, timeoutMs: 300_000, ...(opts.signal ? { signal: opts.signal } : {}) });
      if (meta.code !== 0) throw new UnavailableError(`apt-get download ${KERNEL_META_PACKAGE} failed: ${meta.stderr.trim()}`);
      const metaDeb = (await readdir(tmp)).find((n) => n.endsWith('.deb'));
      if (!metaDeb) throw new UnavailableError(`apt-get download ${KERNEL_META_PACKAGE} left no .deb`);
      const dep = (await runChecked('dpkg-deb', ['-f', join(tmp, metaDeb), 'Depends'])).stdout;
      const pkg = /linux-image-[0-9][^\s,(]*-cloud-amd64/.exec(dep)?.[0];
      if (!pkg) throw new InternalError(`cannot find the kernel image package in Depends: ${dep.trim()}`);
      await rm(join(tmp, metaDeb));
      say(`downloading ${pkg}`);
      const r = await run('apt-get', ['download', pkg], { cwd: tmp, timeoutMs: 600_000, ...(opts.signal ? { signal: opts.signal } : {}) });
      if (r.code !== 0) throw new UnavailableError(`apt-get download ${pkg} failed: ${r.stderr.trim()}`);
      const name = (await readdir(tmp)).find((n) => n.endsWith('.deb'));
      if (!name) throw new UnavailableError(`apt-get download ${pkg} left no .deb`);
      deb = join(tmp, name);
    }
    say(`unpacking ${deb}`);
    const out = join(tmp, 'root');
    await mkdir(out);
    await runChecked('dpkg-deb', ['-x', deb, out], { timeoutMs: 300_000 });
    const boot = await readdir(join(out, 'boot'));
    const v = boot.find((n) => n.startsWith('vmlinuz-'));
    if (!v) throw new InternalError(`${deb} holds no vmlinuz`);
    const release = v.slice('vmlinuz-'.length);
    say(`indexing modules of ${release} (depmod -b)`);
    await runChecked('depmod', ['-b', out, release], { timeoutMs: 120_000 });
    // Keep only what the guest can use: the image and the modules tree.
    await rm(join(out, 'usr'), { recursive: true, force: true });
    await rm(kdir, { recursive: true, force: true });
    await rename(out, kdir);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Module files to insmod, in dependency order, relative to lib/modules/RELEASE. */
export function moduleLoadOrder(modulesDep: string, wanted: readonly string[]): string[] {
  const deps = new Map<string, string[]>();
  for (const line of modulesDep.split('\n')) {
    const i = line.indexOf(':');
    if (i < 0) continue;
    deps.set(line.slice(0, i), line.slice(i + 1).trim().split(/\s+/).filter(Boolean));
  }
  const byName = new Map<string, string>();
  for (const path of deps.keys()) byName.set(path.split('/').pop()!.replace(/\.ko(\.\w+)?$/, '').replace(/-/g, '_'), path);
  const order: string[] = [];
  const visit = (path: string): void => {
    if (order.includes(path)) return;
    // modules.dep lists all (transitive) dependencies; load the deepest first.
    for (const d of [...(deps.get(path) ?? [])].reverse()) visit(d);
    order.push(path);
  };
  for (const w of wanted) {
    const p = byName.get(w);
    if (p) visit(p);
  }
  return order;
}

function initScript(modules: readonly string[]): string {
  // Stage 1 copies the initramfs into a tmpfs and switch_roots into it: pivot_root(2), which the
  // agent uses to enter a container's root, does not work while / is the initramfs itself.
  return `#!/bin/busybox sh
# Bulkhead guest init: mounts the basics, loads the virtio modules, starts the agent as PID 1.
B=/bin/busybox
if [ ! -e /.stage2 ]; then
  echo "bulkhead-init: initramfs up, moving to tmpfs" >/dev/console
  $B mkdir -p /newroot
  $B mount -t tmpfs -o mode=0755 rootfs /newroot
  $B cp -a /bin /sbin /lib /etc /init /newroot/
  $B mkdir -p /newroot/dev /newroot/proc /newroot/sys /newroot/run /newroot/tmp
  $B touch /newroot/.stage2
  $B mount -t devtmpfs devtmpfs /newroot/dev
  exec $B switch_root -c /dev/console /newroot /init
fi
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev 2>/dev/null
$B mkdir -p /dev/pts
$B mount -t devpts -o ptmxmode=0666,mode=0620 devpts /dev/pts
$B mount -t tmpfs -o mode=0755 tmpfs /run
for m in ${modules.map((m) => m.split('/').pop()).join(' ')}; do
  $B insmod /lib/modules/$m || echo "bulkhead-init: insmod $m failed" >/dev/console
done
$B mount -t cgroup2 cgroup2 /sys/fs/cgroup
# The pod's volumes (virtio-fs tag bhshare, when the VMM has the device); the agent binds them into containers.
$B mkdir -p /run/share
$B mount -t virtiofs bhshare /run/share 2>/dev/null || $B rmdir /run/share
echo "+memory +cpu +pids" > /sys/fs/cgroup/cgroup.subtree_control
$B mkdir -p /sys/fs/cgroup/bulkhead
echo "+memory +cpu +pids" > /sys/fs/cgroup/bulkhead/cgroup.subtree_control
$B ip link set lo up 2>/dev/null
# Pod network (bulkhead.addr=IP/LEN ... bulkhead.gw=IP bulkhead.mtu=N on the kernel command line):
# eth0 has the pod interface's MAC already (the VMM sets it); give it the pod's addresses and route.
GW=
for w in $($B cat /proc/cmdline); do
  case "$w" in
    bulkhead.mtu=*) $B ip link set eth0 mtu "\${w#*=}" || echo "bulkhead-init: eth0 mtu failed" >/dev/console ;;
    bulkhead.addr=*) $B ip addr add "\${w#*=}" dev eth0 || echo "bulkhead-init: eth0 address \${w#*=} failed" >/dev/console ;;
    bulkhead.gw=*) GW="\${w#*=}" ;;
  esac
done
if $B grep -q 'bulkhead.addr=' /proc/cmdline; then
  $B ip link set eth0 up || echo "bulkhead-init: eth0 up failed" >/dev/console
  if [ -n "$GW" ]; then $B ip route add default via "$GW" dev eth0 || echo "bulkhead-init: default route failed" >/dev/console; fi
fi
echo "bulkhead-init: modules loaded, starting the agent" >/dev/console
exec /sbin/bulkhead-agent
`;
}

async function buildInitramfs(dir: string, release: string, agent: string, busybox: string): Promise<Buffer> {
  const modRoot = join(dir, 'kernel/lib/modules', release);
  const order = moduleLoadOrder(await readFile(join(modRoot, 'modules.dep'), 'utf8'), GUEST_MODULES);
  const entries: CpioEntry[] = [
    ...['bin', 'sbin', 'dev', 'proc', 'sys', 'run', 'tmp', 'lib', 'lib/modules', 'etc'].map((p): CpioEntry => ({ path: p, type: 'dir', mode: 0o755 })),
    { path: 'dev/console', type: 'char', mode: 0o600, major: 5, minor: 1 },
    { path: 'dev/null', type: 'char', mode: 0o666, major: 1, minor: 3 },
    { path: 'init', type: 'file', mode: 0o755, data: Buffer.from(initScript(order)) },
    { path: 'bin/busybox', type: 'file', mode: 0o755, data: await readFile(busybox) },
    { path: 'bin/sh', type: 'symlink', mode: 0o777, target: 'busybox' },
    { path: 'sbin/bulkhead-agent', type: 'file', mode: 0o755, data: await readFile(agent) },
  ];
  for (const m of order) entries.push({ path: `lib/modules/${m.split('/').pop()}`, type: 'file', mode: 0o644, data: await readFile(join(modRoot, m)) });
  // setup-only modules load on demand: the pod supervisor (a long-lived process) reads assets without them
  const { buildCpio } = await import('./cpio.ts');
  return buildCpio(entries);
}

async function isStatic(path: string): Promise<boolean> {
  const r = await run('file', ['-L', path], { timeoutMs: 10_000 }).catch(() => undefined);
  if (r && r.code === 0) return /statically linked|static-pie/.test(r.stdout);
  const l = await run('ldd', [path], { timeoutMs: 10_000 }).catch(() => undefined);
  return !!l && /not a dynamic executable|statically linked/.test(l.stdout + l.stderr);
}


/**
 * Makes `<root>/vm` complete: downloads and unpacks the kernel when missing, (re)builds the agent,
 * the console helper, the container shim and the initramfs when their sources changed. Idempotent.
 */
export async function ensureGuestAssets(root: string, opts: AssetOptions = {}): Promise<GuestAssets> {
  const say = opts.progress ?? (() => {});
  const dir = vmDir(root);
  await mkdir(join(dir, 'images'), { recursive: true });
  let k = await findKernel(join(dir, 'kernel'));
  if (!k) {
    await downloadKernel(dir, opts);
    k = await findKernel(join(dir, 'kernel'));
    if (!k) throw new InternalError(`kernel unpacked into ${join(dir, 'kernel')} but no vmlinuz/modules.dep found`);
  } else {
    say(`guest kernel ${k.release} present`);
  }
  const metaPath = join(dir, 'assets.json');
  let meta: Record<string, string> = {};
  try { meta = JSON.parse(await readFile(metaPath, 'utf8')) as Record<string, string>; } catch { /* first run */ }
  const agentSrc = join(GUEST_SOURCE_DIR, 'agent.c');
  const consoleSrc = join(GUEST_SOURCE_DIR, 'console-helper.c');
  const agent = join(dir, 'bin/bulkhead-agent');
  const consoleHelper = join(dir, 'bin/bulkhead-vm-console');
  const { compileC } = await import('../util/cc.ts');
  const agentHash = await sha256File(agentSrc);
  if (meta.agentSource !== agentHash || !existsSync(agent)) {
    say('building the guest agent (gcc -static guest/agent.c)');
    await compileC(agentSrc, agent, ['-static'], opts.signal);
    meta.agentSource = agentHash;
  }
  const consoleHash = await sha256File(consoleSrc);
  if (meta.consoleSource !== consoleHash || !existsSync(consoleHelper)) {
    say('building the console helper (gcc guest/console-helper.c)');
    await compileC(consoleSrc, consoleHelper, [], opts.signal);
    meta.consoleSource = consoleHash;
  }
  const shimSrc = join(GUEST_SOURCE_DIR, 'vm-shim.c');
  const shim = join(dir, 'bin/bulkhead-vm-shim');
  const shimHash = await sha256File(shimSrc);
  if (meta.shimSource !== shimHash || !existsSync(shim)) {
    say('building the container shim (gcc -static guest/vm-shim.c)');
    await compileC(shimSrc, shim, ['-static'], opts.signal);
    meta.shimSource = shimHash;
  }
  const busybox = opts.busybox ?? ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  if (!busybox) throw new UnavailableError('busybox is not installed; apt-get install busybox-static');
  if (!(await isStatic(busybox))) throw new UnavailableError(`${busybox} is not statically linked; apt-get install busybox-static`);
  const initramfs = join(dir, 'initramfs.cpio');
  const initKey = createHash('sha256').update([k.release, agentHash, await sha256File(busybox), initScript([]), GUEST_MODULES.join(',')].join('\n')).digest('hex');
  if (meta.initramfs !== initKey || !existsSync(initramfs)) {
    say('building the initramfs (busybox, agent, virtio modules)');
    const data = await buildInitramfs(dir, k.release, agent, busybox);
    await writeFile(initramfs + '.tmp', data);
    await rename(initramfs + '.tmp', initramfs);
    meta.initramfs = initKey;
    say(`initramfs: ${(data.length / 1024 / 1024).toFixed(1)} MiB`);
  }
  // this initramfs loads erofs: container roots may be erofs images (GuestAssets.rootFormat)
  meta.rootFormat = 'erofs';
  meta.kernelRelease = k.release;
  await writeFile(metaPath, JSON.stringify(meta, null, 2) + '\n');
  const st = await stat(initramfs);
  if (st.size === 0) throw new InternalError(`${initramfs} is empty`);
  return loadGuestAssets(root);
}
