// `bulkhead port-forward POD [LOCAL:]REMOTE...`: forwards local TCP ports (on 127.0.0.1 unless
// --address says otherwise) to ports inside a pod, like `kubectl port-forward`. Each accepted
// connection gets its own PortForward URL and a WebSocket (`v4.channel.k8s.io`): channel 0 carries
// the data, channel 1 errors; the server first sends the port (uint16 LE) on both.
import { createServer, type Server, type Socket } from 'node:net';
import type { Command, CommandContext } from './command.ts';
import { UsageError } from './command.ts';
import type { CriClient } from '../cri/client.ts';
import { findPod, withClient } from './client.ts';

export function parsePortPair(spec: string): { local: number; remote: number } {
  const parts = spec.split(':');
  const num = (s: string | undefined, min: number): number => {
    const n = Number(s);
    if (s === undefined || s === '' || !Number.isInteger(n) || n < min || n > 65535) throw new UsageError(`invalid port mapping "${spec}": use [LOCAL:]REMOTE (LOCAL 0 = any free port)`);
    return n;
  };
  if (parts.length === 1) { const p = num(parts[0], 1); return { local: p, remote: p }; }
  if (parts.length === 2) return { local: parts[0] === '' ? 0 : num(parts[0], 0), remote: num(parts[1], 1) };
  throw new UsageError(`invalid port mapping "${spec}": use [LOCAL:]REMOTE`);
}

async function forwardOne(client: CriClient, podId: string, remote: number, sock: Socket, ctx: CommandContext): Promise<void> {
  let ws: WebSocket;
  try {
    const url = await client.portForward(podId, [remote]);
    ws = new WebSocket(url.replace(/^http/, 'ws'), ['v4.channel.k8s.io']);
  } catch (err) {
    ctx.stderr.write(`bulkhead: port-forward to ${remote}: ${(err as Error).message}\n`);
    sock.destroy();
    return;
  }
  ws.binaryType = 'arraybuffer';
  const seenPort = [false, false];
  const pending: Buffer[] = [];
  const send = (b: Buffer): void => { ws.send(Buffer.concat([Buffer.of(0), b])); };
  sock.on('data', (b: Buffer) => { if (ws.readyState === WebSocket.OPEN) send(b); else pending.push(b); });
  sock.on('end', () => ws.close());
  sock.on('error', () => ws.close());
  ws.addEventListener('open', () => { for (const b of pending.splice(0)) send(b); });
  ws.addEventListener('message', (ev: MessageEvent) => {
    const buf = Buffer.from(ev.data as ArrayBuffer);
    const ch = buf[0];
    if (ch !== 0 && ch !== 1) return;
    let data = buf.subarray(1);
    if (!seenPort[ch]) { seenPort[ch] = true; data = data.subarray(2); }
    if (data.length === 0) return;
    if (ch === 0) sock.write(data);
    else { ctx.stderr.write(`bulkhead: port-forward to ${remote}: ${data.toString()}\n`); sock.destroy(); }
  });
  ws.addEventListener('close', () => sock.end());
  ws.addEventListener('error', () => sock.destroy());
}

const command: Command = {
  name: 'port-forward',
  synopsis: 'bulkhead port-forward [--address 127.0.0.1] POD [LOCAL:]REMOTE...',
  summary: 'Forward local ports to ports inside a pod',
  flags: { address: { type: 'string' } },
  async run(ctx) {
    const [ref, ...specs] = ctx.args;
    if (!ref || specs.length === 0) throw new UsageError('port-forward needs a POD and at least one [LOCAL:]REMOTE port (example: bulkhead port-forward web 8080:80)');
    const pairs = specs.map(parsePortPair);
    const address = (ctx.flags.address as string | undefined) ?? '127.0.0.1';
    return await withClient(ctx, async (client) => {
      const pod = await findPod(client, ref);
      const servers: Server[] = [];
      try {
        for (const { local, remote } of pairs) {
          const server = createServer((sock) => { void forwardOne(client, pod.id, remote, sock, ctx); });
          await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(local, address, () => resolve()); });
          servers.push(server);
          const port = (server.address() as { port: number }).port;
          ctx.stdout.write(`Forwarding from ${address}:${port} -> ${remote}\n`);
        }
        await new Promise<void>((resolve) => {
          if (ctx.signal.aborted) resolve();
          ctx.signal.addEventListener('abort', () => resolve(), { once: true });
        });
        return 0;
      } finally {
        await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
      }
    });
  },
};
export default command;
