/**
 * The strict handlers: runc with a per-image system call allow-list (the Nabla idea: the host
 * kernel surface a workload can reach is what it needs, not ~360 calls).
 *
 *  - `strict` (mode enforce, deny 'eperm'): the image's learned profile (profile-store.ts, keyed by
 *    the manifest digest the engine writes into the spec) or a profile file named by the
 *    container annotation io.bulkhead.strict.profile under the profile root. Every other system
 *    call fails with EPERM through the seccomp agent in deny mode, which counts it; the backend
 *    logs each new denial (the daemon log) so an operator can tell a broken profile from an attack.
 *    Capabilities are cut to the profile's, the root filesystem is read-only when training wrote
 *    nothing to it, no_new_privs is always set (in training too). No profile → FailedPrecondition saying how to learn one (fail closed).
 *  - `strict-kill`: the same, but a denied call kills the process (SIGSYS, exit 159); no agent.
 *  - `strict-learn` (mode learn, isolation 'process'): a training run. The default profile with
 *    every allowing rule sent to the agent in learn mode (which lets the call run and records it);
 *    on delete the recorded calls, the capabilities they may have used and whether the writable
 *    layer changed become the image's profile. A container annotated io.bulkhead.strict.role=probe
 *    (the training pod's probe) runs under the default profile and teaches nothing.
 *
 * Pod topology is runc's (the class extends RuncBackend): pinned namespaces, pod netns by path.
 * Infra (pause) containers are Bulkhead's own and run under the default profile.
 */
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError, reasonError } from '../../errors.ts';
import type { BackendOptions, ContainerRecord, CreateContainerOptions, Isolation, ProbeResult } from '../backend.ts';
import type { OciSpec } from '../../oci/spec.ts';
import { RuncBackend } from '../runc/runc-backend.ts';
import { agentAlive, agentDirOf, agentFiles, ensureAgent, readAgentOutput, startAgent, stopAgent, type AgentFiles } from './agent.ts';
import { FALLBACK_ANNOTATION, IMAGE_DIGEST_ANNOTATION, IMAGE_ID_ANNOTATION, IMAGE_NAME_ANNOTATION, PROFILE_ANNOTATION, ROLE_ANNOTATION } from './annotations.ts';
import { allowList, enforcingSeccomp, namedCounts, trainingSeccomp, usedCapabilities, type DenyAction, type StrictProfile } from './profile.ts';
import { ProfileStore, profileDirOf, readProfileBeneath } from './profile-store.ts';
import { listTree, treeChanged, upperDirOf } from './rootfs-writes.ts';

export type StrictMode = 'enforce' | 'learn';

const DENY_AGENT_SECONDS = 10 * 365 * 86400;
const LEARN_AGENT_SECONDS = 24 * 3600;
const DENIAL_POLL_MS = 2000;

/** What a training container needs at its end (learn.json). */
interface LearnRecord { manifestDigest: string; imageId: string; command: string[]; startedAt: number; upper?: string }

export function howToLearn(image: string, digest: string): string {
  return `strict handler: no system call profile for image ${image} (manifest ${digest}); learn one with \`bulkhead profile learn ${image} [-- CMD...]\`, or name a profile file under the strict profile root with the container annotation ${PROFILE_ANNOTATION} (the strict handler fails closed)`;
}

export class StrictBackend extends RuncBackend {
  override readonly name: string;
  override readonly isolation: Isolation;
  readonly mode: StrictMode;
  readonly deny: DenyAction;
  readonly store: ProfileStore;
  /** Where profiles named by annotation must be. */
  readonly profileRoot: string;
  readonly #denials = new Map<string, string>();
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: BackendOptions, mode: StrictMode, deny: DenyAction = 'eperm') {
    super(opts);
    this.mode = mode;
    this.deny = deny;
    this.name = mode === 'learn' ? 'strict-learn' : deny === 'kill' ? 'strict-kill' : 'strict';
    // a training run is runc with the default profile: it is judged as the process class
    this.isolation = mode === 'learn' ? 'process' : 'strict';
    this.profileRoot = profileDirOf(opts.root ?? '/var/lib/bulkhead');
    this.store = new ProfileStore(this.profileRoot);
  }

  #files(id: string): AgentFiles { return agentFiles(agentDirOf(this.opts.runDir, id)); }

  /** runc and conmon, and (except strict-kill) the seccomp agent built with gcc. */
  protected override async probeHost(signal?: AbortSignal): Promise<ProbeResult> {
    const base = await super.probeHost(signal);
    if (!base.available || (this.mode === 'enforce' && this.deny === 'kill')) return base;
    // SCMP_ACT_NOTIFY and linux.seccomp.listenerPath arrived in runc 1.1
    const v = /(\d+)\.(\d+)/.exec(base.details.runtimeVersion ?? '');
    if (v && (Number(v[1]) < 1 || (Number(v[1]) === 1 && Number(v[2]) < 1))) {
      return { available: false, reason: `${base.details.runtimeVersion} cannot hand seccomp listeners to an agent (runc 1.1 or later is needed); use the strict-kill handler or upgrade runc`, details: base.details };
    }
    try {
      const bin = await ensureAgent();
      return { ...base, details: { ...base.details, seccompAgent: bin, denyAction: this.mode === 'learn' ? 'learn (continue)' : this.deny } };
    } catch (err) {
      return { available: false, reason: `the seccomp agent cannot be built (${err instanceof Error ? err.message.slice(0, 200) : String(err)}); install gcc, or use the strict-kill handler`, details: base.details };
    }
  }

  override async createContainer(opts: CreateContainerOptions): Promise<{ pid: number }> {
    await this.requireAvailable(opts.signal);
    const ann = opts.spec.annotations ?? {};
    if (opts.pod.role === 'sandbox' || (this.mode === 'learn' && ann[ROLE_ANNOTATION] === 'probe')) return await super.createContainer(opts);
    const files = this.#files(opts.id);
    const spec = structuredClone(opts.spec);
    const digest = ann[IMAGE_DIGEST_ANNOTATION];
    const imageId = ann[IMAGE_ID_ANNOTATION] ?? '';
    if (!digest) throw new FailedPreconditionError(`strict handler: the image of container ${opts.id} has no manifest digest on record (an image loaded before profiles existed?); pull it again (the strict handler fails closed)`);
    // no_new_privs: runc then installs the filter as its last step before execve, so the profile
    // needs no room for runc's own setup (capset, setgroups, setuid, chdir ...); same in training
    if (spec.process) spec.process.noNewPrivileges = true;
    let agent: 'learn' | 'deny' | undefined;
    if (this.mode === 'learn') {
      spec.linux = { ...spec.linux, seccomp: trainingSeccomp(files.socket) };
      agent = 'learn';
    } else {
      const profile = await this.#profileFor(ann, digest, imageId);
      if (!profile) {
        // the level allows it (strict_fallback): what the runc handler would run, said in the log
        this.log.warn('strict: no profile for the image; running under the runc default profile as the pod\'s level allows (strict_fallback)', { container: opts.id, image: imageId || digest });
        return await super.createContainer(opts);
      }
      this.#apply(spec, profile, files.socket);
      if (this.deny === 'eperm') agent = 'deny';
    }
    await rm(files.dir, { recursive: true, force: true });
    await mkdir(files.dir, { recursive: true, mode: 0o700 });
    try {
      if (agent) await startAgent(await ensureAgent(), agent, files, agent === 'learn' ? LEARN_AGENT_SECONDS : DENY_AGENT_SECONDS, opts.signal);
      if (this.mode === 'learn') {
        const rec: LearnRecord = { manifestDigest: digest, imageId, command: spec.process?.args ?? [], startedAt: Date.now() };
        const upper = spec.root?.path ? await upperDirOf(spec.root.path) : undefined;
        if (upper) rec.upper = upper;
        await writeFile(join(files.dir, 'learn.json'), JSON.stringify(rec), { mode: 0o600 });
      }
      const r = await super.createContainer({ ...opts, spec });
      if (this.mode === 'learn') {
        const rec = JSON.parse(await readFile(join(files.dir, 'learn.json'), 'utf8')) as LearnRecord;
        // after `runc create`: the runtime's mount points exist, the workload has not run yet
        if (rec.upper) await writeFile(join(files.dir, 'rootfs-before.json'), JSON.stringify(await listTree(rec.upper)), { mode: 0o600 });
      } else if (agent === 'deny') {
        this.#watch(opts.id);
      }
      return r;
    } catch (err) {
      await stopAgent(files);
      await rm(files.dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** The profile to enforce; undefined only when there is none and the level allows the runc fallback. */
  async #profileFor(ann: Record<string, string>, digest: string, imageId: string): Promise<StrictProfile | undefined> {
    const ref = ann[PROFILE_ANNOTATION];
    if (ref !== undefined) {
      const p = await readProfileBeneath(this.profileRoot, ref);
      if (p.manifestDigest !== digest) throw new InvalidArgumentError(`strict profile ${JSON.stringify(ref.slice(0, 200))} was learned for image ${p.manifestDigest}, not for this container's image ${digest} (a profile applies to the image it was learned from)`);
      return p;
    }
    const p = await this.store.get(digest);
    if (!p && ann[FALLBACK_ANNOTATION] === 'runc') return undefined;
    if (!p) throw reasonError('BH_STRICT_PROFILE_MISSING', howToLearn(ann[IMAGE_NAME_ANNOTATION] || imageId || digest, digest));
    return p;
  }

  /** The profile into the spec: seccomp, capabilities cut to the profile's, read-only root when training wrote nothing. */
  #apply(spec: OciSpec, profile: StrictProfile, socket: string): void {
    spec.linux = { ...spec.linux, seccomp: enforcingSeccomp(profile, this.deny, this.deny === 'eperm' ? socket : undefined) };
    const keep = new Set(profile.capabilities);
    const caps = spec.process?.capabilities;
    if (caps) {
      for (const k of ['bounding', 'effective', 'inheritable', 'permitted', 'ambient'] as const) {
        if (caps[k]) caps[k] = caps[k].filter((c) => keep.has(c));
      }
    }
    if (!profile.wroteRootfs && spec.root) spec.root.readonly = true;
  }

  /** Logs new denials of the enforce agents every DENIAL_POLL_MS (the daemon log is where operators look). */
  #watch(id: string): void {
    this.#denials.set(id, '');
    if (this.#timer) return;
    this.#timer = setInterval(() => { void this.#pollDenials(); }, DENIAL_POLL_MS);
    this.#timer.unref();
  }

  async #pollDenials(): Promise<void> {
    for (const [id, last] of this.#denials) {
      const files = this.#files(id);
      const { counts } = namedCounts(await readAgentOutput(files));
      const text = JSON.stringify(counts);
      if (text !== last && Object.keys(counts).length > 0) {
        this.#denials.set(id, text);
        this.log.warn('strict: system calls denied by the profile', { container: id, denied: counts });
      }
      if (!(await agentAlive(files))) this.#denials.delete(id);
    }
    if (this.#denials.size === 0 && this.#timer) { clearInterval(this.#timer); this.#timer = undefined; }
  }

  /** Denied system calls of a container so far ({name: count}); empty for other handlers' modes. */
  async denials(id: string): Promise<Record<string, number>> {
    if (this.mode !== 'enforce' || this.deny !== 'eperm') return {};
    return namedCounts(await readAgentOutput(this.#files(id))).counts;
  }

  override async list(): Promise<ContainerRecord[]> {
    const out = await super.list();
    // after a daemon restart: watch the agents of the containers still running
    if (this.mode === 'enforce' && this.deny === 'eperm') {
      for (const c of out) if (c.role === 'container' && await agentAlive(this.#files(c.id))) this.#watch(c.id);
    }
    // agent directories of containers that are gone (a daemon that died between starting an agent
    // and creating the container): the agent ends by itself 120 s after no listener came; the
    // directory goes here once it has
    const known = new Set(out.map((c) => this.#files(c.id).dir));
    const base = join(this.opts.runDir, 's');
    for (const name of await readdir(base).catch(() => [] as string[])) {
      const files = agentFiles(join(base, name));
      if (!known.has(files.dir) && !(await agentAlive(files))) await rm(files.dir, { recursive: true, force: true });
    }
    return out;
  }

  override async delete(id: string, signal?: AbortSignal): Promise<void> {
    const files = this.#files(id);
    if (this.mode === 'learn') {
      try {
        await this.#finishTraining(id, files);
      } catch (err) {
        this.log.warn('strict: the training run could not be stored as a profile', { container: id, error: err instanceof Error ? err.message : String(err) });
      }
    } else {
      const denied = await this.denials(id).catch(() => ({}));
      if (Object.keys(denied).length > 0) this.log.warn('strict: container removed; system calls its profile denied', { container: id, denied });
      this.#denials.delete(id);
    }
    await super.delete(id, signal);
    await stopAgent(files);
    await rm(files.dir, { recursive: true, force: true });
  }

  async #finishTraining(id: string, files: AgentFiles): Promise<void> {
    let rec: LearnRecord;
    try { rec = JSON.parse(await readFile(join(files.dir, 'learn.json'), 'utf8')) as LearnRecord; } catch { return; } // not a training container
    const st = await this.state(id).catch(() => undefined);
    // the container must be stopped before the layer is judged; delete kills a running one anyway
    if (st?.status === 'running') { await this.kill(id, 'SIGKILL').catch(() => {}); await this.wait(id, AbortSignal.timeout(10_000)).catch(() => {}); }
    await stopAgent(files);
    const { counts, foreign } = namedCounts(await readAgentOutput(files));
    if (Object.keys(counts).length === 0) { this.log.warn('strict: the training run recorded no system call (did the container start?); no profile stored', { container: id }); return; }
    let wrote = true;
    let why = 'the writable layer could not be inspected';
    if (rec.upper) {
      try {
        const before = JSON.parse(await readFile(join(files.dir, 'rootfs-before.json'), 'utf8')) as Awaited<ReturnType<typeof listTree>>;
        const changed = treeChanged(before, await listTree(rec.upper));
        wrote = changed !== undefined;
        why = changed ?? 'no change';
      } catch { /* wrote stays true: writable is the safe side for the workload */ }
    }
    const spec = JSON.parse(await readFile(join(this.driver.bundleDir(id), 'config.json'), 'utf8')) as OciSpec;
    const granted = spec.process?.capabilities?.bounding ?? [];
    const profile: StrictProfile = {
      version: 1,
      manifestDigest: rec.manifestDigest,
      ...(rec.imageId ? { imageId: rec.imageId } : {}),
      learnedAt: new Date().toISOString(),
      arch: 'x86_64',
      syscalls: allowList(counts),
      counts,
      capabilities: usedCapabilities(granted, Object.keys(counts)),
      wroteRootfs: wrote,
      training: { command: rec.command, durationMs: Date.now() - rec.startedAt, handler: this.name, ...(st?.exitCode !== undefined ? { exitCode: st.exitCode } : {}) },
    };
    const path = await this.store.put(profile);
    this.log.info('strict: profile learned', { container: id, image: rec.manifestDigest, syscalls: profile.syscalls.length, capabilities: profile.capabilities, wroteRootfs: wrote, rootfs: why, path, ...(foreign.length ? { ignored32bit: foreign } : {}) });
  }

  override async close(): Promise<void> {
    if (this.#timer) { clearInterval(this.#timer); this.#timer = undefined; }
    await super.close();
  }
}
