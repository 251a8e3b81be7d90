// `bulkhead policy check POD.yaml` explains the trust decision for a manifest without running it;
// `bulkhead policy validate FILE` checks a policy file.
import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import type { Command, CommandContext } from './command.ts';
import { UsageError } from './command.ts';
import { InvalidArgumentError } from '../errors.ts';
import { loadConfig } from '../daemon/config.ts';
import { loadPolicy, policyFromConfig } from '../policy/load.ts';
import { decidePod, type Decision, type HandlerInfo, type Policy } from '../policy/policy.ts';
import { podFromObject, podInputFromK8s } from '../policy/k8s-pod.ts';
import { handlersFromRuntimeConfig, parseHandlerList } from '../policy/handlers.ts';

/** The policy of --policy FILE, or the daemon config's (policy_file / [policy]), or the built-in default. */
export async function policyForCli(ctx: CommandContext): Promise<{ policy: Policy; handlers: HandlerInfo[] }> {
  const cfg = await loadConfig({ root: ctx.global.root, runDir: ctx.global.runDir, socket: ctx.global.socket, config: ctx.global.config });
  const file = typeof ctx.flags.policy === 'string' ? ctx.flags.policy : undefined;
  const policy = file ? await loadPolicy(file) : await policyFromConfig(cfg);
  const list = typeof ctx.flags.handlers === 'string' ? ctx.flags.handlers : undefined;
  const handlers = list ? parseHandlerList(list) : handlersFromRuntimeConfig(cfg.runtime.handlers);
  return { policy, handlers };
}

interface Checked { source: string; kind: string; pod: string; decision: Decision }

async function readInput(path: string): Promise<string> {
  if (path === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }
  try { return await readFile(path, 'utf8'); } catch (err) {
    throw new InvalidArgumentError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Every Pod (or pod template) in a YAML/JSON stream, decided. */
export function checkManifests(text: string, source: string, policy: Policy, handlers: readonly HandlerInfo[]): Checked[] {
  const out: Checked[] = [];
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    if (doc.errors.length > 0) throw new InvalidArgumentError(`${source}: document ${i + 1} is not valid YAML: ${doc.errors[0]!.message}`);
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) return;
    const items = typeof value === 'object' && (value as { kind?: unknown }).kind === 'List' ? ((value as { items?: unknown[] }).items ?? []) : [value];
    for (const item of items) {
      const kind = String((item as { kind?: unknown })?.kind ?? '');
      let input;
      try { input = podInputFromK8s(podFromObject(item)); } catch (err) {
        throw new InvalidArgumentError(`${source}: document ${i + 1} (${kind || 'no kind'}): ${(err as Error).message}`, { cause: err });
      }
      out.push({ source, kind, pod: `${input.namespace}/${input.name || '(generated name)'}`, decision: decidePod(policy, input, handlers) });
    }
  });
  if (out.length === 0) throw new InvalidArgumentError(`${source}: no Pod or pod template found`);
  return out;
}

function explain(c: Checked): string {
  const d = c.decision;
  const lines = [`${c.kind === 'Pod' ? 'pod' : `${c.kind} pod template`} ${c.pod}: ${d.allowed ? 'ALLOWED' : 'DENIED'} (rule ${d.rule})`];
  lines.push(`  trust:    ${d.trust} (${d.trustRule === 'default' ? 'default: no trust rule matched' : `rule "${d.trustRule}"`})`);
  if (d.handler !== undefined) lines.push(`  handler:  ${d.handler}${d.requestedHandler ? ` (requested ${d.requestedHandler}${d.moved ? ', moved to a stronger one' : ''})` : ' (none requested)'}`);
  lines.push('  why:');
  for (const r of d.reasons) lines.push(`    - ${r}`);
  if (d.violations.length > 0) {
    lines.push('  violations:');
    for (const v of d.violations) lines.push(`    - [${v.rule}] ${v.message}`);
  }
  return lines.join('\n');
}

const command: Command = {
  name: 'policy',
  synopsis: 'bulkhead policy check POD.yaml|- [--policy FILE] [--handlers runc=process,gvisor=user-kernel,...] [--json] | bulkhead policy validate FILE',
  summary: 'Explain the trust policy decision for a pod manifest, or validate a policy file',
  flags: {
    policy: { type: 'string' },
    handlers: { type: 'string' },
  },
  async run(ctx) {
    const [sub, path, ...extra] = ctx.args;
    if (sub === 'validate') {
      if (!path || extra.length > 0) throw new UsageError('policy validate needs one policy file');
      const p = await loadPolicy(path);
      if (ctx.global.json) ctx.stdout.write(JSON.stringify({ valid: true, source: p.source, defaultTrust: p.defaultTrust, levels: Object.keys(p.levels), rules: p.rules.map((r) => r.name) }) + '\n');
      else ctx.stdout.write(`${path}: valid (default trust "${p.defaultTrust}", levels ${Object.keys(p.levels).join(', ')}, ${p.rules.length} rule${p.rules.length === 1 ? '' : 's'})\n`);
      return 0;
    }
    if (sub !== 'check') throw new UsageError('usage: bulkhead policy check POD.yaml [--policy FILE] [--json]  |  bulkhead policy validate FILE');
    if (!path || extra.length > 0) throw new UsageError('policy check needs one manifest file (or - for standard input)');
    const { policy, handlers } = await policyForCli(ctx);
    const results = checkManifests(await readInput(path), path, policy, handlers);
    if (ctx.global.json) {
      ctx.stdout.write(JSON.stringify({ policy: policy.source, handlers, results }, null, 2) + '\n');
    } else {
      ctx.stdout.write(`policy: ${policy.source}; handlers: ${handlers.map((h) => `${h.handler} (${h.isolation})`).join(', ')} (availability not probed here)\n\n`);
      ctx.stdout.write(results.map(explain).join('\n\n') + '\n');
    }
    return results.every((r) => r.decision.allowed) ? 0 : 1;
  },
};
export default command;
