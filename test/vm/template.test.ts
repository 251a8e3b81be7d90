// VM templates (src/vm/template.ts): bulkhead-vm driven like conmon drives it, real QEMU (TCG here).
// A pod that says it binds no volumes starts as a clone of a template built once; clones are unique
// (entropy), run containers and execs; a changed input rebuilds the template and removes the old
// one; a pod that may bind volumes boots (with its virtio-fs share), and a clone refuses a volume.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ASSETS, createWithPipes, makeBundle, makeRootfs, skipReason, tempDir, vm, waitFor, assertExit } from '../../harness/vm-assets.ts';
import { pidsNaming, readProc } from '../../src/vm/procs.ts';
import { podDir } from '../../src/vm/state.ts';
import { CLONE_TB_MIB } from '../../src/vm/vmd.ts';
import { TEMPLATE_CGROUPS } from '../../src/vm/template.ts';
import { vmmHierarchies } from '../../src/vm/vm-cgroup.ts';
import { makeCgroup } from '../../src/cgroup/tree.ts';

const skip = skipReason();
const NO_VOLUMES = { 'io.kubernetes.cri.container-type': 'sandbox', 'io.bulkhead.vm.volumes': 'none', 'io.bulkhead.vm.trust-level': 'untrusted' };
const member = (sandbox: string): Record<string, string> => ({ 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': sandbox });

describe('microVM templates', { skip, timeout: 900_000 }, () => {
  let dir: string;
  let root: string;
  let assets: string;
  let rootfs: string;
  const started: string[] = [];

  /** bulkhead-vm with this file's private assets (a copy whose initramfs the test may touch). */
  const bvm = (args: string[]): ReturnType<typeof vm> => vm(root, ['--assets', assets, ...args]);
  const templates = (): string[] => (existsSync(join(root, 'templates')) ? readdirSync(join(root, 'templates')).filter((n) => /^[0-9a-f]{32}$/.test(n)) : []);
  const vmdLog = (id: string): string => readFileSync(join(podDir(root, id), 'vmd.log'), 'utf8');

  async function sandbox(id: string, annotations: Record<string, string> = NO_VOLUMES, memoryLimit?: number): Promise<number> {
    const b = makeBundle(dir, id, { rootfs, annotations, args: ['sleep', '1000'], ...(memoryLimit ? { memoryLimit } : {}) });
    const t0 = Date.now();
    const c = await createWithPipes(root, id, b, assets);
    assert.equal(c.code, 0, c.err());
    const ms = Date.now() - t0;
    started.push(id);
    assertExit(await bvm(['start', id]));
    return ms;
  }

  before(() => {
    dir = tempDir('bulkhead-vm-tpl-');
    root = join(dir, 'state');
    rootfs = makeRootfs(dir);
    // private assets: the kernel linked, the rest copied (the rebuild test changes the initramfs)
    assets = join(dir, 'assets');
    mkdirSync(join(assets, 'vm'), { recursive: true });
    symlinkSync(join(ASSETS, 'vm/kernel'), join(assets, 'vm/kernel'));
    for (const f of ['initramfs.cpio', 'assets.json', 'accel.json', 'bin']) if (existsSync(join(ASSETS, 'vm', f))) cpSync(join(ASSETS, 'vm', f), join(assets, 'vm', f), { recursive: true });
    mkdirSync(join(assets, 'vm/images'));
  });
  after(async () => {
    for (const id of started.reverse()) await bvm(['delete', '--force', id]).catch(() => {});
    assert.equal(pidsNaming(join(root, 'pods')).length, 0, 'no VMM or supervisor left');
    rmSync(dir, { recursive: true, force: true });
  });

  it('two clones of one template (built once by two concurrent pods) are unique: their first random bytes differ; a clone runs a container and exec works', async () => {
    const a = `tpa-${process.pid}`;
    const b = `tpb-${process.pid}`;
    // two pods at once, no template yet: one builds it (under its lock), the other waits and clones it too
    await Promise.all([sandbox(a), sandbox(b)]);
    const builders = [a, b].filter((id) => /building VM template \w+ \(\d+ MiB, 1 vCPU/.test(vmdLog(id)));
    assert.equal(builders.length, 1, 'exactly one of two concurrent pods built the template (progress logged)');
    assert.equal(templates().length, 1, 'one template for both');
    const meta = JSON.parse(readFileSync(join(root, 'templates', templates()[0]!, 'meta.json'), 'utf8')) as { inputs: { scope: string } };
    assert.equal(meta.inputs.scope, 'level:untrusted', 'the template is keyed by the pod\'s trust level');
    for (const id of [a, b]) {
      assert.ok(existsSync(join(podDir(root, id), 'template.json')), `${id} is a clone`);
      assert.match(vmdLog(id), /guest up.*from="template /);
    }
    // the first read from each clone's random pool, right after the restore (the agent reseeded it with
    // host entropy); the supervisor records it when the identity is answered, which the VM's start does not wait for
    const first = (id: string): string | null => (JSON.parse(readFileSync(join(podDir(root, id), 'template.json'), 'utf8')) as { firstRandom: string | null }).firstRandom;
    for (const id of [a, b]) await waitFor(() => first(id) !== null, `${id}'s identity answered`);
    assert.match(first(a) ?? '', /^[0-9a-f]{64}$/);
    assert.notEqual(first(a), first(b), 'two clones of one template read different random bytes right after the restore');
    // and later reads
    const rnd = async (id: string): Promise<string> => {
      const r = await bvm(['exec', id, 'sh', '-c', 'head -c 32 /dev/urandom | od -An -tx1 | tr -d " \\n"']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^[0-9a-f]{64}$/);
      return r.stdout;
    };
    assert.notEqual(await rnd(a), await rnd(b), 'two clones of one template read different random bytes');
    // the clock is the host's, not the template's
    // (within 10 s of the host's clock read before and after the exec: how long the exec takes on
    // a loaded host does not count against it)
    const t0 = Math.floor(Date.now() / 1000);
    const date = await bvm(['exec', b, 'busybox', 'date', '+%s']);
    const t1 = Math.ceil(Date.now() / 1000);
    const guest = Number(date.stdout.trim());
    assert.ok(guest >= t0 - 10 && guest <= t1 + 10, `the clone's clock is set (${date.stdout.trim()}, host ${t0}..${t1})`);
    // a container in a clone, and an exec in it
    const cb = makeBundle(dir, 'c1', { rootfs, annotations: member(a), args: ['sh', '-c', 'echo hello-from-clone; sleep 1000'] });
    const c = await createWithPipes(root, `c1-${process.pid}`, cb, assets);
    assert.equal(c.code, 0, c.err());
    started.push(`c1-${process.pid}`);
    assertExit(await bvm(['start', `c1-${process.pid}`]));
    const e = await bvm(['exec', `c1-${process.pid}`, 'sh', '-c', 'echo exec-ok; hostname']);
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /^exec-ok\n/);
    await waitFor(() => c.out().includes('hello-from-clone'), 'the clone container\'s output', 60_000);
  });

  it('a clone\'s sandbox container is the one its template created and started (adopted, not created); the pod\'s hostname is set in its UTS namespace, which an app container shares, and its /etc/hostname is the pod\'s', async () => {
    const a = `tpa-${process.pid}`;
    const b = `tpb-${process.pid}`;
    const [t] = templates();
    const meta = JSON.parse(readFileSync(join(root, 'templates', t!, 'meta.json'), 'utf8')) as { sandbox?: { pid: number }; inputs: { sandbox?: string } };
    assert.match(meta.inputs.sandbox ?? '', /^[0-9a-f]{32}$/, 'the template key includes the sandbox request\'s hash');
    assert.ok(meta.sandbox && meta.sandbox.pid > 0, 'the template holds its sandbox container\'s process');
    for (const id of [a, b]) {
      assert.match(vmdLog(id), /sandbox container adopted from the template/, `${id}'s sandbox was adopted`);
      // the pod's own hostname (the bundle's: its id), though the template's sandbox was started without one
      const h = await bvm(['exec', id, 'sh', '-c', 'hostname; cat /etc/hostname']);
      assert.equal(h.code, 0, h.stderr);
      assert.equal(h.stdout, `${id}\n${id}\n`);
    }
    // an app container that shares the pod's UTS namespace (left out of its namespace list) has the pod's hostname
    const bundle = makeBundle(dir, 'uts', { rootfs, annotations: member(a), args: ['hostname'] });
    const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as { linux: Record<string, unknown>; hostname?: string };
    spec.linux.namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'mount' }];
    delete spec.hostname; // a container that shares the pod's UTS namespace has no name of its own
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
    const id = `uts-${process.pid}`;
    const c = await createWithPipes(root, id, bundle, assets);
    assert.equal(c.code, 0, c.err());
    started.push(id);
    assertExit(await bvm(['start', id]));
    for (let i = 0; i < 100 && !c.out().includes('\n'); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(c.out(), `${a}\n`);
  });

  it('a clone\'s QEMU holds no kernel image (no -kernel: its RAM has the booted kernel) and its translation buffer stays within CLONE_TB_MIB', async () => {
    // clone a ran a sandbox container, an app container and execs (the test above)
    const pid = (JSON.parse(readFileSync(join(podDir(root, `tpa-${process.pid}`), 'vmm.proc'), 'utf8')) as { pid: number }).pid;
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    // anonymous memory by mapping: the guest RAM (the template file), TCG's buffer (the one rwx mapping), the rest
    let guest = 0, tb = 0, rest = 0, kind = '';
    const guestFlags: string[] = [];
    for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
      const h = /^[0-9a-f]+-[0-9a-f]+ (\S{4}) \S+ \S+ \d+\s*(.*)$/.exec(line);
      if (h) { kind = h[2]!.endsWith('/memory') ? 'guest' : h[1]!.includes('x') && !h[2] ? 'tb' : 'rest'; continue; }
      if (kind === 'guest' && line.startsWith('VmFlags:')) guestFlags.push(...line.slice(8).trim().split(' '));
      const a = /^Anonymous:\s+(\d+) kB$/.exec(line);
      if (a) { const kb = Number(a[1]); if (kind === 'guest') guest += kb; else if (kind === 'tb') tb += kb; else rest += kb; }
    }
    assert.ok(guest > 0, 'the guest wrote some pages of its own (copy-on-write)');
    // a clone of a trust level's template: the host's KSM (where it runs) never merges its pages with another VM's (`mg`: MADV_MERGEABLE)
    assert.ok(guestFlags.length > 0 && !guestFlags.includes('mg'), `the guest RAM is not mergeable (VmFlags ${guestFlags.join(' ')})`);
    // under TCG QEMU runs without transparent huge pages (qemu.ts noThpPrefix): its translation buffer and ROMs in 4 KiB pages
    if (argv[argv.indexOf('-accel') + 1]!.startsWith('tcg')) assert.match(readFileSync(`/proc/${pid}/status`, 'utf8'), /^THP_enabled:\s+0$/m, 'THP off for the clone\'s QEMU');
    assert.ok(tb <= CLONE_TB_MIB * 1024 + 2048, `TCG buffer resident ${tb} KiB, at most ${CLONE_TB_MIB} MiB (+ its prologue)`);
    // measured ~19 MiB (heap, arenas, relocated binary and libraries); with the kernel image held ~33 MiB
    assert.ok(rest < 26 * 1024, `QEMU's own anonymous memory outside guest RAM and the TCG buffer is ${Math.round(rest / 1024)} MiB (< 26)`);
    assert.ok(!argv.includes('-kernel') && !argv.includes('-initrd'), 'a clone is started without the kernel and initramfs');
    assert.ok(argv.includes(`tcg,tb-size=${CLONE_TB_MIB}`) || !argv.includes('tcg'), `the clone's TCG buffer is ${CLONE_TB_MIB} MiB`);
  });

  it('a template whose input changed is rebuilt, and the old one removed (and a stale one of another size)', async () => {
    const [old] = templates();
    assert.ok(old);
    // another size: another template beside the first
    const small = `tps-${process.pid}`;
    await sandbox(small, NO_VOLUMES, 256 * 1048576);
    assert.equal(templates().length, 2, 'a template per size');
    const other = templates().find((t) => t !== old)!;
    // a new initramfs (same bytes, new identity: setup rewrote it)
    const f = join(assets, 'vm/initramfs.cpio');
    writeFileSync(f, readFileSync(f));
    utimesSync(f, new Date(), new Date(Date.now() + 5000));
    const id = `tpc-${process.pid}`;
    await sandbox(id);
    assert.match(vmdLog(id), /building VM template/);
    assert.match(vmdLog(id), new RegExp(`VM template ${old.slice(0, 12)} removed: its inputs changed`));
    assert.match(vmdLog(id), new RegExp(`VM template ${other.slice(0, 12)} removed: stale`));
    assert.deepEqual(templates().length, 1);
    assert.notEqual(templates()[0], old);
    assert.ok(existsSync(join(podDir(root, id), 'template.json')), 'the new pod is a clone of the new template');
    // the clone of the old template (its file unlinked) still runs
    const r = await bvm(['exec', `tpa-${process.pid}`, 'true']);
    assert.equal(r.code, 0, r.stderr);
  });

  it('a template QEMU refuses is removed and the pod boots instead (logged with the reason); the next pod builds it again', async () => {
    const [t] = templates();
    assert.ok(t);
    writeFileSync(join(root, 'templates', t, 'state'), 'QEVM\0\0\0\x03 not a saved state');
    const id = `tpx-${process.pid}`;
    await sandbox(id);
    assert.match(vmdLog(id), new RegExp(`VM template not used: booting instead.*template ${t.slice(0, 12)} removed, the next pod builds it again`));
    assert.ok(!existsSync(join(podDir(root, id), 'template.json')), 'booted, not a clone');
    assertExit(await bvm(['exec', id, 'true']), 0, 'the booted pod works');
    assert.deepEqual(templates(), [], 'the bad template is gone');
    const next = `tpy-${process.pid}`;
    await sandbox(next);
    assert.match(vmdLog(next), /building VM template/);
    assert.ok(existsSync(join(podDir(root, next), 'template.json')), 'the next pod is a clone of the rebuilt template');
  });

  it('a clone ended from outside (its QEMU killed while it restores) leaves its template in place: not the template\'s fault', async () => {
    // the template this sizing's pods clone (built here when this test runs alone)
    if (templates().length === 0) await sandbox(`tpw-${process.pid}`);
    const have = templates();
    assert.ok(have.length > 0);
    const id = `tpk-${process.pid}`;
    const pd = podDir(root, id);
    const created = createWithPipes(root, id, makeBundle(dir, id, { rootfs, annotations: NO_VOLUMES, args: ['sleep', '1000'] }), assets);
    started.push(id);
    // the clone's QEMU (started with -incoming), killed as soon as it is seen: as a forced delete of
    // the pod under the restore does (a good template was removed for it: "QEMU exited"). Found by
    // its command line, or by its record: a standby VMM the pod adopted (standby-vmm.ts) names its own dir
    let killed = 0;
    for (const until = Date.now() + 120_000; killed === 0 && Date.now() < until;) {
      const rec = readProc(pd, 'vmm');
      for (const p of new Set([...pidsNaming(pd), ...(rec && !existsSync(join(pd, 'template.json')) ? [rec.pid] : [])])) {
        let cmd = '';
        try { cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8'); } catch { continue; }
        if (cmd.includes('qemu-system') && cmd.includes('\0-incoming\0')) { try { process.kill(p, 'SIGKILL'); killed = p; } catch { /* gone */ } }
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.ok(killed > 0, 'the clone\'s QEMU was seen');
    await created; // the pod boots instead, or fails: either way its own business
    assert.deepEqual(templates(), have, `the template stays; vmd: ${existsSync(pd) ? vmdLog(id).slice(-1500) : '(pod dir gone)'}`);
  });

  it('a template VM is built in a cgroup of its own (not its builder\'s, whose memory limit it was charged to), removed after the build with their parent once empty', async () => {
    const id = `tcg-${process.pid}`;
    // the builds' parent made by another build, which ended first (its journal had it; this one's has not)
    makeCgroup(TEMPLATE_CGROUPS, vmmHierarchies(), () => undefined);
    const up = sandbox(id, NO_VOLUMES, 352 << 20); // a size no template has: built now
    // the build's QEMU, looked at until it is in the template's cgroup (it is placed just after its
    // spawn) or the pod is up (then it never was)
    let seen: { pid: number; cgroups: string } | undefined;
    let done = false;
    void up.then(() => { done = true; }, () => { done = true; });
    for (const until = Date.now() + 240_000; !done && !/bulkhead-vm-templates/.test(seen?.cgroups ?? '') && Date.now() < until;) {
      for (const p of pidsNaming(join(root, 'templates'))) {
        try {
          if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('/.build-')) seen = { pid: p, cgroups: readFileSync(`/proc/${p}/cgroup`, 'utf8') };
        } catch { /* gone */ }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await up;
    assert.ok(seen, 'the template build\'s QEMU was seen');
    const mem = /^\d+:memory:(\S+)$/m.exec(seen.cgroups)?.[1] ?? /^0::(\S+)$/m.exec(seen.cgroups)?.[1];
    assert.match(mem ?? '', /^\/bulkhead-vm-templates\/[0-9a-f]{32}-\w+$/, `its memory cgroup (${seen.cgroups.trim().split('\n').join('; ')})`);
    const v1 = join('/sys/fs/cgroup/memory', mem!);
    assert.ok(!existsSync(v1) && !existsSync(join('/sys/fs/cgroup/unified', mem!)), `${mem} is removed once the template is built`);
    for (const h of vmmHierarchies()) {
      const parent = join(h.path, TEMPLATE_CGROUPS);
      const others = existsSync(parent) ? readdirSync(parent, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name) : [];
      // (a build elsewhere on the node may have its cgroup there right now: then the parent stays)
      assert.ok(!existsSync(parent) || others.length > 0, `${parent} is removed once empty`);
    }
  });

  it('a template build whose builder was killed leaves its cgroup; the next build of that template removes it with the build dir', async () => {
    const id = `tkb-${process.pid}`;
    const saved = process.env.BULKHEAD_VM_SUPERVISOR;
    process.env.BULKHEAD_VM_SUPERVISOR = 'pod'; // the builder is the pod's own supervisor, killed alone here
    let created: ReturnType<typeof createWithPipes>;
    try {
      created = createWithPipes(root, id, makeBundle(dir, id, { rootfs, annotations: NO_VOLUMES, args: ['sleep', '1000'], memoryLimit: 384 << 20 }), assets);
    } finally {
      if (saved === undefined) delete process.env.BULKHEAD_VM_SUPERVISOR; else process.env.BULKHEAD_VM_SUPERVISOR = saved;
    }
    started.push(id);
    let qemu = 0;
    let mem = '';
    for (const until = Date.now() + 240_000; !qemu && Date.now() < until;) {
      for (const p of pidsNaming(join(root, 'templates'))) {
        try {
          if (!readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('/.build-')) continue;
          const m = /^\d+:memory:(\/bulkhead-vm-templates\/\S+)$/m.exec(readFileSync(`/proc/${p}/cgroup`, 'utf8'));
          if (m) { qemu = p; mem = m[1]!; }
        } catch { /* gone */ }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(qemu > 0, 'the build\'s QEMU was seen in its cgroup');
    // its QMP socket's directory, short, in the temp dir
    const sockDir = /unix:(\/\S+?)\/qmp,/.exec(readFileSync(`/proc/${qemu}/cmdline`, 'utf8').split('\0').join(' '))?.[1] ?? '';
    assert.ok(existsSync(sockDir), `the build's socket dir (${sockDir})`);
    const builder = Number(readFileSync(`/proc/${qemu}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1]);
    process.kill(builder, 'SIGKILL');
    await waitFor(() => !existsSync(`/proc/${qemu}`) || /\) Z /.test(readFileSync(`/proc/${qemu}/stat`, 'utf8')), 'the build\'s QEMU to die with its builder', 20_000);
    assert.notEqual((await created).code, 0);
    assert.ok(existsSync(join('/sys/fs/cgroup/memory', mem)), 'the killed build left its cgroup');
    await bvm(['delete', '--force', id]);
    const next = `tkc-${process.pid}`;
    await sandbox(next, NO_VOLUMES, 384 << 20);
    assert.ok(!existsSync(join('/sys/fs/cgroup/memory', mem)), `the next build removed ${mem}`);
    assert.ok(existsSync(sockDir) === false, `and the killed build's socket dir ${sockDir}`);
    assert.deepEqual(readdirSync(join(root, 'templates')).filter((n) => n.startsWith('.build-')), [], 'and the build dir');
  });

  it('a pod that may bind volumes boots with its share and a volume works; a clone refuses a volume', async () => {
    const id = `tpv-${process.pid}`;
    await sandbox(id, { 'io.kubernetes.cri.container-type': 'sandbox' });
    assert.ok(!existsSync(join(podDir(root, id), 'template.json')), 'not a clone');
    assert.match(vmdLog(id), /cold boot: the pod may bind volumes/);
    const data = join(dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'f'), 'vol-ok\n');
    const mountSpec = (name: string, sb: string): string => {
      const b = makeBundle(dir, name, { rootfs, annotations: member(sb), args: ['cat', '/data/f'] });
      const spec = JSON.parse(readFileSync(join(b, 'config.json'), 'utf8')) as Record<string, unknown>;
      spec.mounts = [{ destination: '/data', type: 'bind', source: data, options: ['rbind', 'ro'] }];
      writeFileSync(join(b, 'config.json'), JSON.stringify(spec));
      return b;
    };
    const c = await createWithPipes(root, `cv-${process.pid}`, mountSpec('cv', id), assets);
    assert.equal(c.code, 0, c.err());
    started.push(`cv-${process.pid}`);
    assertExit(await bvm(['start', `cv-${process.pid}`]));
    await c.done;
    assert.equal(c.out(), 'vol-ok\n');
    const refused = await createWithPipes(root, `cr-${process.pid}`, mountSpec('cr', `tpb-${process.pid}`), assets);
    assert.notEqual(refused.code, 0);
    assert.match(refused.err(), /started from a VM template without a volume share/);
  });

  it('a clone of a node-wide template (template_sharing node) lets the host\'s KSM merge its RAM; a trust level\'s does not', async () => {
    const guestFlags = (id: string): string[] => {
      const pid = (JSON.parse(readFileSync(join(podDir(root, id), 'vmm.proc'), 'utf8')) as { pid: number }).pid;
      const smaps = readFileSync(`/proc/${pid}/smaps`, 'utf8');
      const at = smaps.search(/ \S+\/templates\/[0-9a-f]{32}\/memory\n/);
      assert.ok(at > 0, `${id}'s guest RAM is its template's file`);
      return /\nVmFlags:([^\n]*)/.exec(smaps.slice(at))![1]!.trim().split(' ');
    };
    assert.ok(!guestFlags(`tpy-${process.pid}`).includes('mg'), 'a clone of a level\'s template: not mergeable');
    const saved = process.env.BULKHEAD_VM_TEMPLATE_SHARING;
    process.env.BULKHEAD_VM_TEMPLATE_SHARING = 'node';
    try {
      const id = `tpn-${process.pid}`;
      await sandbox(id);
      assert.ok(existsSync(join(podDir(root, id), 'template.json')), 'a clone');
      assert.ok(guestFlags(id).includes('mg'), 'a clone of the node\'s template: mergeable');
    } finally {
      if (saved === undefined) delete process.env.BULKHEAD_VM_TEMPLATE_SHARING; else process.env.BULKHEAD_VM_TEMPLATE_SHARING = saved;
    }
  });

  it('a sandbox request that differs in more than the pod\'s names and files gets a template of its own; one that differs only in them shares it', async () => {
    const before = templates();
    const id = `tpe-${process.pid}`;
    const b = makeBundle(dir, id, { rootfs, annotations: NO_VOLUMES, args: ['sleep', '1000'], process: { env: ['PATH=/bin', 'OTHER=1'] } });
    const c = await createWithPipes(root, id, b, assets);
    assert.equal(c.code, 0, c.err());
    started.push(id);
    assertExit(await bvm(['start', id]));
    assert.match(vmdLog(id), /building VM template \w+ .*with its sandbox container/);
    assert.match(vmdLog(id), /sandbox container adopted from the template/);
    assert.equal(templates().length, before.length + 1, 'another template for another sandbox request');
    const env = await bvm(['exec', id, 'sh', '-c', 'cat /proc/1/environ | tr "\\0" " "']);
    assert.equal(env.code, 0, env.stderr);
    assert.match(env.stdout, /OTHER=1/, 'the sandbox runs with its own request\'s environment');
  });
});
