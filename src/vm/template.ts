/**
 * VM templates: a pod VM started as a copy of one that booted once, instead of booting.
 *
 * A template is a QEMU `microvm` guest booted with its RAM in a file (`memory-backend-file`,
 * share=on), its agent brought to its hello, then paused and its device state saved with the
 * `x-ignore-shared` migration capability (the RAM stays in the file, not in the stream). A clone
 * is QEMU started with the same machine and devices, the RAM file mapped share=off (private,
 * copy-on-write: clones share the template's untouched pages through the page cache) and
 * `-incoming defer`; the state is fed over QMP from fd 4. Then the pod supervisor sends the agent
 * its identity (fresh entropy, the clock, MAC/addresses/hostname: the `U` frame).
 *
 * Kept in `<root>/templates/<key>/` (root = bulkhead-vm's state root): `memory`, `state`,
 * `meta.json`. The key hashes every input: kernel, initramfs (agent inside), QEMU binary (by
 * real path, size, mtime, inode: a QEMU upgrade is another key, a template never crosses QEMU
 * versions), accelerator, memory, vCPUs, NIC, the device layout (qemuArgs of a canonical VM), the
 * format version below and the sharing scope (a trust level, or "node"). Built into a temporary
 * directory and renamed into place (a reader sees a whole template or none), one builder per key
 * (a lock file). A template replaced by a build of the same family (same scope and sizing,
 * another key) is removed; clones still running keep their mapping of the unlinked file.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, realpathSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeadlineExceededError, FailedPreconditionError, InternalError, InvalidArgumentError } from '../errors.ts';
import { lock, lockHeld } from '../image/lock.ts';
import { sweepLockLeftovers } from '../util/lock-record.ts';
import { silentLogger } from '../util/log.ts';
import { removeTree } from '../cgroup/tree.ts';
import { placeVmm, removeVmmCgroups } from './vm-cgroup.ts';
import { templateBuildMs } from './limits.ts';
import type { GuestAssets } from './assets.ts';
import { GUEST_KERNEL_ARGS, QEMU_BINARY, qemuArgs, QemuVmm } from './qemu.ts';
import { Qmp } from './qmp.ts';
import { checkAgentProtocol, SLOT_BYTES, SLOT_COUNT, waitForHello } from './vmd.ts';
import { encodeFrame, encodeKv, FrameDecoder, type Frame } from './protocol.ts';
import { fillSlotFile } from './slots.ts';
import { trace } from './trace.ts';
import { sameImage, sandboxImageId, TEMPLATE_SANDBOX_GID } from './template-sandbox.ts';
import type { TemplateImage, TemplateProvider, TemplateRequest, VmConfig, VmHandle } from './vmm.ts';
import { findOnPath } from '../util/which.ts';
import { ownedTempDir } from '../util/temp-dir.ts';

export { TRUST_LEVEL_ANNOTATION, VOLUMES_ANNOTATION } from './annotations.ts';
export { parseTemplateSharing, TEMPLATE_SHARING, templateScope, type TemplateSharing } from './template-sharing.ts';

/** Bumped when a template's make-up changes in a way its inputs below do not show. */
const TEMPLATE_FORMAT = 1;
/** The MAC of a template's NIC; the agent gives each clone its pod's (identity, `U`). */
export const TEMPLATE_MAC = '02:42:42:00:00:01';

export function templatesDir(root: string): string { return join(root, 'templates'); }

/** A file's identity for a key: path, size, mtime, inode (cheap; a rewrite changes it). */
export function fileId(path: string): string {
  const st = statSync(path);
  return `${path}|${st.size}|${st.mtimeMs}|${st.ino}`;
}

/** The QEMU binary's real path, found on PATH as spawn would. */
export function qemuBinaryPath(binary = QEMU_BINARY): string {
  const p = findOnPath(binary);
  if (p) return realpathSync(p);
  throw new FailedPreconditionError(`${binary} is not installed; apt-get install qemu-system-x86`);
}

/** The template VM's config (paths under `dir`); a clone's differs only in its paths, NIC backend and share flag. */
function templateConfig(assets: Pick<GuestAssets, 'kernel' | 'initramfs'>, req: Pick<TemplateRequest, 'memoryMiB' | 'vcpus' | 'accel' | 'nic'>, dir: string): VmConfig {
  return {
    name: 'template', kernel: assets.kernel, initramfs: assets.initramfs, memoryMiB: req.memoryMiB, vcpus: req.vcpus, accel: req.accel,
    consoleLog: join(dir, 'console.log'), workDir: dir,
    drives: Array.from({ length: SLOT_COUNT }, (_, i) => ({ serial: `slot${i}`, path: join(dir, `slot${i}.img`) })),
    memFile: { path: join(dir, 'memory'), share: true }, qmp: join(dir, 'qmp'),
    ...(req.nic ? { unpluggedNic: true, mac: TEMPLATE_MAC } : {}),
  };
}

/** The device layout, as QEMU is told it, of a canonical template VM (paths and the kernel command line left out). */
function layoutDigest(req: Pick<TemplateRequest, 'memoryMiB' | 'vcpus' | 'accel' | 'nic'>): string {
  const args = qemuArgs(templateConfig({ kernel: '/k', initramfs: '/i' }, req, '/t'));
  const i = args.indexOf('-append');
  if (i >= 0) args.splice(i, 2);
  return createHash('sha256').update(args.join('\0')).digest('hex');
}

/**
 * `family`: the key without the files' identities (a newer build of a family replaces the older);
 * `base`: the family without the sandbox request (the templates of one sizing and scope).
 */
export interface TemplateKeys { key: string; family: string; base: string; inputs: Record<string, string | number | boolean> }

export function templateKeys(assets: Pick<GuestAssets, 'kernel' | 'initramfs'>, req: Pick<TemplateRequest, 'memoryMiB' | 'vcpus' | 'accel' | 'nic'> & { sandbox?: { hash: string } }, scope: string, binary: string): TemplateKeys {
  const base = { format: TEMPLATE_FORMAT, scope, memoryMiB: req.memoryMiB, vcpus: req.vcpus, accel: req.accel, nic: req.nic };
  // a template with a sandbox container: its request (generic part and root image) is part of the key
  const family = req.sandbox ? { ...base, sandbox: req.sandbox.hash } : base;
  // the kernel command line: the layout leaves -append out (its TSC figures are the host's, read each time)
  const inputs = { ...family, kernel: fileId(assets.kernel), initramfs: fileId(assets.initramfs), qemu: fileId(binary), layout: layoutDigest(req), cmdline: GUEST_KERNEL_ARGS.join(' ') };
  const h = (o: object): string => createHash('sha256').update(JSON.stringify(o)).digest('hex').slice(0, 32);
  return { key: h(inputs), family: h(family), base: h(base), inputs };
}

/**
 * Most templates with a sandbox container per sizing and scope (one per distinct sandbox request);
 * a pod whose request has none when this many exist clones the template without one.
 */
export const MAX_SANDBOX_TEMPLATES = 3;

interface TemplateMeta extends TemplateKeys {
  kernelRelease: string; agentVersion: number; qemuVersion: string; built: string; buildMs: number;
  sandbox?: { hash: string; gid: number; pid: number };
  /** The root image the sandbox container was made from (its identity: a rebuilt image makes the template stale). */
  sandboxImage?: { path: string; id: string };
}

function imageOf(dir: string, meta: TemplateMeta): TemplateImage {
  return { key: meta.key, memFile: join(dir, 'memory'), stateFile: join(dir, 'state'), kernel: meta.kernelRelease, agentVersion: meta.agentVersion, nodeWide: meta.inputs.scope === 'node', ...(meta.sandbox ? { sandbox: meta.sandbox } : {}) };
}

async function readMeta(dir: string): Promise<TemplateMeta | undefined> {
  try { return JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8')) as TemplateMeta; } catch { return undefined; }
}

const ignoreShared = { capabilities: [{ capability: 'x-ignore-shared', state: true }] };

/** Polls query-migrate until the migration is done; throws with QEMU's reason when it failed. */
async function migrationDone(qmp: Qmp, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await qmp.cmd('query-migrate') as { status?: string; 'error-desc'?: string };
    if (r.status === 'completed') return;
    if (r.status === 'failed' || r.status === 'cancelled') throw new InternalError(`saving the template VM failed: ${r['error-desc'] ?? r.status}`);
    if (Date.now() > until) throw new DeadlineExceededError(`saving the template VM took over ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** The parent of the template builds' cgroups (in every hierarchy the VMM is placed in). */
export const TEMPLATE_CGROUPS = 'bulkhead-vm-templates';

/** The cgroup (relative, in every hierarchy) a template VM is built in: one per build dir. */
export function templateCgroup(buildDir: string): string {
  return `${TEMPLATE_CGROUPS}/${basename(buildDir).replace(/^\.build-/, '')}`;
}

/**
 * The cgroups journaled in build dir `dir` (its QEMU gone: it dies with its builder), then their
 * parent when no other build has a cgroup there: the build that made the parent may have ended
 * while this one ran, and left it. A build making its cgroup at that moment has its rmdir fail
 * (EBUSY: not empty), or makes the parent again (makeCgroup): nothing to wait for.
 */
async function removeBuildCgroups(dir: string): Promise<void> {
  await removeVmmCgroups(dir).catch(() => []);
  await removeTree(TEMPLATE_CGROUPS, { deep: false });
}

/** A build dir and its cgroups. */
async function removeBuildDir(dir: string): Promise<void> {
  await removeBuildCgroups(dir);
  await rm(dir, { recursive: true, force: true });
}

export interface TemplateStoreOptions {
  root: string;
  assets: GuestAssets;
  /** Sharing scope (templateScope): part of the key. */
  scope: string;
  bootTimeoutMs: number;
  binary?: string;
}

/** Templates under `<root>/templates` for one sharing scope; the pod supervisor's TemplateProvider. */
export class TemplateStore implements TemplateProvider {
  readonly #o: TemplateStoreOptions;
  readonly #dir: string;
  constructor(o: TemplateStoreOptions) {
    this.#o = o;
    this.#dir = templatesDir(o.root);
  }

  /** The template for `req` if one is built (no build). */
  async find(req: TemplateRequest): Promise<TemplateImage | undefined> {
    const k = templateKeys(this.#o.assets, req, this.#o.scope, qemuBinaryPath(this.#o.binary));
    const dir = join(this.#dir, k.key);
    const meta = await readMeta(dir);
    return meta?.key === k.key ? imageOf(dir, meta) : undefined;
  }

  /**
   * The template for `req`, built if missing. With a sandbox request: the template with that
   * sandbox container (built when fewer than MAX_SANDBOX_TEMPLATES of this sizing and scope exist),
   * else — none and no room, or its build failed — the template without one.
   */
  async get(req: TemplateRequest, progress: (line: string) => void): Promise<TemplateImage> {
    const binary = qemuBinaryPath(this.#o.binary);
    if (req.sandbox) {
      try {
        const t = await this.#obtain(req, binary, progress, (k) => this.#roomForSandbox(k));
        if (t) return t;
      } catch (e) {
        progress(`VM template with the sandbox container not used (${(e as Error).message.split('\n')[0]}): the template without it instead`);
      }
    }
    const { sandbox: _s, ...plain } = req;
    return (await this.#obtain(plain, binary, progress, () => Promise.resolve(true)))!;
  }

  /** Whether another template with a sandbox container of this sizing and scope may be built. */
  async #roomForSandbox(k: TemplateKeys): Promise<boolean> {
    let n = 0;
    for (const name of await readdir(this.#dir).catch(() => [] as string[])) {
      if (name.startsWith('.') || name.endsWith('.lock') || name === k.key) continue;
      const m = await readMeta(join(this.#dir, name));
      if (m?.base === k.base && m.sandbox) n++;
    }
    return n < MAX_SANDBOX_TEMPLATES;
  }

  /** The template for `req` (built under its lock when `mayBuild` says so), or undefined. */
  async #obtain(req: TemplateRequest, binary: string, progress: (line: string) => void, mayBuild: (k: TemplateKeys) => Promise<boolean>): Promise<TemplateImage | undefined> {
    const k = templateKeys(this.#o.assets, req, this.#o.scope, binary);
    const dir = join(this.#dir, k.key);
    const have = await readMeta(dir);
    if (have?.key === k.key) return imageOf(dir, have);
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    if (!(await mayBuild(k))) return undefined;
    const waitMs = templateBuildMs(this.#o.bootTimeoutMs);
    const release = await lock(join(this.#dir, `${k.key}.lock`), AbortSignal.timeout(waitMs)).catch((e: unknown) => {
      throw new DeadlineExceededError(`another build of VM template ${k.key.slice(0, 12)} did not end within ${waitMs} ms (a build's limits follow the boot timeout: --boot-timeout or BULKHEAD_VM_BOOT_TIMEOUT_MS)`, { cause: e });
    });
    try {
      const again = await readMeta(dir); // another builder finished while this one waited
      if (again?.key === k.key) return imageOf(dir, again);
      const meta = await this.#build(k, req, binary, progress);
      await this.#prune(k, binary, progress);
      return imageOf(dir, meta);
    } finally {
      await release();
    }
  }

  async #build(k: TemplateKeys, req: TemplateRequest, binary: string, say: (line: string) => void): Promise<TemplateMeta> {
    const a = this.#o.assets;
    // leftovers of a builder that died (this key's lock is ours now)
    for (const n of await readdir(this.#dir)) if (n.startsWith(`.build-${k.key}-`)) await removeBuildDir(join(this.#dir, n));
    const tmp = await mkdtemp(join(this.#dir, `.build-${k.key}-`));
    const t0 = performance.now();
    let sockDir: string | undefined;
    try {
      say(`building VM template ${k.key.slice(0, 12)} (${req.memoryMiB} MiB, ${req.vcpus} vCPU, ${req.accel}${req.nic ? ', NIC' : ''}, scope ${this.#o.scope}${req.sandbox ? ', with its sandbox container' : ''}): booting`);
      for (let i = 0; i < SLOT_COUNT; i++) {
        const fh = await open(join(tmp, `slot${i}.img`), 'w');
        await fh.truncate(SLOT_BYTES);
        await fh.close();
      }
      // its sockets in a short private directory (a unix socket path must stay under 108 bytes),
      // named after this process: one left by a builder killed mid-build goes at the next build
      sockDir = await ownedTempDir('bh-tpl-');
      const cfg = { ...templateConfig(a, req, tmp), qmp: join(sockDir, 'qmp') };
      const vm = await new QemuVmm(binary).boot(cfg);
      // in a cgroup of its own (v1 memory/cpu/pids and v2, journaled in the build dir, owner-recorded
      // for the daemons' orphan sweep): its RAM — the memory file's pages, which every clone maps —
      // was charged to whichever pod's supervisor started the build, so a small memory limit on that
      // pod could OOM the build, and the charge stayed with that pod's cgroup after the pod was gone
      await placeVmm(templateCgroup(tmp), [vm.pid], { memoryBytes: (req.memoryMiB + 256) * 1048576 }, tmp, silentLogger).catch(() => []);
      let hello: { kernel: string; version: number; rest: Buffer };
      let sandbox: TemplateMeta['sandbox'];
      try {
        hello = await waitForHello(vm, this.#o.bootTimeoutMs);
        checkAgentProtocol(hello.version, a.dir);
        if (req.sandbox) {
          sandbox = { hash: req.sandbox.hash, gid: TEMPLATE_SANDBOX_GID, pid: await startTemplateSandbox(vm, join(tmp, 'slot0.img'), req.sandbox, hello.rest, this.#o.bootTimeoutMs) };
        }
        say(`VM template ${k.key.slice(0, 12)}: agent up after ${Math.round(performance.now() - t0)} ms${sandbox ? ', sandbox container started' : ''}; saving`);
        await this.#save(vm, tmp, sockDir);
      } finally {
        await vm.stop(1000);
        await removeBuildCgroups(tmp);
      }
      const version = await readFile(join(tmp, 'qemu-version'), 'utf8').catch(() => '');
      const meta: TemplateMeta = {
        ...k, kernelRelease: hello.kernel, agentVersion: hello.version, qemuVersion: version || binary, built: new Date().toISOString(), buildMs: Math.round(performance.now() - t0),
        ...(sandbox && req.sandbox ? { sandbox, sandboxImage: { path: req.sandbox.image, id: sandboxImageId(req.sandbox.image) } } : {}),
      };
      for (const f of ['memory', 'state']) { const fh = await open(join(tmp, f), 'r+'); await fh.datasync(); await fh.close(); }
      for (let i = 0; i < SLOT_COUNT; i++) await rm(join(tmp, `slot${i}.img`), { force: true });
      await writeFile(join(tmp, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
      await rename(tmp, join(this.#dir, k.key));
      say(`VM template ${k.key.slice(0, 12)} saved in ${meta.buildMs} ms`);
      return meta;
    } catch (e) {
      await removeBuildDir(tmp);
      throw e;
    } finally {
      if (sockDir) await rm(sockDir, { recursive: true, force: true });
    }
  }

  /** Pauses the template VM and saves its device state (RAM stays in its file) to `<tmp>/state`. */
  async #save(vm: VmHandle, tmp: string, sockDir: string): Promise<void> {
    const qmp = await Qmp.connect(vm.qmp!, 10_000);
    const sock = join(sockDir, 'migrate');
    const server = createServer();
    try {
      const v = await qmp.cmd('query-version') as { qemu?: { major: number; minor: number; micro: number }; package?: string };
      if (v.qemu) await writeFile(join(tmp, 'qemu-version'), `${v.qemu.major}.${v.qemu.minor}.${v.qemu.micro}${v.package ? ` ${v.package.trim()}` : ''}`);
      await qmp.cmd('stop');
      await qmp.cmd('migrate-set-capabilities', ignoreShared);
      await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(sock, () => resolve()); });
      const received = new Promise<void>((resolve, reject) => {
        server.once('connection', (c) => { pipeline(c, createWriteStream(join(tmp, 'state'), { mode: 0o600 })).then(resolve, reject); });
      });
      await qmp.cmd('migrate', { uri: `unix:${sock}` });
      await migrationDone(qmp, 60_000);
      await Promise.race([received, sleep(10_000).then(() => { throw new DeadlineExceededError('the template VM\'s state stream did not end'); })]);
    } finally {
      server.close();
      qmp.close();
      await rm(sock, { force: true });
    }
  }

  /**
   * After a build: removes this family's other templates (an input changed), any template whose
   * inputs no longer give its key (stale: a new kernel, agent or QEMU), and builds left by dead builders.
   */
  async #prune(k: TemplateKeys, binary: string, say: (line: string) => void): Promise<void> {
    await sweepLockLeftovers(this.#dir); // hidden files of lock steps whose process was killed
    for (const n of await readdir(this.#dir)) {
      const p = join(this.#dir, n);
      if (n.startsWith('.build-')) {
        // another key's build: removed only when nobody builds it (its lock is not held)
        const key = n.slice('.build-'.length).split('-')[0]!;
        if (key !== k.key && !(await lockHeld(join(this.#dir, `${key}.lock`)))) await removeBuildDir(p);
        continue;
      }
      if (n === k.key || n.endsWith('.lock')) continue;
      const m = await readMeta(p);
      if (!m) continue;
      if (m.family === k.family && m.key !== k.key) {
        await rm(p, { recursive: true, force: true });
        say(`VM template ${n.slice(0, 12)} removed: its inputs changed (replaced by ${k.key.slice(0, 12)})`);
        continue;
      }
      // another size or scope: stale when its own inputs no longer give its key (new kernel, agent, QEMU)
      if (await lockHeld(join(this.#dir, `${n}.lock`))) continue;
      let now: string | undefined;
      try {
        const i = m.inputs as { memoryMiB: number; vcpus: number; accel: 'kvm' | 'tcg'; nic: boolean; scope: string; sandbox?: string };
        now = templateKeys(this.#o.assets, { memoryMiB: i.memoryMiB, vcpus: i.vcpus, accel: i.accel, nic: i.nic, ...(i.sandbox ? { sandbox: { hash: i.sandbox } } : {}) }, i.scope, binary).key;
      } catch { now = undefined; }
      // a sandbox container's root image rebuilt (or gone): no pod's request names that file any more
      if (now === m.key && m.sandboxImage && !sameImage(m.sandboxImage.path, m.sandboxImage.id)) now = undefined;
      if (now !== m.key) {
        await rm(p, { recursive: true, force: true });
        say(`VM template ${n.slice(0, 12)} removed: stale (its kernel, initramfs, QEMU, layout or sandbox image changed)`);
      }
    }
  }

  async discard(t: TemplateImage, _reason: string): Promise<void> {
    const dir = join(this.#dir, t.key);
    if ((await readMeta(dir))?.key === t.key) await rm(dir, { recursive: true, force: true });
  }

  async restore(vm: VmHandle, t: TemplateImage, timeoutMs: number, beforeRun?: () => Promise<void>, qmp?: Qmp): Promise<void> {
    if (!vm.qmp) throw new InternalError('a clone needs a QMP socket');
    try {
      await restoreClone(vm.qmp, timeoutMs, beforeRun, qmp);
    } catch (e) {
      // QEMU refused the state (it exits on a failed load) or said the load failed: this template
      // will fail every clone, so it goes and the next pod builds it again. A slow restore stays, and
      // so does a clone ended from outside (a signal, or a clean exit: its pod deleted under the
      // restore) or one whose pod dir is gone (nothing of the pod to open: a forced delete that did
      // not reach its supervisor) — a good template was thrown away for those.
      const exit = await Promise.race([vm.wait(), sleep(300).then(() => undefined)]);
      const exited = exit !== undefined;
      if (!exited && !(e instanceof TemplateLoadFailed)) throw e;
      if (exit && !(e instanceof TemplateLoadFailed) && (exit.signal !== null || exit.code === 0 || !existsSync(dirname(vm.qmp)))) throw e;
      const dir = join(this.#dir, t.key);
      if ((await readMeta(dir))?.key === t.key) await rm(dir, { recursive: true, force: true });
      throw new InternalError(`${(e as Error).message}${exited ? ' (QEMU exited)' : ''}; template ${t.key.slice(0, 12)} removed, the next pod builds it again`);
    }
  }
}

/**
 * A conversation with a guest's agent before any pod supervisor routes its frames (a template's build,
 * a standby VMM's warm-up): one request at a time, answered `A` (its text) or `F` (thrown, with `what`
 * and the agent's reason), within `until` (ms since the epoch); other frames are not this talk's.
 */
export class AgentTalk {
  readonly #vm: VmHandle;
  readonly #dec = new FrameDecoder('guest agent');
  readonly #answers: Frame[] = [];
  #violation: Error | undefined;
  #exited = false;
  readonly #onData = (b: Buffer): void => {
    try { for (const f of this.#dec.push(b)) if (f.type === 'A' || f.type === 'F') this.#answers.push(f); } catch (e) { this.#violation = e as Error; }
  };

  constructor(vm: VmHandle, rest: Buffer = Buffer.alloc(0)) {
    this.#vm = vm;
    vm.control.on('data', this.#onData);
    void vm.wait().then(() => { this.#exited = true; });
    if (rest.length) this.#onData(rest);
  }

  async ask(type: Frame['type'], gid: number, payload: Buffer | string | undefined, what: string, until: number): Promise<string> {
    this.#vm.control.write(encodeFrame(type, gid, payload));
    for (;;) {
      if (this.#violation) throw this.#violation;
      const i = this.#answers.findIndex((f) => f.id === gid);
      const f = i >= 0 ? this.#answers.splice(i, 1)[0] : undefined;
      if (f?.type === 'A') return f.payload.toString('utf8');
      if (f) throw new FailedPreconditionError(`${what} failed: ${f.payload.toString('utf8').slice(0, 300)}`);
      if (this.#exited) throw new InternalError(`the VM exited during ${what}`);
      if (Date.now() > until) throw new DeadlineExceededError(`${what} did not finish within its time (the guest is slow or stuck)`);
      await sleep(5);
    }
  }

  /**
   * Stops listening. `hold`: the channel is paused too, so that what the guest sends next waits for the
   * next listener (which resumes it) rather than being lost to a flowing stream nobody reads.
   */
  close(hold = false): void {
    this.#vm.control.off('data', this.#onData);
    if (hold) this.#vm.control.pause();
  }
}

/**
 * Creates and starts the template's sandbox container (template-sandbox.ts): its root image in slot
 * 0, the generic part of its request to the agent as session TEMPLATE_SANDBOX_GID; the guest pid.
 */
async function startTemplateSandbox(vm: VmHandle, slot0: string, s: NonNullable<TemplateRequest['sandbox']>, rest: Buffer, timeoutMs: number): Promise<number> {
  await fillSlotFile(slot0, s.image, true, SLOT_BYTES);
  const gid = TEMPLATE_SANDBOX_GID;
  const talk = new AgentTalk(vm, rest);
  try {
    const until = Date.now() + timeoutMs;
    // ahead: the agent makes the directories and guest cgroup of the session a clone's first app container gets (vmd: the sandbox's + 1)
    await talk.ask('C', gid, encodeKv([...s.kv, ['slot', 'slot0'], ['ahead', String(gid + 1)]]), 'the sandbox container\'s create in the VM template', until);
    const pid = Number(await talk.ask('S', gid, undefined, 'the sandbox container\'s start in the VM template', until));
    if (!Number.isInteger(pid) || pid <= 0) throw new InternalError('the template\'s agent answered the sandbox container\'s start without a pid');
    return pid;
  } finally {
    talk.close();
  }
}

/**
 * The migration settings of a clone waiting on `-incoming defer`, before its `migrate-incoming`: the
 * same for every clone (a standby VMM's are set before it has a pod, standby-vmm.ts).
 */
export async function prepareIncoming(qmp: Qmp): Promise<void> {
  await qmp.cmd('migrate-set-capabilities', ignoreShared);
  // no self-announce frames with the template's MAC: the agent sets the pod's first
  await qmp.cmd('migrate-set-parameters', { 'announce-rounds': 0 }).catch(() => {});
}

/** The clone's QEMU said its load failed. */
class TemplateLoadFailed extends InternalError {}

/** Feeds a clone waiting on `-incoming defer` its state (fd 4) over QMP and runs it once `beforeRun` is done. */
export async function restoreClone(qmpPath: string, timeoutMs: number, beforeRun?: () => Promise<void>, prepared?: Qmp): Promise<void> {
  const qmp = prepared ?? await Qmp.connect(qmpPath, timeoutMs);
  trace('qmp connected');
  try {
    if (!prepared) await prepareIncoming(qmp);
    await qmp.cmd('migrate-incoming', { uri: 'fd:4' });
    trace('qmp migrate-incoming sent');
    const until = Date.now() + timeoutMs;
    for (;;) {
      const m = await qmp.cmd('query-migrate') as { status?: string; 'error-desc'?: string };
      if (m.status === 'completed') break;
      if (m.status === 'failed' || m.status === 'cancelled') throw new TemplateLoadFailed(`the clone did not load its template's state: ${m['error-desc'] ?? m.status}`);
      if (Date.now() > until) throw new DeadlineExceededError(`the clone did not load its template's state within ${timeoutMs} ms`);
      await sleep(2);
    }
    trace('qmp migration completed');
    await beforeRun?.();
    // the template was saved paused: the clone starts paused and runs from here
    await qmp.cmd('cont');
    const s = await qmp.cmd('query-status') as { status?: string };
    if (s.status !== 'running') throw new InternalError(`the clone did not run after its restore (QEMU status ${s.status ?? '?'})`);
  } finally {
    qmp.close();
  }
}
