// GetContainerEvents: a server stream of container lifecycle events until the caller goes away.
import type { CriDeps } from './deps.ts';
import { stream, type Impl } from './status.ts';

export function eventHandlers(deps: CriDeps): Record<string, Impl> {
  return {
    GetContainerEvents: stream(async (_req: unknown, ctx, send) => {
      try {
        for await (const ev of deps.engine.events(ctx.signal)) await send(ev);
      } catch (err) {
        if (ctx.signal.aborted) return;
        throw err;
      }
    }),
  };
}
