/**
 * Who made a pod's network namespace, so that one nobody can find again is removed. A netns under
 * /run/netns outlives its daemon, and the daemon finds it again only through its own state (the CNI
 * record under its cache dir, the pod's record): a daemon killed and its root deleted (a test's
 * temporary root, a node re-provisioned) left namespaces no daemon would ever look at, with their
 * veth pairs on the bridge. So before it makes one, a daemon writes
 * `<NETNS_OWNERS_DIR>/<netns name>` = {pid, start, anchor}: itself (pid and start time, as lock
 * files say it: util/lock-record.ts) and a path that exists as long as the state that finds the
 * netns again does (the CNI record file, or the daemon's root). The file goes once the netns is gone.
 *
 * A netns is an orphan, and any daemon's start (sweepOrphanNetns) removes it, only when all of these
 * hold: its name is one Bulkhead gives (`bulkhead-<id>-<6 hex>`), it has an owner file (Bulkhead
 * made it: another tenant's netns never has one), its owner is dead, and its anchor is gone. A
 * netns whose owner's state still exists is left to that owner's restart.
 */
import { join } from 'node:path';
import type { Logger } from '../util/log.ts';
import { dropOwnerRecord, orphanRecords, writeOwnerRecord } from '../util/owner-record.ts';
import { deleteNetns, ip, ipJson, linkExists } from './host.ts';
import { EgressGuard } from './guard.ts';

/** Node-wide, beside /run/netns (not in it: `ip netns list` shows every entry there). */
export const NETNS_OWNERS_DIR = '/run/bulkhead-netns';

/** The names Bulkhead gives pod namespaces (cni-pod-network.ts, loopback-pod-network.ts). */
export const BULKHEAD_NETNS_NAME = /^bulkhead-[A-Za-z0-9]{1,16}-[0-9a-f]{6}$/;

/** Records this process as the maker of netns `name`, found again through `anchor`; before the netns is made. */
export async function recordNetnsOwner(name: string, anchor: string, dir = NETNS_OWNERS_DIR): Promise<void> {
  await writeOwnerRecord(dir, name, anchor);
}

/** Forgets netns `name`'s owner; after the netns is gone. */
export async function dropNetnsOwner(name: string, dir = NETNS_OWNERS_DIR): Promise<void> {
  await dropOwnerRecord(dir, name);
}

/**
 * A daemon's host-level network parts outlive it too: the managed bridge (`bh-<hash>`, found again
 * through the CNI config naming it) and the egress guard's nftables tables (`bulkhead_<instance>`,
 * named after the CNI cache dir). They are recorded the same way, under `bridge/` and `guard/`, and
 * swept with the netns: a bridge only when no interface is on it any more.
 */
export type OwnedKind = 'netns' | 'bridge' | 'guard';

interface KindRule { sub: string; name: RegExp; remove(name: string, signal: AbortSignal): Promise<boolean> }

const KINDS: Record<OwnedKind, KindRule> = {
  netns: { sub: '', name: BULKHEAD_NETNS_NAME, remove: async (name, signal) => { await deleteNetns(name, signal); return true; } },
  bridge: {
    sub: 'bridge', name: /^[A-Za-z0-9_.-]{1,15}$/,
    remove: async (name, signal) => {
      if (!(await linkExists(name, signal))) return true;
      // a port on it: some pod's (another daemon may manage a bridge of that name): it stays
      if ((await ipJson<unknown[]>(['link', 'show', 'master', name], signal)).length > 0) return false;
      await ip(['link', 'delete', name], signal);
      return true;
    },
  },
  guard: {
    sub: 'guard', name: /^[a-z0-9_]{1,24}$/,
    remove: async (name, signal) => { await new EgressGuard({ instance: name, blocked: [], routed: [] }).removeAll(signal); return true; },
  },
};

function kindDir(kind: OwnedKind, dir: string): string { return join(dir, KINDS[kind].sub); }

/** Records this process as the maker of a bridge or guard `name`, found again through `anchor`; before it is made. */
export async function recordOwner(kind: OwnedKind, name: string, anchor: string, dir = NETNS_OWNERS_DIR): Promise<void> {
  await recordNetnsOwner(name, anchor, kindDir(kind, dir));
}

/** Forgets a bridge's or guard's owner; after it is gone. */
export async function dropOwner(kind: OwnedKind, name: string, dir = NETNS_OWNERS_DIR): Promise<void> {
  await dropNetnsOwner(name, kindDir(kind, dir));
}

/**
 * Removes the netns no daemon can find again (see the file's comment), then such daemons' bridges
 * and guard tables, and their owner files; returns their names. Owner files whose part is already
 * gone and whose owner is dead go too.
 */
export async function sweepOrphanNetns(log: Logger, signal: AbortSignal, dir = NETNS_OWNERS_DIR): Promise<string[]> {
  const removed: string[] = [];
  for (const kind of ['netns', 'bridge', 'guard'] as const) {
    const rule = KINDS[kind];
    const kdir = kindDir(kind, dir);
    for (const { name, rec } of await orphanRecords(kdir, rule.name)) {
      try {
        if (!(await rule.remove(name, signal))) continue;
        await dropNetnsOwner(name, kdir);
        removed.push(name);
        log.warn(`orphaned pod ${kind === 'netns' ? 'netns' : kind === 'bridge' ? 'network bridge' : 'egress guard tables'} removed: its daemon is gone and so is the state that would find it`, { [kind]: name, anchor: rec.anchor, ownerPid: rec.pid });
      } catch (err) {
        log.warn(`cannot remove an orphaned pod ${kind}`, { [kind]: name, err });
      }
    }
  }
  return removed;
}
