/**
 * For the microVM backend: a tap device inside the pod netns joined to the pod's veth (eth0)
 * with tc — an ingress qdisc on both and a match-everything filter (matchall, or u32 where the
 * kernel lacks cls_matchall) whose action is "mirred egress redirect" to the other. Every frame the pod's veth receives goes to the VM and back, so
 * the guest owns the pod's MAC and IP (it must use the returned MAC: the egress guard pins
 * an untrusted pod to its MAC and IP). The VMM must run inside the netns to open the tap.
 */
import { FailedPreconditionError, InternalError, InvalidArgumentError } from '../errors.ts';
import { run } from '../util/exec.ts';

export interface TapAttachment {
  tap: string;
  /** The pod interface the tap is joined to. */
  podIf: string;
  /** MAC of the pod interface: give it to the guest NIC. */
  mac: string;
  mtu: number;
  /** Pod addresses with prefix, e.g. ["10.77.3.5/24"]. */
  addresses: string[];
  /** Default gateway of the pod, if any. */
  gateway: string | null;
  /**
   * With `deferRedirect`: settles once the tc redirect is in place (the tap exists and is up when
   * attachTap returns, so the VMM can open it meanwhile); on failure the tap is already undone.
   */
  redirected?: Promise<void>;
}

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

async function inNetns(netnsPath: string, cmd: string, args: string[], signal: AbortSignal): Promise<string> {
  const r = await run('nsenter', [`--net=${netnsPath}`, '--', cmd, ...args], { timeoutMs: 20_000, signal });
  if (r.code !== 0) throw new InternalError(`${cmd} ${args.join(' ')} in ${netnsPath}: ${r.stderr.trim() || `exit ${r.code ?? r.signal}`}`);
  return r.stdout;
}

/**
 * Creates tapName in the pod netns and redirects traffic between it and podIf both ways. `existing`:
 * the tap is already there (moved in by its VMM's owner, src/vm/standby-vmm.ts): only brought up and redirected.
 */
export async function attachTap(netnsPath: string, tapName: string, opts: { podIf?: string; signal?: AbortSignal; deferRedirect?: boolean; existing?: boolean } = {}): Promise<TapAttachment> {
  const podIf = opts.podIf ?? 'eth0';
  const signal = opts.signal ?? AbortSignal.timeout(60_000);
  if (!IFNAME.test(tapName) || !IFNAME.test(podIf)) throw new InvalidArgumentError(`bad interface name ${tapName} / ${podIf}`);
  if (!netnsPath.startsWith('/')) throw new InvalidArgumentError(`netns path must be absolute: ${netnsPath}`);
  // the two reads at once (each is an nsenter + ip process pair)
  const [linksOut, routesOut] = await Promise.all([
    inNetns(netnsPath, 'ip', ['-j', 'addr', 'show', 'dev', podIf], signal),
    inNetns(netnsPath, 'ip', ['-j', '-4', 'route', 'show', 'default'], signal),
  ]);
  const links = JSON.parse(linksOut) as { address?: string; mtu?: number; addr_info?: { family?: string; local?: string; prefixlen?: number }[] }[];
  const link = links[0];
  if (!link?.address || !link.mtu) throw new FailedPreconditionError(`pod netns ${netnsPath} has no interface ${podIf}`);
  const routes = JSON.parse(routesOut) as { gateway?: string }[];
  const undo = (): Promise<void> => detachTap(netnsPath, tapName, { podIf, signal: AbortSignal.timeout(30_000) }).catch(() => {});
  try {
    if (!opts.existing) await inNetns(netnsPath, 'ip', ['tuntap', 'add', 'dev', tapName, 'mode', 'tap'], signal);
    await inNetns(netnsPath, 'ip', ['link', 'set', 'dev', tapName, 'mtu', String(link.mtu), 'up'], signal);
  } catch (err) {
    await undo();
    throw err;
  }
  // each direction's qdisc and filter; the two directions are independent devices, so at once
  const redirect = async (): Promise<void> => {
    try {
      await Promise.all(([[podIf, tapName], [tapName, podIf]] as const).map(async ([from, to]) => {
        await inNetns(netnsPath, 'tc', ['qdisc', 'add', 'dev', from, 'ingress'], signal);
        const base = ['filter', 'add', 'dev', from, 'parent', 'ffff:', 'protocol', 'all', 'prio', '1'];
        const action = ['action', 'mirred', 'egress', 'redirect', 'dev', to];
        try {
          await inNetns(netnsPath, 'tc', [...base, 'matchall', ...action], signal);
        } catch (err) {
          // Kernels without cls_matchall: a u32 filter that matches every packet does the same.
          if (!/classifier not found/i.test((err as Error).message)) throw err;
          await inNetns(netnsPath, 'tc', [...base, 'u32', 'match', 'u32', '0', '0', ...action], signal);
        }
      }));
    } catch (err) {
      await undo();
      throw err;
    }
  };
  let redirected: Promise<void> | undefined;
  if (opts.deferRedirect) {
    redirected = redirect();
    redirected.catch(() => {}); // the caller awaits it; no unhandled rejection meanwhile
  } else {
    await redirect();
  }
  return {
    ...(redirected ? { redirected } : {}),
    tap: tapName,
    podIf,
    mac: link.address,
    mtu: link.mtu,
    addresses: (link.addr_info ?? []).filter((a) => a.family === 'inet' && a.local).map((a) => `${a.local}/${a.prefixlen}`),
    gateway: routes[0]?.gateway ?? null,
  };
}

/** Undoes attachTap (removing the netns does too). Missing pieces are fine. */
export async function detachTap(netnsPath: string, tapName: string, opts: { podIf?: string; signal?: AbortSignal } = {}): Promise<void> {
  const podIf = opts.podIf ?? 'eth0';
  const signal = opts.signal ?? AbortSignal.timeout(60_000);
  if (!IFNAME.test(tapName) || !IFNAME.test(podIf)) throw new InvalidArgumentError(`bad interface name ${tapName} / ${podIf}`);
  await run('nsenter', [`--net=${netnsPath}`, '--', 'tc', 'qdisc', 'del', 'dev', podIf, 'ingress'], { timeoutMs: 20_000, signal });
  await run('nsenter', [`--net=${netnsPath}`, '--', 'ip', 'link', 'del', 'dev', tapName], { timeoutMs: 20_000, signal });
}
