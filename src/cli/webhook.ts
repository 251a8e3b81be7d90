// `bulkhead webhook`: the Kubernetes admission webhook (mutating + validating) in the foreground.
import { readFile } from 'node:fs/promises';
import type { Command } from './command.ts';
import { UsageError } from './command.ts';
import { InvalidArgumentError } from '../errors.ts';
import { createLogger } from '../util/log.ts';
import { createCounters } from '../policy/enforce.ts';
import { parseListen, startWebhook } from '../policy/webhook.ts';
import { policyForCli } from './policy.ts';

async function readPem(path: string, what: string): Promise<string> {
  try { return await readFile(path, 'utf8'); } catch (err) {
    throw new InvalidArgumentError(`cannot read the ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

const command: Command = {
  name: 'webhook',
  synopsis: 'bulkhead webhook --cert FILE --key FILE [--policy FILE] [--listen 127.0.0.1:8443] [--handlers runc=process,...]',
  summary: 'Serve the admission webhook (POST /mutate sets runtimeClassName, POST /validate denies) over HTTPS',
  flags: {
    cert: { type: 'string' },
    key: { type: 'string' },
    policy: { type: 'string' },
    listen: { type: 'string' },
    handlers: { type: 'string' },
  },
  async run(ctx) {
    const certPath = ctx.flags.cert;
    const keyPath = ctx.flags.key;
    if (typeof certPath !== 'string' || typeof keyPath !== 'string') throw new UsageError('webhook needs --cert and --key (PEM files)');
    const { host, port } = parseListen(typeof ctx.flags.listen === 'string' ? ctx.flags.listen : '127.0.0.1:8443');
    const { policy, handlers } = await policyForCli(ctx);
    const logger = createLogger({ level: ctx.global.debug ? 'debug' : 'info', fields: { component: 'webhook' } });
    const counters = createCounters();
    const server = await startWebhook({ policy, handlers, logger, counters, cert: await readPem(certPath, 'certificate'), key: await readPem(keyPath, 'key'), host, port });
    logger.info('listening', { url: server.url, policy: policy.source, handlers: handlers.map((h) => h.handler).join(',') });
    if (ctx.global.json) ctx.stdout.write(JSON.stringify({ url: server.url }) + '\n');
    else ctx.stdout.write(`bulkhead webhook: listening on ${server.url} (/mutate, /validate, /healthz)\n`);
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await server.close();
    logger.info('stopped', { allowed: counters.pods.allowed, denied: counters.pods.denied, moved: counters.pods.moved });
    return 0;
  },
};
export default command;
