// `bulkhead k8s manifests`: the Kubernetes objects that install Bulkhead (RuntimeClasses with
// measured overhead, node DaemonSet, admission webhook), validated before they are printed.
import { readFile } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { stringify } from 'yaml';
import type { Command, CommandContext } from './command.ts';
import { UsageError } from './command.ts';
import { InternalError, InvalidArgumentError, isNotFound, errorCode } from '../errors.ts';
import { loadConfig } from '../daemon/config.ts';
import { loadPolicy } from '../policy/load.ts';
import { handlersFromRuntimeConfig, parseHandlerList } from '../policy/handlers.ts';
import { ISOLATIONS, type HandlerInfo, type Isolation } from '../policy/policy.ts';
import { DEFAULT_IMAGE, DEFAULT_NAMESPACE, generateManifests } from '../k8s/manifests.ts';
import { defaultOverheadPath, readOverhead } from '../k8s/overhead.ts';
import { validateObject } from '../k8s/schema.ts';
import { connect } from '../cri/client.ts';

/** Handlers from --handlers, else the running daemon's probes, else the config (availability not probed). */
async function nodeHandlers(ctx: CommandContext, notes: string[]): Promise<HandlerInfo[]> {
  if (typeof ctx.flags.handlers === 'string') return parseHandlerList(ctx.flags.handlers);
  try {
    const client = await connect(ctx.global.socket, { timeoutMs: 2000 });
    try {
      const info = await client.info();
      return info.handlers.flatMap((h) => (ISOLATIONS.includes(h.isolation as Isolation)
        ? [{ handler: h.name, isolation: h.isolation as Isolation, available: h.available, ...(h.reason ? { reason: h.reason } : {}) }]
        : []));
    } finally {
      client.close();
    }
  } catch (err) {
    if (errorCode(err) !== 'Unavailable' && !isNotFound(err)) throw err;
    const cfg = await loadConfig({ root: ctx.global.root, runDir: ctx.global.runDir, socket: ctx.global.socket, config: ctx.global.config });
    notes.push(`no Bulkhead daemon answers on ${ctx.global.socket}: handlers come from the config and were not probed (start the daemon, or pass --handlers)`);
    return handlersFromRuntimeConfig(cfg.runtime.handlers);
  }
}

const command: Command = {
  name: 'k8s',
  synopsis: 'bulkhead k8s manifests [--yaml|--json] [--handlers LIST] [--overhead FILE] [--image IMAGE] [--namespace NS] [--ca-bundle PEM] [--policy FILE]',
  summary: 'Print Kubernetes manifests: RuntimeClasses (measured overhead), node DaemonSet, admission webhook',
  flags: {
    yaml: { type: 'boolean' },
    handlers: { type: 'string' },
    overhead: { type: 'string' },
    image: { type: 'string' },
    namespace: { type: 'string' },
    'ca-bundle': { type: 'string' },
    policy: { type: 'string' },
  },
  async run(ctx) {
    if (ctx.args[0] !== 'manifests' || ctx.args.length > 1) throw new UsageError('usage: bulkhead k8s manifests [--yaml|--json] [flags]');
    if (ctx.global.json && ctx.flags.yaml) throw new UsageError('choose one of --yaml and --json');
    const notes: string[] = [];
    const handlers = await nodeHandlers(ctx, notes);
    const overheadPath = typeof ctx.flags.overhead === 'string' ? ctx.flags.overhead : defaultOverheadPath(ctx.global.root);
    const overhead = await readOverhead(overheadPath);
    const opts: Parameters<typeof generateManifests>[0] = {
      handlers,
      overheadSource: overheadPath,
      image: typeof ctx.flags.image === 'string' ? ctx.flags.image : DEFAULT_IMAGE,
      namespace: typeof ctx.flags.namespace === 'string' ? ctx.flags.namespace : DEFAULT_NAMESPACE,
    };
    if (overhead) opts.overhead = overhead;
    if (typeof ctx.flags['ca-bundle'] === 'string') {
      const pem = await readFile(ctx.flags['ca-bundle'], 'utf8').catch((err: unknown) => { throw new InvalidArgumentError(`cannot read the CA bundle: ${(err as Error).message}`); });
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new InvalidArgumentError(`${ctx.flags['ca-bundle']} is not a PEM certificate`);
      opts.caBundle = Buffer.from(pem).toString('base64');
    }
    if (typeof ctx.flags.policy === 'string') {
      await loadPolicy(ctx.flags.policy); // refuse to ship a policy that would not load
      const ext = extname(ctx.flags.policy) || '.toml';
      opts.policy = { fileName: `policy${ext}`, text: await readFile(ctx.flags.policy, 'utf8') };
      if (basename(ctx.flags.policy) === 'config.toml') notes.push('the policy is shipped as policy.toml (config.toml is the daemon config)');
    }
    const m = generateManifests(opts);
    for (const o of m.objects) {
      const errs = validateObject(o);
      if (errs.length > 0) throw new InternalError(`generated ${String(o.kind)} does not pass its schema: ${errs.map((e) => `${e.path} ${e.message}`).join('; ')}`);
    }
    for (const n of [...notes, ...m.notes]) ctx.stderr.write(`note: ${n}\n`);
    if (ctx.global.json) ctx.stdout.write(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: m.objects }, null, 2) + '\n');
    else ctx.stdout.write(m.objects.map((o) => stringify(o, { lineWidth: 0 })).join('---\n'));
    return 0;
  },
};
export default command;
