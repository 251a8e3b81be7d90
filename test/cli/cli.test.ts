// The bulkhead CLI end to end: the real command (bin/bulkhead) against a real daemon on a temporary
// socket, real runc and conmon, an image built from busybox-static and loaded, and the registry
// fixture for pulls. Exit codes, output streams, flag pass-through, JSON output and clear errors.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { BIN, cliArgs, runCli, type CliResult } from '../fixtures/cli.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages } from '../../harness/images.ts';
import { writeBusyboxArchive } from '../../src/cli/demo-image.ts';

const IMAGE = 'bulkhead.local/cli-test:latest';

function bulkhead(d: TestDaemon, args: string[], input?: string): Promise<CliResult> {
  return runCli(d, args, { input });
}

describe('bulkhead CLI against a real daemon', () => {
  let d: TestDaemon;
  let dir: string;
  before(async () => {
    const reg = await sharedRegistry();
    d = await startTestDaemon({ name: 'cli', registries: { insecure: [reg.host] } });
    dir = await mkdtemp(join(tmpdir(), 'bulkhead-cli-'));
    const archive = join(dir, 'img.tar');
    await writeBusyboxArchive(archive, IMAGE);
    const r = await bulkhead(d, ['load', '-i', archive]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Loaded image: bulkhead\.local\/cli-test:latest/);
  });
  after(async () => {
    await d?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('run --rm: stdout and stderr kept apart, the exit code becomes the CLI\'s, workload flags pass through', async () => {
    const r = await bulkhead(d, ['run', '--rm', '--network', 'none', IMAGE, 'sh', '-c', 'echo out; echo err >&2; ls -la / >/dev/null; exit 3']);
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stdout, 'out\n');
    assert.match(r.stderr, /^err$/m);
    const pods = await d.client.listPodSandbox();
    assert.equal(pods.length, 0, '--rm leaves no pod behind');
    assert.deepEqual(await readdir(join(d.root, 'logs')).catch(() => []), [], '--rm leaves no log directory behind');
    const flags = await bulkhead(d, ['run', '--rm', '--network', 'none', IMAGE, 'ls', '-d', '/etc']);
    assert.equal(flags.code, 0, flags.stderr);
    assert.equal(flags.stdout, '/etc\n');
  });

  it('run --rm ends its process as soon as the run is done: a large output still arrives whole through a pipe (its unended last line too), with the exit code', async () => {
    // 1 MiB: 61680 lines and the start of one more, never ended (given as it is, as docker does),
    // read by a reader slower than the CLI (the output is still queued when the run returns)
    const child = spawn(BIN, [...cliArgs(d), 'run', '--rm', '--network', 'none', IMAGE, 'sh', '-c', 'yes 0123456789abcdef | head -c 1048576; echo tail >&2; exit 5'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const r = await new Promise<CliResult>((resolve, reject) => {
      const out: Buffer[] = [];
      let stderr = '';
      child.stdout!.on('data', (b: Buffer) => {
        out.push(b);
        // a slow reader: a pause after each chunk
        child.stdout!.pause();
        setTimeout(() => child.stdout!.resume(), 2);
      });
      child.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString(), stderr }));
    });
    assert.equal(r.code, 5, r.stderr);
    assert.equal(r.stdout.length, 1048576);
    assert.equal(r.stdout, '0123456789abcdef\n'.repeat(61680) + '0123456789abcdef');
    assert.match(r.stderr, /^tail$/m);
    assert.equal((await d.client.listPodSandbox()).length, 0, 'and the pod is gone when it ends');
  });

  it('run --rm whose output reader goes away (| head): the run is stopped as by a signal and leaves no pod', async () => {
    const child = spawn(BIN, [...cliArgs(d), 'run', '--rm', '--network', 'none', '--name', 'epipe', IMAGE, 'sh', '-c', 'trap "exit 3" TERM; while :; do echo y; done'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    // a CLI that does not end by itself is stopped as Ctrl-C would (it removes its pod), and fails the test
    let stuck = false;
    const guard = setTimeout(() => { stuck = true; child.kill('SIGTERM'); }, 60_000);
    // the first output read, then the reader closes its end
    await new Promise<void>((resolve) => child.stdout!.once('data', () => { child.stdout!.destroy(); resolve(); }));
    const code = await closed;
    clearTimeout(guard);
    assert.equal(stuck, false, 'the CLI went on after its reader was gone');
    assert.doesNotMatch(stderr, /Unhandled 'error' event|EPIPE|unexpected error/, stderr);
    assert.equal(code, 3, `the workload's exit code (it ended on the stop signal): ${stderr}`);
    assert.deepEqual((await d.client.listPodSandbox()).map((p) => p.metadata.name), [], 'no pod left');
  });

  it('run --rm mounts the container\'s writable layer volatile (never synced, as podman\'s run --rm); a run kept after its exit does not', async (t) => {
    const [major = 0, minor = 0] = release().split('.').map(Number);
    if (major < 5 || (major === 5 && minor < 10)) { t.skip('overlayfs has no volatile option before Linux 5.10'); return; }
    const rootLine = 'grep " / / " /proc/self/mountinfo';
    const once = await bulkhead(d, ['run', '--rm', '--network', 'none', IMAGE, 'sh', '-c', `echo written > /f && cat /f && ${rootLine}`]);
    assert.equal(once.code, 0, once.stderr);
    const [written, root = ''] = once.stdout.split('\n');
    assert.equal(written, 'written', 'the writable layer works as before');
    // newer kernels show it as fsync=volatile
    assert.match(root, / - overlay overlay .*[,=]volatile(,|$)/, `the one-shot container's root: ${root}`);
    const kept = await bulkhead(d, ['run', '--name', 'kept-layer', '--network', 'none', IMAGE, 'sh', '-c', rootLine]);
    try {
      assert.equal(kept.code, 0, kept.stderr);
      assert.match(kept.stdout, / - overlay overlay /);
      assert.doesNotMatch(kept.stdout, /volatile/, 'a container that stays after its exit keeps a synced layer');
    } finally {
      assert.equal((await bulkhead(d, ['rm', '-f', 'kept-layer'])).code, 0);
    }
  });

  it('run -e, -w, -u, --memory and --read-only reach the container', async () => {
    const r = await bulkhead(d, ['run', '--rm', '--network', 'none', '-e', 'GREETING=hi', '-w', '/tmp', '-u', '1000:1000', '--memory', '32m', '--read-only',
      IMAGE, 'sh', '-c', 'echo "$GREETING $(pwd) $(id -u):$(id -g)"; touch /x 2>/dev/null && echo writable || echo readonly; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max']);
    assert.equal(r.code, 0, r.stderr);
    const [line1, line2, line3] = r.stdout.trim().split('\n');
    assert.equal(line1, 'hi /tmp 1000:1000');
    assert.equal(line2, 'readonly');
    assert.equal(Number(line3), 32 * 1024 * 1024);
  });

  it('run --sysctl sets the pod\'s sysctls (the policy judges them as a CRI pod\'s); a malformed one is a usage error before the daemon', async () => {
    const r = await bulkhead(d, ['run', '--rm', '--network', 'none', '--sysctl', 'kernel.shm_rmid_forced=1', '--sysctl', 'fs.mqueue.msg_max=100',
      IMAGE, 'cat', '/proc/sys/kernel/shm_rmid_forced', '/proc/sys/fs/mqueue/msg_max']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '1\n100\n');
    const bad = await bulkhead(d, ['run', '--rm', '--sysctl', 'kernel.shm_rmid_forced', IMAGE, 'true']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /invalid --sysctl "kernel\.shm_rmid_forced": expected NAME=VALUE/);
  });

  it('run -i feeds stdin to the workload', async () => {
    const r = await bulkhead(d, ['run', '--rm', '-i', '--network', 'none', IMAGE, 'sh', '-c', 'tr a-z A-Z'], 'hello stdin\n');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'HELLO STDIN\n');
  });

  it('run -d, ps, logs, exec, inspect --json, stats, stop, rm', async () => {
    const started = await bulkhead(d, ['run', '-d', '--name', 'web', '--network', 'none', IMAGE, 'sh', '-c', 'echo ready; exec sleep 300']);
    assert.equal(started.code, 0, started.stderr);
    const id = started.stdout.trim();
    assert.match(id, /^[0-9a-f]{64}$/);
    const ps = await bulkhead(d, ['ps']);
    assert.match(ps.stdout, /web/);
    assert.match(ps.stdout, /running/);
    const psJson = JSON.parse((await bulkhead(d, ['ps', '--json'])).stdout) as { id: string }[];
    assert.ok(psJson.some((c) => c.id === id));
    let logs = '';
    for (let i = 0; i < 50 && !logs.includes('ready'); i++) {
      logs = (await bulkhead(d, ['logs', 'web'])).stdout;
      if (!logs.includes('ready')) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(logs, 'ready\n');
    const ex = await bulkhead(d, ['exec', 'web', 'sh', '-c', 'echo in-container; exit 7']);
    assert.equal(ex.code, 7);
    assert.equal(ex.stdout, 'in-container\n');
    const insp = JSON.parse((await bulkhead(d, ['inspect', id.slice(0, 12)])).stdout) as { type: string; status: { state: string } }[];
    assert.equal(insp[0]?.type, 'container');
    assert.equal(insp[0]?.status.state, 'CONTAINER_RUNNING');
    const stats = JSON.parse((await bulkhead(d, ['stats', '--json', 'web'])).stdout) as { name: string; memoryWorkingSetBytes: number }[];
    assert.equal(stats[0]?.name, 'web');
    assert.ok(stats[0]!.memoryWorkingSetBytes > 0);
    const rmRunning = await bulkhead(d, ['rm', 'web']);
    assert.equal(rmRunning.code, 1);
    assert.match(rmRunning.stderr, /is running: stop it first or use -f/);
    assert.equal((await bulkhead(d, ['stop', '-t', '1', 'web'])).code, 0);
    assert.match((await bulkhead(d, ['ps', '-a'])).stdout, /exited/);
    assert.equal((await bulkhead(d, ['rm', 'web'])).code, 0);
    assert.equal((await d.client.listContainers()).length, 0);
    assert.equal((await d.client.listPodSandbox()).length, 0, 'the pod run made goes with its container');
    assert.deepEqual(await readdir(join(d.root, 'logs')).catch(() => []), [], 'and so does the log directory run chose for it');
  });

  it('port-forward reaches a busybox httpd inside a pod from 127.0.0.1', async () => {
    const started = await bulkhead(d, ['run', '-d', '--name', 'www', IMAGE, 'sh', '-c', 'mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www']);
    assert.equal(started.code, 0, started.stderr);
    const child = spawn(BIN, [...cliArgs(d), 'port-forward', 'www', '0:8080'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (b: Buffer) => { out += b.toString(); const m = /127\.0\.0\.1:(\d+) -> 8080/.exec(out); if (m) resolve(Number(m[1])); });
        child.on('close', (code) => reject(new Error(`port-forward exited ${code}`)));
      });
      let body = '';
      // httpd starts after run -d returns: polled for up to 60 s (30 tries were ~6 s on a quiet host)
      for (const until = Date.now() + 60_000; body !== 'hello-from-pod\n' && Date.now() < until;) {
        body = await fetch(`http://127.0.0.1:${port}/index.html`).then((r) => r.text()).catch(() => '');
        if (body !== 'hello-from-pod\n') await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(body, 'hello-from-pod\n');
    } finally {
      child.kill('SIGTERM');
      await bulkhead(d, ['rm', '-f', 'www']);
    }
  });

  it('pull shows per-layer progress as plain lines and images --json lists the result; rmi removes it', async () => {
    const reg = await sharedRegistry();
    const images = await buildAndPushTestImages(reg);
    const r = await bulkhead(d, ['pull', images.multilayer]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /[0-9a-f]{12}: /, 'progress lines on stderr');
    assert.match(r.stdout, /Image ID: sha256:[0-9a-f]{64}/);
    const list = JSON.parse((await bulkhead(d, ['images', '--json'])).stdout) as { repoTags: string[] }[];
    assert.ok(list.some((i) => i.repoTags.includes(images.multilayer)));
    assert.equal((await bulkhead(d, ['rmi', images.multilayer])).code, 0);
    const again = await bulkhead(d, ['rmi', images.multilayer]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /no such image/);
  });

  it('clear errors: unknown command, missing image, unknown handler, bad flags', async () => {
    const unknown = await bulkhead(d, ['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
    const noImage = await bulkhead(d, ['run', '--rm', '127.0.0.1:1/none/such:tag', 'true']);
    assert.notEqual(noImage.code, 0);
    assert.match(noImage.stderr, /bulkhead: /);
    // the command's reason (BH_COMMAND_NOT_FOUND / _NOT_EXECUTABLE over gRPC), not its text, gives docker's 127 / 126
    const typo = await bulkhead(d, ['run', '--rm', '--network', 'none', IMAGE, 'nosuchcmd-bh']);
    assert.equal(typo.code, 127, typo.stderr);
    assert.match(typo.stderr, /nosuchcmd-bh.*fix the command\/args of the pod spec/);
    const notExec = await bulkhead(d, ['run', '--rm', '--network', 'none', IMAGE, '/etc/passwd']);
    assert.equal(notExec.code, 126, notExec.stderr);
    assert.equal((await d.client.listPodSandbox()).length, 0, '--rm leaves no pod behind when the command is wrong');
    const handler = await bulkhead(d, ['run', '--rm', '--isolation', 'nosuch', IMAGE, 'true']);
    assert.equal(handler.code, 125);
    assert.match(handler.stderr, /unknown runtime handler "nosuch"/);
    const mem = await bulkhead(d, ['run', '--memory', 'lots', IMAGE, 'true']);
    assert.equal(mem.code, 2);
    assert.match(mem.stderr, /^bulkhead: invalid --memory "lots": give a positive size/m);
    const neg = await bulkhead(d, ['run', '--memory', '-5', IMAGE, 'true']);
    assert.equal(neg.code, 2);
    assert.match(neg.stderr, /^bulkhead: invalid --memory "-5": give a positive size/m);
    assert.doesNotMatch(neg.stderr, /ambiguous|Did you forget/);
    const long = await bulkhead(d, ['run', '--rm', '--name', 'n'.repeat(300), IMAGE, 'true']);
    assert.equal(long.code, 2);
    assert.match(long.stderr, /invalid --name: too long \(300 > 209 characters/);
    assert.equal((await d.client.listPodSandbox()).length, 0, 'failed runs leave no pods');
  });

  it('policy check explains a decision without running the pod: the built-in policy refuses, the test daemon\'s permissive one allows', async () => {
    const pod = join(dir, 'pod.yaml');
    await writeFile(pod, 'apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: tenant}\nspec:\n  runtimeClassName: runc\n  containers: [{name: c, image: busybox, securityContext: {privileged: true}}]\n');
    // A config path with no file means the built-in policy: everything untrusted.
    const r = await bulkhead(d, ['--config', join(dir, 'no-config.toml'), 'policy', 'check', pod]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /DENIED \(rule untrusted\/privileged\)/);
    assert.match(r.stdout, /moved to a stronger one/);
    const permissive = await bulkhead(d, ['policy', 'check', pod]);
    assert.equal(permissive.code, 0, permissive.stdout + permissive.stderr);
  });
});
