// An exec session's process starts only once the attach helper (perl, bridging conmon's
// SOCK_SEQPACKET socket) is connected. Before, the session waited at most ~1 s for a helper
// "alive for 30 ms", then let conmon start the process anyway: a short tty exec's whole output was
// lost when perl started slowly (the backend suite's 'execs with a terminal' under load: exit 3,
// stdout ''). Here perl is made slow for certain: a `perl` first on PATH that waits 2 s.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RuncBackend } from '../../src/runtime/runc/runc-backend.ts';
import { buildSpec } from '../../src/runtime/spec.ts';
import { silentLogger } from '../../src/util/log.ts';
import { removeTree } from '../../src/cgroup/tree.ts';
import { makeBusyboxRootfs, type RootfsFixture } from '../../harness/rootfs.ts';

describe('conmon exec sessions with a slow attach helper', () => {
  let fx: RootfsFixture;
  let backend: RuncBackend;
  const cgroupParent = `/bulkhead-test-attach-${randomBytes(3).toString('hex')}`;
  const id = `attach-${process.pid}`;
  const path = process.env.PATH;

  before(async () => {
    fx = await makeBusyboxRootfs('bulkhead-conmon-attach-');
    const bin = join(fx.dir, 'slow-bin');
    await mkdir(bin);
    await writeFile(join(bin, 'perl'), '#!/bin/sh\nsleep 2\nexec /usr/bin/perl "$@"\n', { mode: 0o755 });
    backend = new RuncBackend({ runDir: join(fx.dir, 'run'), logger: silentLogger });
    const spec = await buildSpec({ rootfs: fx.path, cgroupParent, cgroupName: id, command: ['sleep', '1000'] });
    await backend.createContainer({ id, spec, pod: { podId: `pod-${id}`, role: 'sandbox' }, logPath: join(fx.dir, `${id}.log`) });
    await backend.start(id);
    process.env.PATH = `${bin}:${path}`;
  });
  after(async () => {
    process.env.PATH = path;
    await backend?.delete(id).catch(() => {});
    await backend?.close();
    await removeTree(cgroupParent).catch(() => {});
    await fx?.cleanup();
  });

  it('a tty exec that prints and exits at once: its output is there', async () => {
    const r = await backend.exec(id, { args: ['sh', '-c', 'echo early-output; exit 3'], tty: true, timeoutMs: 60_000 });
    assert.equal(r.exitCode, 3);
    assert.match(r.stdout.toString(), /early-output/);
  });

  it('an interactive exec without a tty: stdout and stderr of its first instant are there', async () => {
    const p = await backend.execInteractive(id, { args: ['sh', '-c', 'echo first-out; echo first-err >&2'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (b: Buffer) => out.push(b));
    p.stderr?.on('data', (b: Buffer) => err.push(b));
    assert.equal(await p.wait(), 0);
    assert.equal(Buffer.concat(out).toString(), 'first-out\n');
    assert.equal(Buffer.concat(err).toString(), 'first-err\n');
  });

  it('attach to the running container still connects', async () => {
    const a = await backend.attach(id);
    a.close();
    await a.wait();
  });
});
