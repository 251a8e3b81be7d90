// Shared helpers of the network integration tests: temp roots, processes inside pod netns,
// TCP probes with busybox nc, cleanup of everything a test created.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniPodNetwork } from '../../src/network/cni-pod-network.ts';
import type { PodNetworkRequest } from '../../src/network/pod-network.ts';
import { run } from '../../src/util/exec.ts';
import { silentLogger } from '../../src/util/log.ts';

export const rand = (n = 3): string => randomBytes(n).toString('hex');

export interface NetRoot {
  dir: string;
  cni: { confDir: string; binDirs: string[]; cacheDir: string };
}

export async function makeRoot(): Promise<NetRoot> {
  const dir = await mkdtemp(join(tmpdir(), 'bh-nettest-'));
  return { dir, cni: { confDir: join(dir, 'net.d'), binDirs: ['/usr/lib/cni'], cacheDir: join(dir, 'cache') } };
}

export async function openNetwork(root: NetRoot, network?: unknown): Promise<CniPodNetwork> {
  return await CniPodNetwork.create({ cni: root.cni, network, logger: silentLogger }, AbortSignal.timeout(60_000));
}

export function pod(id: string, over: Partial<PodNetworkRequest> = {}): PodNetworkRequest {
  // As the engine sets it for the old two levels: the guard for pods not allowed the host network.
  const trust = over.trust ?? 'trusted';
  return { id, name: `p-${id}`, namespace: 'nettest', uid: `uid-${id}`, portMappings: [], trust, egressGuard: trust !== 'trusted', mode: 'bridge', ...over };
}

export const sig = (): AbortSignal => AbortSignal.timeout(120_000);

/** Runs a command inside a netns (path) and returns the result. */
export async function inNs(netnsPath: string, args: string[], input?: string): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return await run('nsenter', [`--net=${netnsPath}`, '--', ...args], { timeoutMs: 20_000, ...(input !== undefined ? { input } : {}) });
}

/** An HTTP GET with busybox nc (2 s connect timeout); the body on success, null when it fails. */
export async function httpGet(netnsPath: string | null, host: string, port: number): Promise<string | null> {
  const args = ['busybox', 'nc', '-w', '2', host, String(port)];
  const input = `GET /index.html HTTP/1.0\r\nHost: ${host}\r\n\r\n`;
  const r = netnsPath ? await inNs(netnsPath, args, input) : await run(args[0]!, args.slice(1), { timeoutMs: 20_000, input });
  if (r.code !== 0 || !r.stdout.includes('200 OK')) return null;
  return r.stdout.split('\r\n\r\n').slice(1).join('\r\n\r\n');
}

/** Long-lived children started by a test, killed in after(). */
export class Procs {
  readonly #children: ChildProcess[] = [];

  /** busybox httpd serving `body` at /index.html, inside netnsPath (or the host when null). */
  async httpd(netnsPath: string | null, addr: string, body: string, dir: string): Promise<void> {
    const www = join(dir, `www-${rand()}`);
    await mkdir(www, { recursive: true });
    await writeFile(join(www, 'index.html'), body);
    const argv = ['busybox', 'httpd', '-f', '-p', addr, '-h', www];
    const child = netnsPath ? spawn('nsenter', [`--net=${netnsPath}`, '--', ...argv], { stdio: 'ignore' }) : spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
    this.#children.push(child);
    // Wait until it listens: poll with nc from the same netns.
    const [host, port] = addr.includes(':') ? addr.split(':') as [string, string] : ['127.0.0.1', addr];
    for (let i = 0; i < 50; i++) {
      if (child.exitCode !== null) throw new Error(`httpd on ${addr} exited with ${child.exitCode}`);
      const ok = await httpGet(netnsPath, host === '0.0.0.0' ? '127.0.0.1' : host, Number(port));
      if (ok === body) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`httpd on ${addr} did not come up`);
  }

  async killAll(): Promise<void> {
    await Promise.all(this.#children.map((c) => new Promise<void>((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) { resolve(); return; }
      c.once('exit', () => resolve());
      c.kill('SIGKILL');
    })));
  }
}

export async function removeRoot(root: NetRoot): Promise<void> {
  await rm(root.dir, { recursive: true, force: true });
}

/** All host interface names. */
export async function hostLinks(): Promise<string[]> {
  const r = await run('ip', ['-j', 'link', 'show'], { timeoutMs: 10_000 });
  return (JSON.parse(r.stdout) as { ifname: string }[]).map((l) => l.ifname);
}
