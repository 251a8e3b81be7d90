// `bulkhead profile`: the strict handler's per-image system call profiles.
//   learn IMAGE [-- CMD...]   a training run on the strict-learn handler (a pod with a loopback-only
//                             network; --probe runs a command in a second container of the pod)
//   show IMAGE|DIGEST, ls, diff A [B], rm IMAGE|DIGEST
// Profiles live under the daemon's root (<root>/profiles, keyed by the image's manifest digest); the
// daemon stores a training run's profile when its container is removed.
import { createHash, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command, CommandContext } from './command.ts';
import { UsageError } from './command.ts';
import { withClient } from './client.ts';
import { ensureImage } from './pull.ts';
import { shortId, table, writeJson } from './format.ts';
import type { CriClient } from '../cri/client.ts';
import type { ContainerConfig, PodSandboxConfig } from '../api/cri.ts';
import { NETWORK_ANNOTATION } from '../cri/annotations.ts';
import { cliLogDirectory, removeCliLogDirectory } from '../daemon/cli-pods.ts';
import { FailedPreconditionError, NotFoundError } from '../errors.ts';
import { loadConfig } from '../daemon/config.ts';
import { policyFromConfig } from '../policy/load.ts';
import { decidePod, type HandlerInfo as PolicyHandler, type Isolation } from '../policy/policy.ts';
import { podInputFromCri } from '../policy/enforce.ts';
import type { InfoResponse } from '../api/cri-messages.ts';
import { ROLE_ANNOTATION } from '../runtime/strict/annotations.ts';
import { ProfileStore, profileDirOf } from '../runtime/strict/profile-store.ts';
import { agentDirOf, agentFiles } from '../runtime/strict/agent.ts';
import { defaultSeccompProfile } from '../runtime/seccomp.ts';
import { ALL_SYSCALLS, namedCounts, parseAgentOutput, type StrictProfile } from '../runtime/strict/profile.ts';

const DIGEST = /^sha256:[a-f0-9]{64}$/;
const PROGRESS_MS = 2000;

/** "10s", "2m", "500ms", "1.5" (seconds) → ms. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  const ms = m ? Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000) : NaN;
  if (!Number.isFinite(ms) || ms < 100 || ms > 3_600_000) throw new UsageError(`invalid --duration ${JSON.stringify(text)}: give 100ms to 60m (examples: 10s, 2m, 500ms)`);
  return ms;
}

/** The x86_64 system calls the runtime's default profile allows (with or without argument checks): the baseline. */
export function defaultProfileCount(): number {
  return new Set((defaultSeccompProfile().syscalls ?? []).filter((r) => r.action === 'SCMP_ACT_ALLOW').flatMap((r) => r.names).filter((n) => ALL_SYSCALLS.includes(n))).size;
}

/** A handler's backend run dir as the daemon lays it out (src/daemon/daemon.ts). */
function backendRunDir(runDir: string, handler: string): string {
  return join(runDir, 'runtime', handler);
}

interface Resolved { digest: string; imageId?: string; name: string }

/** IMAGE or sha256:<manifest digest> → the manifest digest (through the daemon for names). */
async function resolveDigest(client: CriClient, ref: string): Promise<Resolved> {
  if (DIGEST.test(ref)) return { digest: ref, name: ref };
  const st = await client.imageStatus(ref, true);
  if (!st.image) throw new NotFoundError(`image ${ref} is not on this node (bulkhead pull ${ref})`);
  let digest: unknown;
  try { digest = (JSON.parse(st.info.info ?? '{}') as { manifestDigest?: unknown }).manifestDigest; } catch { digest = undefined; }
  if (typeof digest !== 'string' || !DIGEST.test(digest)) throw new FailedPreconditionError(`image ${ref} has no manifest digest on record; pull it again`);
  return { digest, imageId: st.image.id, name: ref };
}

function describe(p: StrictProfile, path?: string): string {
  const lines = [
    `image:         ${p.imageNames?.join(', ') || p.imageId || ''} (manifest ${p.manifestDigest})`,
    `learned:       ${p.learnedAt} on ${p.training.handler} in ${(p.training.durationMs / 1000).toFixed(1)} s, command ${JSON.stringify(p.training.command)}${p.training.probe ? `, probe ${JSON.stringify(p.training.probe)}` : ''}`,
    `system calls:  ${p.syscalls.length} allowed (the default profile allows ${defaultProfileCount()})`,
    `               ${p.syscalls.join(' ')}`,
    `capabilities:  ${p.capabilities.join(' ') || 'none'}`,
    `root fs:       ${p.wroteRootfs ? 'writable (training wrote to it)' : 'read-only (training wrote nothing to it)'}`,
  ];
  if (path) lines.push(`stored at:     ${path}`);
  return lines.join('\n') + '\n';
}

async function storeOf(client: CriClient): Promise<ProfileStore> {
  const info = await client.info();
  return new ProfileStore(profileDirOf(info.root));
}

function podFor(image: string, root: string): PodSandboxConfig {
  const uid = randomUUID();
  const name = `learn-${createHash('sha256').update(image).digest('hex').slice(0, 8)}-${uid.slice(0, 8)}`;
  const md = { name, uid, namespace: 'bulkhead', attempt: 0 };
  return {
    metadata: md,
    logDirectory: cliLogDirectory(root, md)!,
    labels: { 'io.bulkhead.cli': 'profile-learn' },
    // loopback only: the probe reaches the workload on 127.0.0.1, nothing reaches anything else
    annotations: { [NETWORK_ANNOTATION]: 'none' },
    linux: {},
  };
}

function movedError(handler: string, got: string): FailedPreconditionError {
  return new FailedPreconditionError(`the trust policy moved the training pod from "${handler}" to "${got}": a training run is runc with the default profile (the process class), which the level of namespace "bulkhead" does not allow; learn on a node or namespace whose level allows process isolation, or name a profile file with the io.bulkhead.strict.profile annotation`);
}

/**
 * What the daemon's trust policy (read from its config file, as the daemon reads it) would run
 * the training pod on when that is not `handler` ("refused" when it refuses it); undefined when it
 * keeps it, or when the policy cannot be read here (the daemon's answer decides then).
 */
async function policyMoves(info: InfoResponse, cfg: PodSandboxConfig, handler: string): Promise<string | undefined> {
  try {
    const conf = await loadConfig({ root: info.root, runDir: info.runDir, socket: info.socket, config: info.config });
    const policy = await policyFromConfig(conf);
    const handlers: PolicyHandler[] = info.handlers.map((h) => ({ handler: h.name, isolation: h.isolation as Isolation, available: h.available }));
    const d = decidePod(policy, podInputFromCri(cfg, handler), handlers);
    if (d.allowed && d.handler === handler) return undefined;
    return d.handler ?? 'refused';
  } catch {
    return undefined;
  }
}

async function learn(ctx: CommandContext): Promise<number> {
  const [image, ...cmd] = ctx.args.slice(1);
  if (!image) throw new UsageError('profile learn needs an IMAGE (example: bulkhead profile learn busybox -- sh -c "echo hi")');
  const durationMs = parseDuration(typeof ctx.flags.duration === 'string' ? ctx.flags.duration : '10s');
  const probe = typeof ctx.flags.probe === 'string' ? ctx.flags.probe : undefined;
  const handler = typeof ctx.flags.handler === 'string' ? ctx.flags.handler : 'strict-learn';
  const say = (line: string): void => { ctx.stderr.write(`${line}\n`); };
  return await withClient(ctx, async (client) => {
    const info = await client.info();
    const h = info.handlers.find((x) => x.name === handler);
    if (!h) throw new FailedPreconditionError(`the daemon has no "${handler}" handler: add [runtime.handlers.${handler}] backend = "strict-learn" to its config`);
    if (!h.available) throw new FailedPreconditionError(`handler "${handler}" cannot run here: ${h.reason}`);
    await ensureImage(client, image, ctx, ctx.global.json);
    const img = await resolveDigest(client, image);
    const store = new ProfileStore(profileDirOf(info.root));
    const before = await store.get(img.digest);
    const cfg = podFor(image, info.root);
    // refused before a sandbox boots for nothing; the daemon's own decision is checked again below
    const moved = await policyMoves(info, cfg, handler);
    if (moved !== undefined) throw movedError(handler, moved);
    say(`learning ${image} (manifest ${shortId(img.digest)}) for ${durationMs / 1000} s on handler ${handler}`);
    const podId = await client.runPodSandbox(cfg, handler, { signal: ctx.signal });
    const ids: string[] = [];
    let exitCode: number | undefined;
    let probeCode: number | undefined;
    const started = Date.now();
    try {
      const got = (await client.podSandboxStatus(podId)).status.runtimeHandler;
      if (got !== handler) throw movedError(handler, got);
      const work: ContainerConfig = { metadata: { name: 'workload', attempt: 0 }, image: { image }, logPath: 'workload.log' };
      if (cmd.length > 0) work.command = cmd;
      const wid = await client.createContainer(podId, work, cfg, { signal: ctx.signal });
      ids.push(wid);
      await client.startContainer(wid, { signal: ctx.signal });
      say('workload started');
      let pid: string | undefined;
      if (probe !== undefined) {
        // retried for up to the whole duration: the workload may still be starting its server
        const loop = `end=$(( $(date +%s) + ${Math.max(1, Math.ceil(durationMs / 1000))} )); while :; do ( ${probe} ) && exit 0; [ $(date +%s) -ge $end ] && exit 1; sleep 0.2; done`;
        const pc: ContainerConfig = { metadata: { name: 'probe', attempt: 0 }, image: { image }, command: ['sh', '-c', loop], logPath: 'probe.log', annotations: { [ROLE_ANNOTATION]: 'probe' } };
        pid = await client.createContainer(podId, pc, cfg, { signal: ctx.signal });
        ids.push(pid);
        await client.startContainer(pid, { signal: ctx.signal });
        say(`probe started: ${probe}`);
      }
      const agentOut = agentFiles(agentDirOf(backendRunDir(info.runDir, handler), wid)).out;
      let lastSay = Date.now();
      while (Date.now() - started < durationMs && !ctx.signal.aborted) {
        await new Promise((r) => setTimeout(r, 200));
        const st = (await client.containerStatus(wid)).status;
        if (pid !== undefined && probeCode === undefined) {
          const ps = (await client.containerStatus(pid)).status;
          if (ps.state === 'CONTAINER_EXITED') { probeCode = ps.exitCode; say(`probe exited ${probeCode}${probeCode === 0 ? ' (answered)' : ' (it never succeeded)'}`); }
        }
        if (st.state === 'CONTAINER_EXITED') { exitCode = st.exitCode; say(`workload exited ${exitCode}`); break; }
        if (Date.now() - lastSay >= PROGRESS_MS) {
          lastSay = Date.now();
          const seen = await readFile(agentOut, 'utf8').then((t) => String(Object.keys(namedCounts(parseAgentOutput(t)).counts).length), () => '?');
          say(`  ${((Date.now() - started) / 1000).toFixed(0)} s of ${durationMs / 1000} s: ${seen} system calls seen`);
        }
      }
      if (exitCode === undefined) say('time is up: stopping the workload');
      for (const id of ids) await client.stopContainer(id, 2).catch(() => {});
      // removing the workload makes the daemon store the profile
      for (const id of ids) await client.removeContainer(id).catch(() => {});
      ids.length = 0;
    } finally {
      for (const id of ids) await client.removeContainer(id).catch(() => {});
      await client.stopPodSandbox(podId).catch(() => {});
      await client.removePodSandbox(podId).catch(() => {});
      await removeCliLogDirectory(info.root, cfg.metadata);
    }
    const p = await store.get(img.digest);
    if (!p || (before && p.learnedAt === before.learnedAt)) throw new FailedPreconditionError(`no profile was stored for ${image}: the training container recorded no system call (see the daemon log)`);
    // the CLI knows what the daemon cannot: the probe and the names the image was asked by
    p.imageNames = [image];
    if (probe !== undefined) p.training.probe = probe;
    if (exitCode !== undefined) p.training.exitCode = exitCode;
    const path = await store.put(p);
    if (ctx.global.json) writeJson(ctx.stdout, { ...p, path, probeExitCode: probeCode ?? null });
    else ctx.stdout.write(describe(p, path));
    return 0;
  });
}

const command: Command = {
  name: 'profile',
  synopsis: 'bulkhead profile learn IMAGE [--duration 10s] [--probe CMD] [--handler strict-learn] [-- CMD...] | show IMAGE|DIGEST | ls | diff A [B] | rm IMAGE|DIGEST | denials [CONTAINER...] [--json]',
  summary: 'Learn, show, compare and remove the strict handler\'s per-image system call profiles',
  flags: { duration: { type: 'string' }, probe: { type: 'string' }, handler: { type: 'string' } },
  async run(ctx) {
    const sub = ctx.args[0];
    if (sub === 'learn') return await learn(ctx);
    if (sub === 'ls' || sub === 'list') {
      return await withClient(ctx, async (client) => {
        const all = await (await storeOf(client)).list();
        if (ctx.global.json) writeJson(ctx.stdout, all);
        else ctx.stdout.write(table(['MANIFEST', 'IMAGE', 'SYSCALLS', 'CAPABILITIES', 'ROOTFS', 'LEARNED'],
          all.map((p) => [shortId(p.manifestDigest), p.imageNames?.join(',') || shortId(p.imageId ?? ''), String(p.syscalls.length), String(p.capabilities.length), p.wroteRootfs ? 'rw' : 'ro', p.learnedAt])));
        return 0;
      });
    }
    if (sub === 'denials') {
      // what the deny agents of strict containers on this node have refused so far
      return await withClient(ctx, async (client) => {
        const info = await client.info();
        const strictHandlers = new Set(info.handlers.filter((h) => h.backend === 'strict').map((h) => h.name));
        const want = ctx.args.slice(1);
        const rows: { container: string; name: string; handler: string; denied: Record<string, number> }[] = [];
        for (const c of await client.listContainers()) {
          if (want.length > 0 && !want.some((w) => c.id.startsWith(w) || c.metadata.name === w)) continue;
          const handler = (await client.podSandboxStatus(c.podSandboxId)).status.runtimeHandler;
          if (!strictHandlers.has(handler)) continue;
          const text = await readFile(agentFiles(agentDirOf(backendRunDir(info.runDir, handler), c.id)).out, 'utf8').catch(() => '');
          rows.push({ container: c.id, name: c.metadata.name, handler, denied: namedCounts(parseAgentOutput(text)).counts });
        }
        if (ctx.global.json) writeJson(ctx.stdout, rows);
        else ctx.stdout.write(table(['CONTAINER', 'NAME', 'DENIED SYSTEM CALLS'], rows.map((r) => [shortId(r.container), r.name, Object.entries(r.denied).map(([k, v]) => `${k}×${v}`).join(' ') || '-'])));
        return 0;
      });
    }
    if (sub === 'show' || sub === 'rm') {
      const refs = ctx.args.slice(1);
      if (refs.length !== 1) throw new UsageError(`profile ${sub} needs one IMAGE or sha256:DIGEST`);
      return await withClient(ctx, async (client) => {
        const store = await storeOf(client);
        const img = await resolveDigest(client, refs[0]!);
        if (sub === 'rm') {
          if (!(await store.remove(img.digest))) throw new NotFoundError(`no strict profile for ${img.name} (manifest ${img.digest})`);
          if (ctx.global.json) writeJson(ctx.stdout, { removed: img.digest });
          else ctx.stdout.write(`${img.digest}\n`);
          return 0;
        }
        const p = await store.get(img.digest);
        if (!p) throw new NotFoundError(`no strict profile for ${img.name} (manifest ${img.digest}); learn one with \`bulkhead profile learn ${img.name}\``);
        if (ctx.global.json) writeJson(ctx.stdout, p);
        else ctx.stdout.write(describe(p));
        return 0;
      });
    }
    if (sub === 'diff') {
      const refs = ctx.args.slice(1);
      if (refs.length < 1 || refs.length > 2) throw new UsageError('profile diff needs one IMAGE (against the default profile) or two');
      return await withClient(ctx, async (client) => {
        const store = await storeOf(client);
        const load = async (ref: string): Promise<{ name: string; syscalls: string[]; capabilities: string[]; wroteRootfs: boolean | null }> => {
          const img = await resolveDigest(client, ref);
          const p = await store.get(img.digest);
          if (!p) throw new NotFoundError(`no strict profile for ${img.name}`);
          return { name: img.name, syscalls: p.syscalls, capabilities: p.capabilities, wroteRootfs: p.wroteRootfs };
        };
        const a = await load(refs[0]!);
        const b = refs[1] ? await load(refs[1]) : {
          name: 'the default profile',
          syscalls: [...new Set((defaultSeccompProfile().syscalls ?? []).filter((r) => r.action === 'SCMP_ACT_ALLOW').flatMap((r) => r.names))].sort(),
          capabilities: [] as string[], wroteRootfs: null,
        };
        const only = (x: string[], y: string[]): string[] => x.filter((s) => !y.includes(s));
        const d = {
          a: a.name, b: b.name,
          syscalls: { onlyA: only(a.syscalls, b.syscalls), onlyB: only(b.syscalls, a.syscalls), countA: a.syscalls.length, countB: b.syscalls.length },
          capabilities: { onlyA: only(a.capabilities, b.capabilities), onlyB: only(b.capabilities, a.capabilities) },
          wroteRootfs: { a: a.wroteRootfs, b: b.wroteRootfs },
        };
        if (ctx.global.json) { writeJson(ctx.stdout, d); return 0; }
        const lines = [`--- ${a.name} (${a.syscalls.length} system calls)`, `+++ ${b.name} (${b.syscalls.length} system calls)`];
        for (const s of d.syscalls.onlyA) lines.push(`- ${s}`);
        if (refs[1]) for (const s of d.syscalls.onlyB) lines.push(`+ ${s}`);
        else lines.push(`+ ${d.syscalls.onlyB.length} more system calls the default profile allows`);
        if (refs[1]) {
          for (const c of d.capabilities.onlyA) lines.push(`- ${c}`);
          for (const c of d.capabilities.onlyB) lines.push(`+ ${c}`);
          if (a.wroteRootfs !== b.wroteRootfs) lines.push(`root fs: ${a.wroteRootfs ? 'rw' : 'ro'} → ${b.wroteRootfs ? 'rw' : 'ro'}`);
        }
        ctx.stdout.write(lines.join('\n') + '\n');
        return 0;
      });
    }
    throw new UsageError(`profile: unknown subcommand ${JSON.stringify(sub ?? '')} (learn, show, ls, diff, rm, denials)`);
  },
};
export default command;
