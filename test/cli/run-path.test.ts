// The round trips of `bulkhead run` (src/cli/run.ts runWith) against a real daemon, real runc and
// conmon, through a client that records each call: the pod is made while the image is looked up,
// the exit code comes with the STOPPED event (no status round trip after it, none polled while the
// event stream is open), and a run whose image cannot be had leaves no pod, with or without --rm.
// The CLI talks to the gRPC server's own socket, not through the public socket's relay. A real run
// through the bundle of the run path (src/cli/bundle.ts) behaves as one from the sources.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { lstat, mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { cliArgs, runCli } from '../fixtures/cli.ts';
import { execFile } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { buildBundle } from '../../src/cli/bundle-build.ts';
import { writeBusyboxArchive } from '../../src/cli/demo-image.ts';
import { connect, type CriClient } from '../../src/cri/client.ts';
import { runWith, type RunRequest } from '../../src/cli/run.ts';
import type { CommandContext } from '../../src/cli/command.ts';

const IMAGE = 'bulkhead.local/run-path:latest';

class Collect extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: string, cb: () => void): void { this.text += chunk.toString(); cb(); }
}

/** `client` with every call, its end and every event it streams written to `log`, in order. */
function recording(client: CriClient, log: string[]): CriClient {
  return new Proxy(client, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function' || typeof prop !== 'string') return v;
      return (...args: unknown[]) => {
        log.push(`call ${prop}`);
        const r = (v as (...a: unknown[]) => unknown).apply(target, args);
        if (prop === 'getContainerEvents') {
          const it = r as AsyncIterable<{ containerEventType: string }>;
          return (async function* () {
            for await (const ev of it) { log.push(`event ${ev.containerEventType}`); yield ev; }
          })();
        }
        if (r instanceof Promise) r.then(() => log.push(`done ${prop}`), () => log.push(`fail ${prop}`));
        return r;
      };
    },
  });
}

describe('bulkhead run: its round trips', () => {
  let d: TestDaemon;
  let dir: string;
  let client: CriClient;
  before(async () => {
    d = await startTestDaemon({ name: 'run-path' });
    dir = await mkdtemp(join(tmpdir(), 'bulkhead-run-path-'));
    const archive = join(dir, 'img.tar');
    await writeBusyboxArchive(archive, IMAGE);
    const r = await runCli(d, ['load', '-i', archive]);
    assert.equal(r.code, 0, r.stderr);
    client = await connect(d.socket);
  });
  after(async () => {
    client?.close();
    await d?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const request = (image: string, args: string[], remove: boolean): RunRequest => ({
    image, args, name: `rp-${Math.random().toString(16).slice(2, 10)}`, isolation: 'runc', detach: false, remove,
    interactive: false, tty: false, env: [], volumes: [], publish: [], network: 'none', readOnly: false, privileged: false,
    capAdd: [], capDrop: [], labels: [],
  });
  const context = (image: string): CommandContext & { stdout: Collect; stderr: Collect } => ({
    global: { root: d.root, runDir: d.runDir, socket: d.socket, config: d.configPath, json: false, debug: false },
    flags: { quiet: true }, args: [image], stdout: new Collect(), stderr: new Collect(), signal: new AbortController().signal,
  });

  it('run --rm: the pod is asked for before the image answer, and nothing after the STOPPED event but the removal', { timeout: 120_000 }, async () => {
    const log: string[] = [];
    const ctx = context(IMAGE);
    const code = await runWith(recording(client, log), request(IMAGE, ['sh', '-c', 'echo hi; sleep 0.2; exit 3'], true), ctx);
    assert.equal(code, 3, ctx.stderr.text);
    assert.equal(ctx.stdout.text, 'hi\n');
    assert.ok(log.indexOf('call runPodSandbox') < log.indexOf('done imageStatus'), `the pod and the image in parallel: ${log.join(', ')}`);
    const stopped = log.indexOf('event CONTAINER_STOPPED_EVENT');
    assert.ok(stopped > 0, `the exit came as an event: ${log.join(', ')}`);
    const after = log.slice(stopped + 1).filter((l) => l.startsWith('call '));
    assert.deepEqual(after, ['call removePodSandbox'], `calls after the exit event: ${log.join(', ')}`);
    assert.ok(!log.includes('call containerStatus'), `no status polled while the event stream was open: ${log.join(', ')}`);
    assert.equal((await client.listPodSandbox()).length, 0, '--rm leaves no pod');
  });

  it('the CLI calls the gRPC server on its own socket (no relay hop): it works with the public socket moved away', { timeout: 120_000 }, async () => {
    const direct = `${d.socket}.grpc`;
    await rename(d.socket, `${d.socket}.away`);
    try {
      const r = await runCli(d, ['images', '--json']);
      assert.equal(r.code, 0, `with only the server's own socket there: ${r.stderr}`);
      assert.match(r.stdout, /run-path/);
    } finally {
      await rename(`${d.socket}.away`, d.socket);
    }
    // (the other way round cannot be made: the public socket's relay connects to the server's own)
    assert.ok((await lstat(direct)).isSocket());
  });

  it('bulkhead run from the bundle of its path: exit code, output, a usage error, a command not in the image, and --rm as from the sources', { timeout: 120_000 }, async () => {
    const out = join(dir, 'bundle');
    const b = await buildBundle(join(import.meta.dirname, '..', '..'), out);
    assert.ok(b.built, `no bundle: ${b.built ? '' : b.reason}`);
    const url = pathToFileURL(join(out, 'run.mjs')).href;
    const bundled = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => new Promise((res) => {
      execFile(process.execPath, ['--input-type=module', '-e', `(await import(${JSON.stringify(url)})).runMain(process.argv.slice(1))`, '--', ...cliArgs(d), 'run', ...args],
        { timeout: 60_000 }, (err, stdout, stderr) => res({ code: err ? Number(err.code) : 0, stdout, stderr }));
    });
    const ran = await bundled(['--rm', '--network', 'none', '--isolation', 'runc', IMAGE, 'sh', '-c', 'echo hi; exit 3']);
    assert.deepEqual([ran.code, ran.stdout], [3, 'hi\n'], ran.stderr);
    const missing = await bundled(['--rm', '--network', 'none', '--isolation', 'runc', IMAGE, 'no-such-command']);
    assert.equal(missing.code, 127, missing.stderr);
    const usage = await bundled(['--no-such-flag', IMAGE]);
    assert.equal(usage.code, 2, usage.stderr);
    assert.match(usage.stderr, /^bulkhead: unknown flag --no-such-flag/);
    assert.deepEqual(await client.listPodSandbox(), [], '--rm leaves no pod');
  });

  it('an image that cannot be had: the pod made meanwhile is removed, with and without --rm', { timeout: 120_000 }, async () => {
    for (const remove of [true, false]) {
      const image = '127.0.0.1:1/none/such:tag';
      const log: string[] = [];
      await assert.rejects(runWith(recording(client, log), request(image, ['true'], remove), context(image)));
      assert.ok(log.includes('done runPodSandbox'), `the pod was made while the pull failed: ${log.join(', ')}`);
      assert.deepEqual(await client.listPodSandbox(), [], `no pod left (--rm ${remove})`);
    }
  });
});
