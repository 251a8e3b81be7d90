// How the sub-container shim starts a sandbox's runsc for --network=sandbox (./runsc-launch.ts),
// against a stand-in runsc that reports its argv and whether it can see the per-netns sysctl
// runsc 2022 takes for "root netns". The real runsc is tested in test/runtime/gvisor-pod.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../util/exec.ts';
import { launchArgv, SANDBOX_NETWORK_ANNOTATION, sandboxNetworkOf } from './runsc-launch.ts';
import { KIND_FILE, shimKindOf, writeSubcontainerShim } from './subcontainer-shim.ts';
import type { OciSpec } from '../../oci/spec.ts';

const SYSCTL = '/proc/sys/net/core/rmem_default';
const FAKE_RUNSC = `#!/bin/sh
{ printf '%s\\n' "$@"; if [ -e ${SYSCTL} ]; then echo VISIBLE; else echo HIDDEN; fi; } > "$FAKE_OUT"
`;

/** Mount points at or under /proc/sys/net in this process's mount namespace (other tenants mount elsewhere meanwhile). */
const netMounts = async (): Promise<string[]> => (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m === '/proc/sys/net' || m.startsWith('/proc/sys/net/'));

describe('runsc launch for --network=sandbox', () => {
  let dir: string;
  let shim: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulkhead-runsc-launch-'));
    await writeFile(join(dir, 'runsc'), FAKE_RUNSC, { mode: 0o755 });
    shim = join(dir, 'shim');
    writeSubcontainerShim(shim, { runsc: join(dir, 'runsc'), runDir: dir, sandboxLaunch: 'hide-proc-sys-net' });
  });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  /**
   * A bundle `<dir>/containers/<id>` whose spec carries `network` as the backend's mark ('' = none),
   * with the shim's kind file as the backend writes it, or (`kindFile` false) as an older daemon left it.
   */
  async function bundle(id: string, network: string, kindFile = true): Promise<string> {
    const b = join(dir, 'containers', id);
    await mkdir(b, { recursive: true });
    const spec = { ociVersion: '1.0.2', annotations: { 'io.kubernetes.cri.container-type': 'sandbox', ...(network ? { [SANDBOX_NETWORK_ANNOTATION]: network } : {}) } };
    await writeFile(join(b, 'config.json'), JSON.stringify(spec));
    if (kindFile) await writeFile(join(b, KIND_FILE), `${shimKindOf(spec)}\n`);
    return b;
  }

  async function call(args: string[]): Promise<{ argv: string[]; sysctl: string }> {
    const out = join(dir, 'out');
    await rm(out, { force: true });
    const r = await run(shim, args, { timeoutMs: 10_000, env: { ...process.env, FAKE_OUT: out } });
    assert.equal(r.code, 0, r.stderr);
    const lines = (await readFile(out, 'utf8')).split('\n').slice(0, -1);
    return { argv: lines.slice(0, -1), sysctl: lines[lines.length - 1]! };
  }

  it('a netstack sandbox\'s start runs with /proc/sys/net hidden (its create and other calls do not); nothing is left mounted here', async () => {
    assert.deepEqual(await netMounts(), []);
    const b = await bundle('sbx1', 'sandbox');
    const g = ['--root', join(dir, 'state'), '--platform=ptrace', '--network=sandbox'];
    const create = await call([...g, 'create', '--bundle', b, '--pid-file', join(b, 'pidfile'), 'sbx1']);
    assert.equal(create.sysctl, 'VISIBLE');
    // an id or argument with shell syntax reaches runsc as one argv entry, unexpanded
    const start = await call([...g, 'start', 'sbx1']);
    assert.deepEqual(start, { argv: [...g, 'start', 'sbx1'], sysctl: 'HIDDEN' });
    const odd = await call([...g, 'run', '--bundle', b, `x'; touch ${join(dir, 'pwned')}; "$(id)`]);
    assert.deepEqual(odd, { argv: [...g, 'run', '--bundle', b, `x'; touch ${join(dir, 'pwned')}; "$(id)`], sysctl: 'HIDDEN' });
    assert.equal(existsSync(join(dir, 'pwned')), false);
    assert.equal((await call([...g, 'state', 'sbx1'])).sysctl, 'VISIBLE');
    assert.deepEqual(await netMounts(), [], 'no mount reached this mount namespace');
    assert.ok(existsSync(SYSCTL));
  });

  it('a sandbox marked for the node\'s network runs --network=host, never with the sysctl hidden; an unmarked one as asked', async () => {
    const b = await bundle('sbx2', 'host');
    const g = ['--root', join(dir, 'state'), '--network=sandbox'];
    const create = await call([...g, 'create', '--bundle', b, '--pid-file', join(b, 'pidfile'), 'sbx2']);
    assert.deepEqual(create, { argv: ['--root', join(dir, 'state'), '--network=host', 'create', '--bundle', b, '--pid-file', join(b, 'pidfile'), 'sbx2'], sysctl: 'VISIBLE' });
    assert.deepEqual(await call([...g, 'start', 'sbx2']), { argv: ['--root', join(dir, 'state'), '--network=host', 'start', 'sbx2'], sysctl: 'VISIBLE' });
    await bundle('sbx3', '');
    assert.deepEqual(await call([...g, 'start', 'sbx3']), { argv: [...g, 'start', 'sbx3'], sysctl: 'VISIBLE' });
  });

  it('a bundle without the kind file (made by an older daemon) is launched as one with it', async () => {
    const g = ['--root', join(dir, 'state'), '--platform=ptrace', '--network=sandbox'];
    for (const network of ['sandbox', 'host', '']) {
      const seen: { argv: string[]; sysctl: string }[][] = [];
      for (const [id, kindFile] of [[`new-${network}`, true], [`old-${network}`, false]] as const) {
        const b = await bundle(id, network, kindFile);
        const calls = [
          await call([...g, 'create', '--bundle', b, '--pid-file', join(b, 'pidfile'), id]),
          await call([...g, 'start', id]),
        ];
        seen.push(calls.map((c) => ({ ...c, argv: c.argv.map((a) => a.replaceAll(id, 'ID')) })));
      }
      assert.deepEqual(seen[0], seen[1], `network mark '${network}'`);
    }
  });

  it('launchArgv: the hidden launch passes argv through as is', async () => {
    const { cmd, args } = launchArgv('hide-proc-sys-net', '/bin/sh', ['-c', `test -e ${SYSCTL} && echo visible || echo "hidden $0"`, 'a b']);
    const r = await run(cmd, args, { timeoutMs: 10_000 });
    assert.equal(r.stdout, 'hidden a b\n', r.stderr);
    assert.deepEqual(launchArgv('plain', '/x', ['y']), { cmd: '/x', args: ['y'] });
  });

  it('sandboxNetworkOf: netstack only for a network namespace other than this process\'s own', async () => {
    const spec = (ns?: { path?: string }): OciSpec => ({ ociVersion: '1.0.2', linux: { namespaces: ns ? [{ type: 'network', ...ns }] : [] } }) as OciSpec;
    assert.equal(sandboxNetworkOf(spec()), 'host');
    assert.equal(sandboxNetworkOf(spec({ path: '/proc/self/ns/net' })), 'host');
    assert.equal(sandboxNetworkOf(spec({ path: `/proc/${process.pid}/ns/net` })), 'host');
    assert.equal(sandboxNetworkOf(spec({ path: join(dir, 'missing') })), 'host');
    assert.equal(sandboxNetworkOf(spec({})), 'sandbox');
    const name = `bh-gvnet-test-${process.pid}`;
    const add = await run('ip', ['netns', 'add', name], { timeoutMs: 10_000 });
    assert.equal(add.code, 0, add.stderr);
    try {
      assert.equal(sandboxNetworkOf(spec({ path: `/run/netns/${name}` })), 'sandbox');
    } finally {
      await run('ip', ['netns', 'delete', name], { timeoutMs: 10_000 });
    }
  });
});
