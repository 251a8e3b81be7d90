// The stream server's WebSocket side, the current tree (on `ws`) side by side with a baseline
// revision (default: the hand-written RFC 6455 framing, the last commit before the move to ws),
// in ONE run: the baseline's src/ is exported with `git archive` to a temp dir and imported from
// there, both servers run in this process with the same runtime and the same client (`ws`).
//
//   node bench/stream-ws.ts [--mib 64] [--runs 3] [--baseline <rev>]
//
// Three transfers of --mib MiB each, over 127.0.0.1:
//   download:     exec `head -c N /dev/zero`, stdout to the client (server → client frames)
//   exec cat:     N bytes of stdin to `cat` and back on stdout (both directions at once)
//   port-forward: N bytes through a forwarded port to a TCP echo server and back
// Runs alternate baseline/current; prints the median and best MiB/s of each and the ratio of the
// medians (current / baseline). The runtime spawns host processes (no container), so the figures
// are the streaming layer's, not a container's. Every child has a timeout; the bench gives up
// after --limit-min minutes.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import { StreamServer } from '../src/stream/stream-server.ts';
import type { StreamIO, StreamRuntime } from '../src/stream/types.ts';
import { run } from '../src/util/exec.ts';
import { silentLogger } from '../src/util/log.ts';

const BASELINE = '35ce4f82e71b2bec79667e0b860e7ca987299877';
const { values: args } = parseArgs({ options: {
  mib: { type: 'string', default: '64' }, runs: { type: 'string', default: '3' },
  baseline: { type: 'string', default: BASELINE }, 'limit-min': { type: 'string', default: '10' },
} });
const BYTES = Number(args.mib) * 1024 * 1024;
const RUNS = Number(args.runs);
setTimeout(() => { console.error(`bench/stream-ws: gave up after ${args['limit-min']} min`); process.exit(2); }, Number(args['limit-min']) * 60_000).unref();

/** Host processes and loopback TCP: what the engine does, without a container. */
class HostRuntime implements StreamRuntime {
  async exec(_id: string, cmd: string[], io: StreamIO, signal: AbortSignal): Promise<number> {
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['pipe', 'pipe', 'ignore'], signal, timeout: 120_000 });
    child.on('error', () => { /* aborted */ });
    child.stdin.on('error', () => { /* exited before reading */ });
    if (io.stdin) io.stdin.pipe(child.stdin); else child.stdin.end();
    if (io.stdout) child.stdout.pipe(io.stdout, { end: false }); else child.stdout.resume();
    const out = new Promise<void>((r) => child.stdout.once('end', () => r()));
    const code = await new Promise<number>((r) => child.once('close', (c) => r(c ?? 137)));
    await out;
    return code;
  }

  async attach(): Promise<void> { throw new Error('not used'); }

  async portForward(_pod: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void> {
    const sock = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
    signal.addEventListener('abort', () => sock.destroy(), { once: true });
    await new Promise<void>((resolve) => {
      conn.pipe(sock);
      sock.pipe(conn);
      sock.once('close', () => resolve());
      conn.once('close', () => sock.destroy());
    });
  }
}

interface Server { getExec: StreamServer['getExec']; getPortForward: StreamServer['getPortForward']; start: StreamServer['start']; close: StreamServer['close'] }

/** Sends `total` bytes as 32 KiB messages on `channel`, at most 1 MiB unacknowledged. */
function upload(ws: WebSocket, channel: number, total: number, done: () => void): void {
  const chunk = Buffer.alloc(32 * 1024 + 1, 0x61);
  chunk[0] = channel;
  let sent = 0;
  let inFlight = 0;
  const pump = (): void => {
    while (inFlight < 32 && sent < total) {
      const n = Math.min(32 * 1024, total - sent);
      sent += n;
      inFlight++;
      ws.send(n === 32 * 1024 ? chunk : chunk.subarray(0, n + 1), { binary: true }, () => { inFlight--; pump(); });
    }
    if (sent >= total && inFlight === 0) { done(); sent = Infinity; }
  };
  pump();
}

type Scenario = 'download' | 'exec cat' | 'port-forward';

/** One transfer; returns MiB/s (time from the upgrade request to the last byte back). */
async function transfer(server: Server, scenario: Scenario, echoPort: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  let url: string;
  let protocol: string;
  if (scenario === 'port-forward') {
    url = server.getPortForward({ podSandboxId: 'bench', port: [echoPort] }).url;
    protocol = 'v4.channel.k8s.io';
  } else {
    const cmd = scenario === 'download' ? ['head', '-c', String(BYTES), '/dev/zero'] : ['cat'];
    url = server.getExec({ containerId: 'bench', cmd, tty: false, stdin: scenario === 'exec cat', stdout: true, stderr: false }).url;
    protocol = 'v5.channel.k8s.io';
  }
  const ws = new WebSocket(url.replace(/^http/, 'ws'), [protocol], { perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });
  let got = 0;
  let preambles = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${scenario}: no end after 120 s (${got} bytes)`)), 120_000);
    ws.on('error', reject);
    ws.on('message', (data: Buffer) => {
      if (data[0] !== (scenario === 'port-forward' ? 0 : 1)) return;
      if (scenario === 'port-forward' && preambles++ === 0) return; // the port number
      got += data.length - 1;
      if (got >= BYTES) { clearTimeout(timer); resolve(); }
    });
    ws.on('open', () => {
      if (scenario === 'exec cat') upload(ws, 0, BYTES, () => ws.send(Buffer.of(255, 0))); // then close stdin
      if (scenario === 'port-forward') upload(ws, 0, BYTES, () => { /* the echo comes back */ });
    });
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  ws.terminate();
  return BYTES / (1024 * 1024) / secs;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-stream-ws-'));
  const echo = createServer((c) => { c.on('error', () => c.destroy()); c.pipe(c); });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  const echoPort = (echo.address() as { port: number }).port;
  try {
    const tar = join(dir, 'src.tar');
    const a = await run('git', ['archive', '-o', tar, args.baseline, 'src'], { timeoutMs: 60_000 });
    if (a.code !== 0) throw new Error(`git archive ${args.baseline}: ${a.stderr.trim()}`);
    const x = await run('tar', ['-xf', tar, '-C', dir], { timeoutMs: 60_000 });
    if (x.code !== 0) throw new Error(`tar: ${x.stderr.trim()}`);
    const old = (await import(join(dir, 'src', 'stream', 'stream-server.ts'))) as { StreamServer: new (o: ConstructorParameters<typeof StreamServer>[0]) => Server };
    const runtime = new HostRuntime();
    const servers: Record<'baseline' | 'current', Server> = {
      baseline: new old.StreamServer({ runtime, logger: silentLogger }),
      current: new StreamServer({ runtime, logger: silentLogger }),
    };
    for (const s of Object.values(servers)) await s.start();
    console.log(`stream server over WebSocket, ${args.mib} MiB per transfer, ${RUNS} runs each, alternating; baseline ${args.baseline.slice(0, 12)} (hand-written RFC 6455), current (ws ${(JSON.parse(await readFile(join(import.meta.dirname, '..', 'node_modules', 'ws', 'package.json'), 'utf8')) as { version: string }).version})`);
    console.log('scenario        baseline MiB/s (median / best)   current MiB/s (median / best)   current/baseline');
    for (const scenario of ['download', 'exec cat', 'port-forward'] as const) {
      const figures: Record<'baseline' | 'current', number[]> = { baseline: [], current: [] };
      await transfer(servers.current, scenario, echoPort); // warm-up
      await transfer(servers.baseline, scenario, echoPort);
      for (let i = 0; i < RUNS; i++) {
        for (const name of ['baseline', 'current'] as const) figures[name].push(await transfer(servers[name], scenario, echoPort));
      }
      const med = (xs: number[]): number => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)]!;
      const f = (xs: number[]): string => `${med(xs).toFixed(0).padStart(6)} / ${Math.max(...xs).toFixed(0).padStart(6)}`;
      console.log(`${scenario.padEnd(16)}${f(figures.baseline).padEnd(33)}${f(figures.current).padEnd(32)}${(med(figures.current) / med(figures.baseline)).toFixed(2)}`);
    }
    for (const s of Object.values(servers)) await s.close();
  } finally {
    echo.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
