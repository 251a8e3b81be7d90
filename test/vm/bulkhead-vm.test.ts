// bulkhead-vm driven directly, like conmon drives runc: real QEMU microVMs (TCG here), a busybox-static
// rootfs. Boots are few (2 shared cores): one pod VM carries most cases, a second is killed on purpose.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { DEFAULT_CAPABILITIES } from '../../src/runtime/capabilities.ts';
import { defaultSeccompProfile } from '../../src/runtime/seccomp.ts';
import { capMask } from '../../src/vm/spec.ts';
import { loadGuestAssets } from '../../src/vm/assets.ts';
import { classifyRuntimeFailure } from '../../src/runtime/errors.ts';
import { pidsNaming } from '../../src/vm/procs.ts';
import { processTree, vmmHierarchies } from '../../src/vm/vm-cgroup.ts';
import { isCgroupFs } from '../../src/cgroup/mounts.ts';
import { alive, ASSETS, BULKHEAD_VM, createWithPipes, makeBundle, makeRootfs, skipReason, tempDir, vm, waitFor, assertExit } from '../../harness/vm-assets.ts';

// The per-pod supervisor (`--supervisor pod`: a `_vmd` per pod, recorded as vmd.proc), whose own
// process these cases follow; the node-wide one (the default) is test/vm/node-supervisor.test.ts's.
process.env.BULKHEAD_VM_SUPERVISOR = 'pod';

const skip = skipReason();
const SB = { 'io.kubernetes.cri.container-type': 'sandbox' };
const member = (sandbox: string): Record<string, string> => ({ 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': sandbox });

interface State { status: string; pid: number; annotations: Record<string, string> }
async function state(root: string, id: string): Promise<State> {
  const r = await vm(root, ['state', id]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as State;
}

describe('bulkhead-vm: one pod VM', { skip, timeout: 900_000 }, () => {
  let dir: string;
  let root: string;
  let rootfs: string;
  const sbId = `sb-${process.pid}`;
  let guestKernel = '';
  let sandboxOut: () => string = () => '';
  let sandboxIn: { close(): void } | undefined;

  before(() => {
    dir = tempDir('bulkhead-vm-test-');
    root = join(dir, 'state');
    rootfs = makeRootfs(dir);
  });
  after(async () => {
    for (const id of [`c2-${process.pid}`, `c3-${process.pid}`, `c4-${process.pid}`, `c5-${process.pid}`, `c6-${process.pid}`, `c7-${process.pid}`, `c8-${process.pid}`, sbId]) await vm(root, ['delete', '--force', id]).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs the sandbox container in its own kernel, with stdin', async () => {
    const b = makeBundle(dir, 'sb', { rootfs, annotations: SB, resources: { cpu: { quota: 50000, period: 100000 } }, args: ['sh', '-c', 'uname -r; read x; echo "got:$x"; hostname; exec sleep 1000'] });
    const c = await createWithPipes(root, sbId, b);
    assert.equal(c.code, 0, c.err());
    sandboxOut = c.out;
    sandboxIn = c.stdin;
    const pid = Number(readFileSync(c.pidFile, 'utf8'));
    assert.ok(alive(pid), 'the supervisor pid in --pid-file is alive');
    // the container's supervisor is the small C shim, not a Node.js process: well under a MiB of its own
    assert.equal(readlinkSync(`/proc/${pid}/exe`), join(ASSETS, 'vm/bin/bulkhead-vm-shim'));
    const pss = Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1]);
    assert.ok(pss > 0 && pss < 1024, `shim PSS ${pss} KiB`);
    assert.ok(!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(join(root, 'pods')), 'the pod dir is not on the shim\'s command line (pod-process sweeps leave it alone)');
    assert.equal((await state(root, sbId)).status, 'created');
    const s = await vm(root, ['start', sbId]);
    assert.equal(s.code, 0, s.stderr);
    assert.equal((await state(root, sbId)).status, 'running');
    await waitFor(() => c.out().includes('\n'), 'uname output');
    guestKernel = c.out().split('\n')[0]!;
    assert.match(guestKernel, /cloud-amd64$/);
    assert.notEqual(guestKernel, release(), 'the guest kernel is not the host kernel');
    c.stdin.write('hello\n');
    await waitFor(() => c.out().includes('got:hello'), 'stdin echo');
    await waitFor(() => c.out().includes('sb\n'), 'hostname from the spec');
  });

  it('places the whole pod VM (QEMU, virtiofsd and its namespaced child) in the real cgroup hierarchies with the pod\'s CPU limit (never in a plain directory)', () => {
    const pods = join(root, 'pods');
    const podDir = join(pods, readdirSync(pods)[0]!);
    const vmmPid = Number(readFileSync(join(podDir, 'vmm.pid'), 'utf8'));
    const fsdPid = (JSON.parse(readFileSync(join(podDir, 'fsd.proc'), 'utf8')) as { pid: number }).pid;
    const fsd = processTree(fsdPid);
    assert.ok(fsd.length >= 2, `virtiofsd runs with its sandboxed child: ${fsd.join(' ')}`);
    const rel = `bulkhead-vm/${sbId}`;
    const hier = vmmHierarchies();
    assert.ok(hier.some((h) => h.controllers.includes('cpu')), 'a cpu hierarchy is mounted');
    for (const pid of [vmmPid, ...fsd]) {
      const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n');
      for (const h of hier) {
        const line = h.version === 2 ? lines.find((l) => l.startsWith('0::')) : lines.find((l) => l.split(':')[1]!.split(',').some((c) => h.controllers.includes(c)));
        assert.ok(line?.endsWith(`/${rel}`), `pid ${pid} ${h.path}: ${line} in ${lines.join(' | ')}`);
        assert.ok(isCgroupFs(join(h.path, rel)), `${join(h.path, rel)} is a cgroup`);
      }
    }
    // the supervisor and the containers' shims are not the VM: they stay out (an OOM kill in the pod never takes its cleaner)
    const vmdPid = (JSON.parse(readFileSync(join(podDir, 'vmd.proc'), 'utf8')) as { pid: number }).pid;
    assert.ok(!readFileSync(`/proc/${vmdPid}/cgroup`, 'utf8').includes(`/${rel}\n`), 'the supervisor is not in the pod VM\'s cgroup');
    const cpu = hier.find((h) => h.controllers.includes('cpu'))!;
    assert.equal(readFileSync(join(cpu.path, rel, 'cpu.cfs_quota_us'), 'utf8').trim(), '50000');
    assert.equal(readFileSync(join(cpu.path, rel, 'cpu.cfs_period_us'), 'utf8').trim(), '100000');
    if (!hier.some((h) => h.path === '/sys/fs/cgroup/cpu,cpuacct')) {
      assert.ok(!existsSync(join('/sys/fs/cgroup/cpu,cpuacct', rel)), 'nothing made in the tmpfs directory that is not a cgroup');
    }
  });

  it('execs into the running VM with exit codes, env and TTY', async () => {
    const r = await vm(root, ['exec', sbId, 'sh', '-c', 'echo $((6*7)) $FOO; uname -r; exit 3', '--', '-e', 'x']);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stdout, /^42 *\n/);
    assert.ok(r.stdout.includes(guestKernel));
    const withEnv = await vm(root, ['exec', '--env', 'FOO=bar', sbId, 'sh', '-c', 'echo $FOO']);
    assert.equal(withEnv.code, 0, withEnv.stderr);
    assert.equal(withEnv.stdout.trim(), 'bar');
    const missing = await vm(root, ['exec', sbId, 'no-such-binary']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stdout + missing.stderr, /not found/);
    const tty = await vm(root, ['exec', '--tty', sbId, 'sh', '-c', 'test -t 0 && tty']);
    assert.equal(tty.code, 0, tty.stderr);
    assert.match(tty.stdout, /\/dev\/pts\/\d+/);
    const stdin = await vm(root, ['exec', sbId, 'sh', '-c', 'cat | wc -c'], 'twelve bytes');
    assert.equal(stdin.stdout.trim(), '12');
  });

  it('runs a second container in the same VM, with its own root and memory limit', async () => {
    const id = `c2-${process.pid}`;
    const b = makeBundle(dir, 'c2', {
      rootfs, annotations: member(sbId), memoryLimit: 64 * 1024 * 1024,
      args: ['sh', '-c', 'uname -r; cat /sys/fs/cgroup/memory.max 2>/dev/null; touch /only-here; dd if=/dev/zero of=/dev/null bs=100M count=1 && echo survived; exit 9'],
    });
    const c = await createWithPipes(root, id, b);
    assert.equal(c.code, 0, c.err());
    assertExit(await vm(root, ['start', id]));
    await c.done;
    assert.ok(c.out().startsWith(guestKernel), c.out());
    assert.ok(!c.out().includes('survived'), `allocation beyond the 64 MiB limit was not killed: ${c.out()}`);
    const st = await state(root, id);
    assert.equal(st.status, 'stopped');
    assert.equal(st.annotations['io.bulkhead.vm.exit-code'], '9');
    assert.match(c.err(), /Killed|out of memory/i, 'dd was OOM-killed inside the guest');
    // the file it wrote lives in its own writable layer, not in the sandbox's
    const look = await vm(root, ['exec', sbId, 'sh', '-c', 'test -e /only-here && echo leaked || echo isolated']);
    assert.equal(look.stdout.trim(), 'isolated');
    assertExit(await vm(root, ['delete', id]));
    assert.ok(!existsSync(join(root, id)));
  });

  it('an app container gets the runtime\'s /etc files over the image\'s /etc, which keeps its other files, mode and owner; /tmp is 1777 with the image\'s owner', async () => {
    // the agent writes them in the overlay's upper layer before mounting it (upper_dir in agent.c): what a copy-up through the overlay gave
    const id = `c7-${process.pid}`;
    const own = join(dir, 'c7-rootfs');
    cpSync(rootfs, own, { recursive: true, verbatimSymlinks: true });
    writeFileSync(join(own, 'etc/hosts'), 'image-hosts\n');
    writeFileSync(join(own, 'etc/image-only'), 'kept\n');
    chownSync(join(own, 'etc'), 7, 8); chmodSync(join(own, 'etc'), 0o750);
    chownSync(join(own, 'tmp'), 5, 6); chmodSync(join(own, 'tmp'), 0o700);
    const b = makeBundle(dir, 'c7', { rootfs: own, annotations: member(sbId), args: ['sh', '-c', 'cat /etc/hosts /etc/resolv.conf /etc/hostname /etc/image-only; /bin/busybox stat -c "%a %u:%g" /etc /tmp'] });
    const files = join(dir, 'c7-files');
    mkdirSync(files);
    writeFileSync(join(files, 'hosts'), '10.9.8.7 c7-pod\n');
    writeFileSync(join(files, 'resolv.conf'), 'nameserver 10.9.8.1\n');
    writeFileSync(join(files, 'hostname'), 'c7-pod');
    const spec = JSON.parse(readFileSync(join(b, 'config.json'), 'utf8')) as Record<string, unknown>;
    spec.mounts = ['hosts', 'resolv.conf', 'hostname'].map((f) => ({ destination: `/etc/${f}`, type: 'bind', source: join(files, f), options: ['rbind', 'ro'] }));
    writeFileSync(join(b, 'config.json'), JSON.stringify(spec));
    const c = await createWithPipes(root, id, b);
    assert.equal(c.code, 0, c.err());
    assertExit(await vm(root, ['start', id]));
    await c.done;
    assert.equal(c.out(), '10.9.8.7 c7-pod\nnameserver 10.9.8.1\nc7-pod\nkept\n750 7:8\n1777 5:6\n', c.err());
    // the image's owners and modes came through its root image: erofs with assets whose initramfs loads it (rootfs-image.ts)
    const image = (JSON.parse(readFileSync(join(root, id, 'create.json'), 'utf8')) as { image: string }).image;
    assert.match(image, (await loadGuestAssets(ASSETS)).rootFormat === 'erofs' ? /\.erofs$/ : /\.ext4$/);
    assertExit(await vm(root, ['delete', id]));
  });

  it('an image whose /etc and /tmp are absolute symlinks (to /run, which the guest has too) gets the runtime\'s files and the 1777 /tmp in its own tree, not in the guest\'s', async () => {
    const id = `c8-${process.pid}`;
    const own = join(dir, 'c8-rootfs');
    cpSync(rootfs, own, { recursive: true, verbatimSymlinks: true });
    rmSync(join(own, 'etc'), { recursive: true, force: true });
    rmSync(join(own, 'tmp'), { recursive: true, force: true });
    mkdirSync(join(own, 'run/t'), { recursive: true });
    chmodSync(join(own, 'run/t'), 0o700);
    symlinkSync('/run', join(own, 'etc'));
    symlinkSync('/run/t', join(own, 'tmp'));
    const b = makeBundle(dir, 'c8', { rootfs: own, annotations: member(sbId), args: ['sh', '-c', 'cat /run/hosts /run/hostname; /bin/busybox stat -c "%a" /run/t'] });
    const files = join(dir, 'c8-files');
    mkdirSync(files);
    writeFileSync(join(files, 'hosts'), '10.9.8.6 c8-pod\n');
    writeFileSync(join(files, 'hostname'), 'c8-pod');
    const spec = JSON.parse(readFileSync(join(b, 'config.json'), 'utf8')) as Record<string, unknown>;
    spec.mounts = ['hosts', 'hostname'].map((f) => ({ destination: `/etc/${f}`, type: 'bind', source: join(files, f), options: ['rbind', 'ro'] }));
    writeFileSync(join(b, 'config.json'), JSON.stringify(spec));
    const c = await createWithPipes(root, id, b);
    assert.equal(c.code, 0, c.err());
    assertExit(await vm(root, ['start', id]));
    await c.done;
    // followed from the guest's root, the files went to the guest's /run and /tmp's mode to the guest's /run/t (absent)
    assert.equal(c.out(), '10.9.8.6 c8-pod\nc8-pod\n1777\n', c.err());
    assertExit(await vm(root, ['delete', id]));
  });

  it('a command that is not in the image: start fails with InvalidArgument BH_COMMAND_NOT_FOUND, carried from the agent to the daemon', async () => {
    const id = `c6-${process.pid}`;
    const b = makeBundle(dir, 'c6', { rootfs, annotations: member(sbId), args: ['nosuchcmd-bh'] });
    const c = await createWithPipes(root, id, b);
    assert.equal(c.code, 0, c.err());
    // --log-format json, as the microvm backend runs it: the error line carries {code, reason, message}
    const s = await vm(root, ['--log-format', 'json', 'start', id]);
    assert.equal(s.code, 1, s.stderr);
    const e = classifyRuntimeFailure({ what: 'bulkhead-vm start', stderr: s.stderr, code: s.code });
    assert.deepEqual([e.code, e.reason], ['InvalidArgument', 'BH_COMMAND_NOT_FOUND'], s.stderr);
    assert.match(e.message, /nosuchcmd-bh: executable file not found in \$PATH — .*fix the command\/args of the pod spec/);
    assertExit(await vm(root, ['exec', sbId, 'true']), 0, 'the pod VM still serves');
    assertExit(await vm(root, ['delete', '--force', id]));
  });

  it('delivers signals and reports the exit code', async () => {
    const id = `c3-${process.pid}`;
    // PID 1 of its namespace: only signals it handles reach it (as under runc)
    const b = makeBundle(dir, 'c3', { rootfs, annotations: member(sbId), args: ['sh', '-c', 'trap "exit 143" TERM; echo trapped; while :; do sleep 1; done'] });
    const c = await createWithPipes(root, id, b);
    assert.equal(c.code, 0, c.err());
    assertExit(await vm(root, ['start', id]));
    // a TERM sent before the shell has its trap is dropped (PID 1 without a handler): wait for it
    await waitFor(() => c.out().includes('trapped'), 'the shell\'s trap');
    const k = await vm(root, ['kill', id, 'TERM']);
    assert.equal(k.code, 0, k.stderr);
    await c.done;
    const st = await state(root, id);
    assert.equal(st.status, 'stopped');
    assert.equal(st.annotations['io.bulkhead.vm.exit-code'], String(128 + 15));
    const again = await vm(root, ['kill', id, 'KILL']);
    assertExit(again, 'failed', 'kill of a stopped container fails');
    assertExit(await vm(root, ['delete', id]));
  });

  it('isolates each container inside the guest: own PID namespace, its capabilities, no_new_privs and seccomp profile', async () => {
    const id = `c5-${process.pid}`;
    const caps = [...DEFAULT_CAPABILITIES, 'CAP_SYS_ADMIN'];
    // With CAP_SYS_ADMIN only seccomp stands between the process and unshare(2)/mount(2).
    // `echo /proc/[0-9]*` lists the visible processes without starting one.
    const probe = 'echo procs: /proc/[0-9]*; echo pid=$$; grep -E "^(CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):" /proc/self/status; '
      + 'unshare -n true && echo unshare-ok || echo unshare-denied; mount -t tmpfs x /tmp && echo mount-ok || echo mount-denied; exec sleep 1000';
    const b = makeBundle(dir, 'c5', {
      rootfs, annotations: member(sbId), args: ['sh', '-c', probe],
      process: { noNewPrivileges: true, capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] } },
      seccomp: defaultSeccompProfile(),
    });
    const c = await createWithPipes(root, id, b);
    assert.equal(c.code, 0, c.err());
    assertExit(await vm(root, ['start', id]));
    await waitFor(() => /mount-(ok|denied)/.test(c.out()), 'the probe output');
    const out = c.out();
    assert.match(out, /^procs: \/proc\/1$/m, `the container sees only its own process: ${out}`);
    assert.match(out, /^pid=1$/m, 'its process is PID 1 of its namespace');
    const mask = capMask(caps).toString(16).padStart(16, '0');
    assert.match(out, new RegExp(`^CapEff:\\s*${mask}$`, 'm'), out);
    assert.match(out, new RegExp(`^CapBnd:\\s*${mask}$`, 'm'), out);
    assert.match(out, /^NoNewPrivs:\s*1$/m);
    assert.match(out, /^Seccomp:\s*2$/m);
    assert.match(out, /unshare-denied/);
    assert.match(out, /mount-denied/);
    assert.match(c.err(), /not permitted/i, c.err());
    // an exec'd process joins the container's PID namespace and gets its filter and capabilities
    const e = await vm(root, ['exec', id, 'sh', '-c', 'echo procs: /proc/[0-9]*; grep -E "^(Seccomp|NoNewPrivs):" /proc/self/status; unshare -n true && echo unshare-ok || echo unshare-denied']);
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /^procs: \/proc\/1 \/proc\/\d+$/m, e.stdout);
    assert.match(e.stdout, /^Seccomp:\s*2$/m);
    assert.match(e.stdout, /^NoNewPrivs:\s*1$/m);
    assert.match(e.stdout, /unshare-denied/);
    // control: the sandbox container (no profile, all capabilities) may unshare, so the denial above is the filter's;
    // and it sees its own tree only, not c5's
    const free = await vm(root, ['exec', sbId, 'sh', '-c', 'grep "^Seccomp:" /proc/self/status; echo procs: /proc/[0-9]*; unshare -n true && echo unshare-ok']);
    assert.match(free.stdout, /^Seccomp:\s*0$/m);
    assert.match(free.stdout, /unshare-ok/);
    assert.match(free.stdout, /^procs: \/proc\/1 \/proc\/\d+$/m, free.stdout);
    assertExit(await vm(root, ['delete', '--force', id]));
  });

  it('exits with the code of the process', async () => {
    const id = `c4-${process.pid}`;
    const b = makeBundle(dir, 'c4', { rootfs, annotations: member(sbId), args: ['sh', '-c', 'echo out; echo err >&2; exit 7'] });
    const c = await createWithPipes(root, id, b);
    assert.equal(c.code, 0, c.err());
    const pid = Number(readFileSync(c.pidFile, 'utf8'));
    assertExit(await vm(root, ['start', id]));
    await c.done;
    assert.equal(c.out(), 'out\n');
    assert.equal(c.err(), 'err\n');
    await waitFor(() => !alive(pid), 'supervisor exit');
    assert.equal((await state(root, id)).annotations['io.bulkhead.vm.exit-code'], '7');
    assertExit(await vm(root, ['delete', id]));
  });

  it('refuses to delete a running sandbox without --force; --force ends a wedged supervisor and its VM within seconds', async () => {
    const r = await vm(root, ['delete', sbId]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /running/);
    const pods = join(root, 'pods');
    const podDir = join(pods, readdirSync(pods)[0]!);
    const vmmPid = Number(readFileSync(join(podDir, 'vmm.pid'), 'utf8'));
    const vmdPid = (JSON.parse(readFileSync(join(podDir, 'vmd.proc'), 'utf8')) as { pid: number }).pid;
    assert.ok(alive(vmmPid));
    assert.ok(alive(vmdPid));
    // the supervisor still holds its socket (connections are accepted by the kernel) but never answers
    process.kill(vmdPid, 'SIGSTOP');
    const t0 = Date.now();
    const d = await vm(root, ['delete', '--force', sbId]);
    const took = Date.now() - t0;
    assert.equal(d.code, 0, d.stderr);
    assert.ok(took < 10_000, `delete --force took ${took} ms with a wedged supervisor`);
    await waitFor(() => !alive(vmmPid) && !alive(vmdPid), 'VMM and supervisor exit', 5000);
    assert.ok(!existsSync(podDir), 'pod directory (slot files) removed');
    assert.ok(!existsSync(join(root, sbId)));
    assert.deepEqual(pidsNaming(podDir), [], 'no process names the pod directory');
    for (const h of vmmHierarchies()) assert.ok(!existsSync(join(h.path, `bulkhead-vm/${sbId}`)), `cgroup removed in ${h.path}`);
    assert.ok(sandboxOut().includes('got:hello'));
    sandboxIn?.close();
  });
});

describe('bulkhead-vm: an abandoned start', { skip, timeout: 300_000 }, () => {
  it('ends the supervisor and the VMM and removes the slot files when create is killed mid-boot (a caller\'s timeout, a daemon killed mid-start)', async () => {
    const dir = tempDir('bulkhead-vm-abandon-');
    const root = join(dir, 'state');
    const id = `ab-${process.pid}`;
    try {
      const b = makeBundle(dir, 'ab', { rootfs: makeRootfs(dir), annotations: SB, args: ['sleep', '1000'] });
      const pods = join(root, 'pods');
      const created = createWithPipes(root, id, b);
      // wait until the VMM is started (recorded in the pod directory), then kill the creator
      let podDir = '';
      await waitFor(() => {
        const names = existsSync(pods) ? readdirSync(pods) : [];
        podDir = names[0] ? join(pods, names[0]) : '';
        return podDir !== '' && existsSync(join(podDir, 'vmm.proc')) && existsSync(join(podDir, 'vmd.proc'));
      }, 'the VMM to start', 60_000);
      const vmm = JSON.parse(readFileSync(join(podDir, 'vmm.proc'), 'utf8')) as { pid: number; start: string };
      const vmd = JSON.parse(readFileSync(join(podDir, 'vmd.proc'), 'utf8')) as { pid: number; start: string };
      assert.ok(vmm.start !== '' && vmd.start !== '', 'pid and start time recorded');
      assert.ok(existsSync(join(podDir, 'slot0.img')));
      const pgrep = spawnSync('pgrep', ['-f', '--', `create --bundle ${b} `], { encoding: 'utf8' });
      const creators = pgrep.stdout.trim().split('\n').filter(Boolean);
      assert.equal(creators.length, 1, `the create process: ${pgrep.stdout}`);
      process.kill(Number(creators[0]), 'SIGKILL');
      const c = await created;
      assert.notEqual(c.code, 0, 'create was killed');
      await waitFor(() => !alive(vmm.pid) && !alive(vmd.pid), 'the VMM and supervisor to end', 15_000);
      await waitFor(() => !existsSync(podDir), 'the pod directory with its 16 GiB sparse slot files to go', 10_000);
      assert.deepEqual(pidsNaming(podDir), []);
      // the daemon's orphan sweep then deletes the half-created container: quick, nothing left
      const t0 = Date.now();
      const d = await vm(root, ['delete', '--force', id]);
      assert.equal(d.code, 0, d.stderr);
      assert.ok(Date.now() - t0 < 10_000);
      assert.ok(!existsSync(join(root, id)));
      assert.equal(spawnSync('pgrep', ['-f', root], { encoding: 'utf8' }).stdout.trim(), '', 'no process names the state root');
    } finally {
      await vm(root, ['delete', '--force', id]).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('bulkhead-vm: a killed VMM', { skip, timeout: 600_000 }, () => {
  it('reports the container as stopped with the reason', async () => {
    const dir = tempDir('bulkhead-vm-kill-');
    const root = join(dir, 'state');
    const id = `k-${process.pid}`;
    try {
      const b = makeBundle(dir, 'k', { rootfs: makeRootfs(dir), args: ['sleep', '1000'] });
      const c = await createWithPipes(root, id, b);
      assert.equal(c.code, 0, c.err());
      assertExit(await vm(root, ['start', id]));
      const pods = join(root, 'pods');
      const podDir = join(pods, (await import('node:fs')).readdirSync(pods)[0]!);
      const vmmPid = Number(readFileSync(join(podDir, 'vmm.pid'), 'utf8'));
      process.kill(vmmPid, 'SIGKILL');
      await c.done;
      const st = await state(root, id);
      assert.equal(st.status, 'stopped');
      assert.equal(st.annotations['io.bulkhead.vm.exit-code'], '255');
      assert.match(st.annotations['io.bulkhead.vm.exit-reason'] ?? '', /killed by SIGKILL/);
      assert.match(c.err(), /killed by SIGKILL/);
      assertExit(await vm(root, ['delete', id]));
      assert.ok(!existsSync(podDir));
    } finally {
      await vm(root, ['delete', '--force', id]).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Mount points at or under `dir` (mountinfo's field 5, octal escapes undone), deepest first. */
function mountsUnder(dir: string): string[] {
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => unescape(l.split(' ')[4] ?? ''))
    .filter((mp) => mp === dir || mp.startsWith(`${dir}/`)).sort((a, b) => b.length - a.length);
}

/** The last `n` lines of a file, or '' (a diagnostic never fails the report). */
function tail(path: string, n: number): string {
  try { return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-n).join('\n'); } catch { return ''; }
}

/**
 * What a failed podman run leaves to look at: the processes still naming the test dir (podman, conmon,
 * the shim, a supervisor, QEMU), each pod VM's supervisor log, console and exit record.
 */
function podmanDiagnostics(dir: string): string {
  const out: string[] = [];
  const procs = pidsNaming(dir).map((p) => { try { return `${p} ${readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ').slice(0, 300)}`; } catch { return ''; } }).filter(Boolean);
  out.push(`processes naming the test dir:\n  ${procs.join('\n  ') || '(none)'}`);
  const pods = join(dir, 'vmstate', 'pods');
  for (const pod of existsSync(pods) ? readdirSync(pods) : []) {
    for (const f of ['vmd.log', 'console.log', 'exit.json']) {
      const t = tail(join(pods, pod, f), 25);
      if (t) out.push(`${pod.slice(0, 12)}/${f}:\n  ${t.split('\n').join('\n  ')}`);
    }
  }
  return out.join('\n');
}

/**
 * Ends what a killed podman run left (conmon, the container's shim, the pod VM's supervisor and QEMU:
 * every process naming the test dir) and unmounts what is left under it (podman's shm, lazily when
 * busy), so the dir can go; what could not be undone is returned, never thrown.
 */
async function endPodmanLeftovers(dir: string): Promise<string[]> {
  const problems: string[] = [];
  for (let i = 0; i < 3; i++) {
    const pids = pidsNaming(dir);
    if (!pids.length) break;
    for (const p of pids) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
    await new Promise((r) => setTimeout(r, 200));
  }
  for (const mp of mountsUnder(dir)) {
    if (spawnSync('umount', [mp]).status !== 0 && spawnSync('umount', ['-l', mp]).status !== 0) problems.push(`cannot unmount ${mp}`);
  }
  try { rmSync(dir, { recursive: true, force: true }); } catch (e) { problems.push(`cannot remove ${dir}: ${(e as Error).message}`); }
  return problems;
}

/** How long one `podman run` of the case below may take (a cold pod VM boot under TCG, on a loaded host). */
const PODMAN_RUN_MS = 240_000;

describe('podman with bulkhead-vm as its runtime', { skip: skip ?? (spawnSync('podman', ['--version']).status !== 0 ? 'podman is not installed' : undefined), timeout: 600_000 }, () => {
  it('runs `uname -r` in a microVM', async () => {
    const dir = tempDir('bulkhead-vm-podman-');
    // A failed run reports itself (which run, podman's exit or signal, its output, what the VM side
    // logged); the cleanup after it (processes, podman's mounts, the dir) never replaces that failure.
    const podman = (which: string, opts: string[], cmd: string[], status: number): SpawnSyncReturns<string> => {
      const r = spawnSync('podman', [
        '--root', join(dir, 'storage'), '--runroot', join(dir, 'run'), '--cgroup-manager', 'cgroupfs', '--events-backend', 'file',
        '--runtime', BULKHEAD_VM, '--runtime-flag', `assets=${ASSETS}`, '--runtime-flag', `root=${join(dir, 'vmstate')}`,
        'run', '--rm', '--network', 'none', ...opts, '--rootfs', rootfs, ...cmd,
      ], { encoding: 'utf8', timeout: PODMAN_RUN_MS, killSignal: 'SIGKILL' });
      if (r.status !== status) {
        const how = r.error ? `${r.error.message} (podman killed after ${PODMAN_RUN_MS} ms)` : r.signal ? `podman killed by ${r.signal}` : `podman exited ${r.status}`;
        assert.fail(`${which}: ${how}, expected exit ${status}\nstderr: ${r.stderr?.slice(-3000) ?? ''}\nstdout: ${r.stdout?.slice(-1000) ?? ''}\n${podmanDiagnostics(dir)}`);
      }
      return r;
    };
    let rootfs = '';
    let failure: unknown;
    try {
      rootfs = makeRootfs(dir);
      const r = podman('podman run uname -r', [], ['uname', '-r'], 0);
      assert.match(r.stdout.trim(), /cloud-amd64$/);
      assert.notEqual(r.stdout.trim(), release());
      // with -t podman hands conmon a console socket; bulkhead-vm passes it a pty (SCM_RIGHTS)
      const t = podman('podman run -t', ['-t'], ['sh', '-c', 'test -t 0 && tty; exit 4'], 4);
      assert.match(t.stdout, /\/dev\/pts\/\d+/);
      // podman's cleanup deletes without the runtime flags: the VMs must still be stopped (QEMU and a
      // pod's supervisor name its pod dir; the node-wide supervisor, naming only the root, leaves
      // on its own once idle, and the cleanup below ends it if it has not yet)
      await waitFor(() => spawnSync('pgrep', ['-f', join(dir, 'vmstate', 'pods')], { encoding: 'utf8' }).stdout.trim() === '', 'the pod VMs to stop', 60_000);
    } catch (e) {
      failure = e;
    }
    const problems = await endPodmanLeftovers(dir);
    if (failure) throw failure;
    assert.deepEqual(problems, [], 'the test dir is cleaned up');
  });
});

describe('bulkhead-vm: clear errors', { skip, timeout: 300_000 }, () => {
  it('names the setup command when the guest kernel is missing', async () => {
    const dir = tempDir('bulkhead-vm-nokernel-');
    try {
      const b = makeBundle(dir, 'x', { rootfs: makeRootfs(dir), args: ['true'] });
      const r = await new Promise<{ code: number | null; stderr: string }>((res) => {
        const p = spawnSync(BULKHEAD_VM, ['--root', join(dir, 'state'), '--assets', join(dir, 'empty'), 'create', '--bundle', b, 'x1'], { encoding: 'utf8' });
        res({ code: p.status, stderr: p.stderr });
      });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no guest kernel .* run `bin\/bulkhead-vm --assets .* setup`/);
      assert.ok(!existsSync(join(dir, 'state', 'x1')), 'nothing left behind');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the setup command when the container shim is missing (an install from before the C shim)', async () => {
    const dir = tempDir('bulkhead-vm-noshim-');
    try {
      // the assets as setup leaves them, without bin/bulkhead-vm-shim
      mkdirSync(join(dir, 'a/vm/bin'), { recursive: true });
      symlinkSync(join(ASSETS, 'vm/kernel'), join(dir, 'a/vm/kernel'));
      for (const f of ['initramfs.cpio', 'bin/bulkhead-agent', 'bin/bulkhead-vm-console']) symlinkSync(join(ASSETS, 'vm', f), join(dir, 'a/vm', f));
      const b = makeBundle(dir, 'x', { rootfs: makeRootfs(dir), args: ['true'] });
      const p = spawnSync(BULKHEAD_VM, ['--root', join(dir, 'state'), '--assets', join(dir, 'a'), 'create', '--bundle', b, 'x1'], { encoding: 'utf8' });
      assert.equal(p.status, 1);
      assert.match(p.stderr, /bulkhead-vm-shim is missing; run `bin\/bulkhead-vm --assets .* setup`/);
      assert.ok(!existsSync(join(dir, 'state', 'x1')), 'nothing left behind');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a guest that does not answer within the boot timeout, and cleans up', async () => {
    const dir = tempDir('bulkhead-vm-timeout-');
    const root = join(dir, 'state');
    try {
      const b = makeBundle(dir, 'x', { rootfs: makeRootfs(dir), args: ['true'] });
      const r = spawnSync(BULKHEAD_VM, ['--root', root, '--assets', ASSETS, '--boot-timeout', '300', 'create', '--bundle', b, 'x2'], { encoding: 'utf8', timeout: 120_000 });
      assert.equal(r.status, 1);
      assert.match(r.stderr, /did not answer within 300 ms/);
      assert.match(r.stderr, /console/);
      assert.ok(!existsSync(join(root, 'x2')));
      const pods = join(root, 'pods');
      assert.deepEqual(existsSync(pods) ? (await import('node:fs')).readdirSync(pods) : [], [], 'no pod VM left');
      const q = spawnSync('pgrep', ['-f', `bulkhead-vm-x2`], { encoding: 'utf8' });
      assert.equal(q.stdout.trim(), '', 'no VMM process left');
      assert.equal(spawnSync('pgrep', ['-f', root], { encoding: 'utf8' }).stdout.trim(), '', 'no supervisor or VMM names the state root');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
