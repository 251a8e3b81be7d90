// The node-wide VM supervisor's (vmhost.ts) requests that are not a pod's start (create.ts) or end
// (delete.ts): kept apart so a caller (the daemon closing) loads no supervisor code.
import { existsSync } from 'node:fs';
import { liveStartTime } from '../../util/proc.ts';
import { VmdClient } from '../client.ts';
import { hostSocket } from './common.ts';

/**
 * Asks the node-wide host of `root` to leave once idle (the daemon that started it closing:
 * otherwise it stays IDLE_EXIT_MS for a next pod). `now`: no pod and no other client, and it is
 * gone when this resolves (waited for up to 5 × `timeoutMs`); `idle`: no pod, it leaves when its other clients
 * hang up (a create's start cancels it); `busy`: it serves pods and stays; `none`: no host answered.
 */
export async function leaveIdleHost(root: string, timeoutMs = 2000): Promise<'now' | 'idle' | 'busy' | 'none'> {
  const sock = hostSocket(root);
  if (!existsSync(sock)) return 'none';
  let c: VmdClient;
  try { c = await VmdClient.connect(sock, undefined, timeoutMs); } catch { return 'none'; }
  try {
    const r = await c.request<{ left?: unknown; pid?: number }>('leave', {}, timeoutMs);
    if (r.left !== 'now') return r.left === 'idle' ? 'idle' : 'busy';
    c.close();
    // gone before this resolves: the caller (a daemon's close) may look for what is left right after
    const pid = r.pid;
    for (const until = Date.now() + 5 * timeoutMs; typeof pid === 'number' && liveStartTime(pid) !== undefined && Date.now() < until;) await new Promise((res) => setTimeout(res, 10));
    return 'now';
  } catch {
    return 'none';
  } finally {
    c.close();
  }
}
