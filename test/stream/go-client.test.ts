// Interoperability with the real Go clients (client-go remotecommand and portforward over Moby's
// spdystream, as kubectl and crictl use them). The probe is built from cri-tools v1.26.1's vendored
// client-go (build testdata/streamprobe/main.go by hand inside a cri-tools v1.26.1 checkout with its vendored
// modules: go build -mod=vendor; nothing fetched is kept in this repo); the test is skipped, saying so, when it is absent.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { StreamServer } from '../../src/stream/stream-server.ts';
import { silentLogger } from '../../src/util/log.ts';
import { run } from '../../src/util/exec.ts';
import { ProcessRuntime, startEchoServer } from './process-runtime.ts';

const probe = process.env['BULKHEAD_STREAMPROBE'] ?? '/tmp/streamprobe';
const skip = existsSync(probe) ? false : `Go stream probe not built at ${probe} (set BULKHEAD_STREAMPROBE)`;

describe('stream server with the Go client-go SPDY clients', { skip }, () => {
  const runtime = new ProcessRuntime();
  const server = new StreamServer({ runtime, logger: silentLogger });
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let echoPort = 0;

  before(async () => {
    await server.start();
    echo = await startEchoServer();
    echoPort = echo.port;
  });
  after(async () => {
    await server.close();
    await echo.close();
  });

  it('exec: stdin, separate stdout/stderr and the exit code', async () => {
    const { url } = server.getExec({ containerId: 'g1', cmd: ['sh', '-c', 'cat; echo err >&2; exit 5'], tty: false, stdin: true, stdout: true, stderr: true });
    const r = await run(probe, ['exec', url], { input: 'from go\n', timeoutMs: 30_000 });
    assert.equal(r.stdout, 'from go\n');
    assert.match(r.stderr, /^err\n/);
    assert.match(r.stderr, /remote exit code 5/);
    assert.equal(r.code, 5);
  });

  it('exec: output far beyond one SPDY window arrives whole (the Go client sends no WINDOW_UPDATE)', async () => {
    const { url } = server.getExec({ containerId: 'g2', cmd: ['seq', '1', '200000'], tty: false, stdin: false, stdout: true, stderr: false });
    const r = await run(probe, ['exec', url], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 200000);
    assert.equal(lines.at(-1), '200000');
  });

  it('port-forward: two connections through one SPDY session', async () => {
    const { url } = server.getPortForward({ podSandboxId: 'pod' });
    const r = await run(probe, ['pf', url, String(echoPort)], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'Through the tunnel 0\nThrough the tunnel 1\n');
  });
});
