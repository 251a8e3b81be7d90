// Unit tests for the pure parts of the microVM runtime: frames, kv, cpio, module order, spec mapping.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildCpio } from './cpio.ts';
import { moduleLoadOrder } from './assets.ts';
import { encodeFrame, encodeKv, FrameDecoder, MAX_PAYLOAD, ProtocolViolation } from './protocol.ts';
import { containerKv, podIdentity, podNetnsPath, signalNumber, vmSize, GUEST_OVERHEAD_MIB, DEFAULT_GUEST_MIB } from './spec.ts';
import { cloneTbMiB, CLONE_TB_MIB, guestNetArgs } from './vmd.ts';
import { GUEST_KERNEL_ARGS, noThpPrefix, qemuArgs } from './qemu.ts';
import { MicrovmBackend } from '../runtime/microvm/microvm-backend.ts';
import { createLogger } from '../util/log.ts';
import type { OciSpec } from '../oci/spec.ts';
import { checkGlobal, globalOptions, type VmGlobal } from './cmd/global.ts';
import { templateFlags } from './cmd/template-flags.ts';
import { waitingStandby } from './standby-vmm.ts';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('agent frames', () => {
  it('round-trips frames split at every byte boundary', () => {
    const wire = Buffer.concat([encodeFrame('O', 7, 'hello'), encodeFrame('X', 7, '0'), encodeFrame('I', 1)]);
    for (let cut = 0; cut <= wire.length; cut++) {
      const d = new FrameDecoder('test');
      const frames = [...d.push(wire.subarray(0, cut)), ...d.push(wire.subarray(cut))];
      assert.deepEqual(frames.map((f) => [f.type, f.id, f.payload.toString()]), [['O', 7, 'hello'], ['X', 7, '0'], ['I', 1, '']]);
      assert.equal(d.pending, 0);
    }
  });
  it('rejects unknown types and oversized frames', () => {
    assert.throws(() => new FrameDecoder('guest').push(Buffer.from('Z\0\0\0\x01\0\0\0\0'.replace('Z', 'y'), 'latin1')), ProtocolViolation);
    const big = Buffer.alloc(9);
    big.write('O', 0, 'ascii');
    big.writeUInt32BE(MAX_PAYLOAD + 1, 5);
    assert.throws(() => new FrameDecoder('guest').push(big), /exceeds/);
    assert.throws(() => encodeFrame('O', 1, Buffer.alloc(MAX_PAYLOAD + 1)), /exceeds/);
  });
  it('encodes kv lists and refuses NUL bytes', () => {
    assert.equal(encodeKv([['arg', 'sh'], ['arg', '-c'], ['uid', 0]]).toString(), 'arg=sh\0arg=-c\0uid=0\0');
    assert.throws(() => encodeKv([['env', 'A=\0']]), /NUL/);
  });
});

describe('cpio newc', () => {
  it('writes headers, padding and the trailer', () => {
    const a = buildCpio([{ path: 'init', type: 'file', mode: 0o755, data: Buffer.from('#!/bin/sh\n') }, { path: 'bin', type: 'dir', mode: 0o755 }]);
    assert.equal(a.subarray(0, 6).toString(), '070701');
    assert.equal(a.length % 4, 0);
    assert.equal(parseInt(a.subarray(14, 22).toString(), 16), 0o100755, 'mode');
    assert.equal(parseInt(a.subarray(54, 62).toString(), 16), 10, 'file size');
    assert.ok(a.includes(Buffer.from('TRAILER!!!\0')));
    assert.deepEqual(a, buildCpio([{ path: 'init', type: 'file', mode: 0o755, data: Buffer.from('#!/bin/sh\n') }, { path: 'bin', type: 'dir', mode: 0o755 }]), 'deterministic');
    assert.throws(() => buildCpio([{ path: '../x', type: 'dir', mode: 0o755 }]), /bad cpio path/);
  });
});

describe('module load order', () => {
  it('loads dependencies first, once', () => {
    const dep = [
      'kernel/drivers/virtio/virtio_ring.ko:',
      'kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko',
      'kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko',
      'kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko',
      'kernel/fs/overlayfs/overlay.ko:',
    ].join('\n');
    assert.deepEqual(moduleLoadOrder(dep, ['virtio_mmio', 'virtio_blk', 'overlay', 'missing']).map((p) => p.split('/').pop()),
      ['virtio_ring.ko', 'virtio.ko', 'virtio_mmio.ko', 'virtio_blk.ko', 'overlay.ko']);
  });
});

describe('OCI spec → VM', () => {
  const base: OciSpec = { ociVersion: '1.0.2', process: { user: { uid: 1000, gid: 1000, additionalGids: [5] }, args: ['sh'], env: ['A=1'], cwd: '/w', terminal: true, noNewPrivileges: true, capabilities: { bounding: ['CAP_CHOWN', 'CAP_KILL', 'CAP_NOPE'] } } };
  it('finds the pod from CRI and CRI-O annotations', () => {
    assert.deepEqual(podIdentity('c', base), { podId: 'c', sandbox: true });
    assert.deepEqual(podIdentity('c', { ...base, annotations: { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': 'p' } }), { podId: 'p', sandbox: false });
    assert.deepEqual(podIdentity('c', { ...base, annotations: { 'io.kubernetes.cri-o.ContainerType': 'container', 'io.kubernetes.cri-o.SandboxID': 'q' } }), { podId: 'q', sandbox: false });
    assert.throws(() => podIdentity('c', { ...base, annotations: { 'io.kubernetes.cri.container-type': 'container' } }), /sandbox-id/);
  });
  it('sizes the VM from limits plus overhead', () => {
    assert.deepEqual(vmSize(base, 2), { memoryMiB: DEFAULT_GUEST_MIB + GUEST_OVERHEAD_MIB, vcpus: 1 });
    const s = { ...base, linux: { resources: { memory: { limit: 256 * 1048576 }, cpu: { quota: 250000, period: 100000 } } } };
    assert.deepEqual(vmSize(s, 2), { memoryMiB: 256 + GUEST_OVERHEAD_MIB, vcpus: 2 }, 'vCPUs clamped to the host');
  });
  it('never lets the pod-authored memory annotation raise the guest (and VMM cgroup) past the memory limit', () => {
    const limited = { ...base, annotations: { 'io.bulkhead.vm.memory-mib': '65536' }, linux: { resources: { memory: { limit: 256 * 1048576 } } } };
    assert.equal(vmSize(limited, 2).memoryMiB, 256 + GUEST_OVERHEAD_MIB);
    const unlimited = { ...base, annotations: { 'io.bulkhead.vm.memory-mib': '1000000', 'io.bulkhead.vm.vcpus': '-3' } };
    assert.deepEqual(vmSize(unlimited, 2), { memoryMiB: 16384 + GUEST_OVERHEAD_MIB, vcpus: 1 });
    assert.equal(vmSize({ ...base, annotations: { 'io.bulkhead.vm.memory-mib': 'lots' } }, 2).memoryMiB, DEFAULT_GUEST_MIB + GUEST_OVERHEAD_MIB);
  });
  it('maps process, user, capabilities and limits to agent fields', () => {
    const kv = containerKv({ ...base, hostname: 'h', root: { path: 'r', readonly: true }, linux: { resources: { memory: { limit: 1024 }, pids: { limit: 10 } } } });
    const get = (k: string): (string | number)[] => kv.filter(([key]) => key === k).map(([, v]) => v);
    assert.deepEqual(get('arg'), ['sh']);
    assert.deepEqual(get('uid'), [1000]);
    assert.deepEqual(get('group'), [5]);
    assert.deepEqual(get('cap_bnd'), [String((1 << 0) | (1 << 5))], 'unknown capability names are dropped, never widened');
    for (const k of ['cap_eff', 'cap_prm', 'cap_inh', 'cap_amb']) assert.equal(get(k).length, 1, `${k} is always sent with the bounding set`);
    assert.deepEqual(get('tty'), [1]);
    assert.deepEqual(get('nnp'), [1]);
    assert.deepEqual(get('readonly'), [1]);
    assert.deepEqual(get('memory'), [1024]);
    assert.deepEqual(get('pids'), [10]);
  });
  it('parses signals like runc', () => {
    assert.equal(signalNumber('TERM'), 15);
    assert.equal(signalNumber('SIGKILL'), 9);
    assert.equal(signalNumber('10'), 10);
    assert.throws(() => signalNumber('SIGNOPE'), /unknown signal/);
  });
});

describe('pod network for the VM', () => {
  it('takes the netns path from the spec; no entry or no path means no network', () => {
    const spec = (ns: unknown): OciSpec => ({ ociVersion: '1.0.2', process: { args: ['x'], cwd: '/' }, linux: { namespaces: ns } } as unknown as OciSpec);
    assert.equal(podNetnsPath(spec([{ type: 'pid' }, { type: 'network', path: '/run/netns/p1' }])), '/run/netns/p1');
    assert.equal(podNetnsPath(spec([{ type: 'network' }])), undefined);
    assert.equal(podNetnsPath(spec(undefined)), undefined);
    assert.throws(() => podNetnsPath(spec([{ type: 'network', path: 'rel/ns' }])), /absolute/);
  });
  it('turns the tap attachment into kernel command line words and refuses odd values', () => {
    assert.deepEqual(guestNetArgs({ addresses: ['10.1.2.3/24'], gateway: '10.1.2.1', mtu: 1450 }),
      ['bulkhead.addr=10.1.2.3/24', 'bulkhead.gw=10.1.2.1', 'bulkhead.mtu=1450']);
    assert.deepEqual(guestNetArgs({ addresses: [], gateway: null, mtu: 1500 }), ['bulkhead.mtu=1500']);
    assert.throws(() => guestNetArgs({ addresses: ['10.1.2.3/24 init=/bin/sh'], gateway: null, mtu: 1500 }), /bad pod address/);
    assert.throws(() => guestNetArgs({ addresses: [], gateway: '1.2.3.4 x', mtu: 1500 }), /bad pod gateway/);
    assert.throws(() => guestNetArgs({ addresses: [], gateway: null, mtu: 10 }), /MTU/);
  });
  it('gives QEMU a virtio-net NIC on the tap with the pod MAC, and none without a tap', () => {
    const base = { name: 'p', kernel: '/k', initramfs: '/i', memoryMiB: 256, vcpus: 1, accel: 'tcg' as const, drives: [], consoleLog: '/c', workDir: '/w' };
    const withNet = qemuArgs({ ...base, tap: 'bhvm0', mac: 'ee:b2:de:82:5f:af', kernelArgs: ['bulkhead.mtu=1500'] });
    assert.ok(withNet.includes('tap,id=net0,ifname=bhvm0,script=no,downscript=no,vhost=off'));
    assert.ok(withNet.includes('virtio-net-device,netdev=net0,mac=ee:b2:de:82:5f:af'));
    assert.match(withNet[withNet.indexOf('-append') + 1]!, / bulkhead\.mtu=1500$/);
    assert.ok(!qemuArgs(base).includes('-netdev'));
    assert.throws(() => qemuArgs({ ...base, tap: 'bhvm0', mac: 'ee:b2:de:82:5f:af,x=1' }), /bad MAC/);
  });
  it('starts a clone without the kernel (its RAM has it; QEMU would hold the image for fw_cfg) and with its TCG buffer size', () => {
    const base = { name: 'p', kernel: '/k', initramfs: '/i', memoryMiB: 256, vcpus: 1, accel: 'tcg' as const, drives: [], consoleLog: '/c', workDir: '/w' };
    const boot = qemuArgs(base);
    assert.ok(boot.includes('-kernel') && boot.includes('-initrd') && boot.includes('-append'));
    assert.equal(boot[boot.indexOf('-accel') + 1], 'tcg', 'QEMU\'s own buffer size unless one is given');
    const clone = qemuArgs({ ...base, incoming: '/t/state', memFile: { path: '/t/memory', share: false }, tbSizeMiB: CLONE_TB_MIB });
    assert.ok(!clone.includes('-kernel') && !clone.includes('-initrd') && !clone.includes('-append'));
    assert.equal(clone[clone.indexOf('-accel') + 1], `tcg,tb-size=${CLONE_TB_MIB}`);
    assert.equal(qemuArgs({ ...base, accel: 'kvm', tbSizeMiB: 32 })[boot.indexOf('-accel') + 1], 'kvm', 'no TCG option under KVM');
    // the buffer in a memfd an idle trim can punch (tb-trim.ts), with or without a size; never under KVM
    assert.equal(qemuArgs({ ...base, tbSizeMiB: 32, jitMemfd: true })[boot.indexOf('-accel') + 1], 'tcg,tb-size=32,split-wx=on');
    assert.equal(qemuArgs({ ...base, jitMemfd: true })[boot.indexOf('-accel') + 1], 'tcg,split-wx=on');
    assert.equal(qemuArgs({ ...base, accel: 'kvm', jitMemfd: true })[boot.indexOf('-accel') + 1], 'kvm');
    assert.equal(cloneTbMiB({}), CLONE_TB_MIB);
    assert.equal(cloneTbMiB({ BULKHEAD_VM_CLONE_TB_MIB: '8' }), 8);
    assert.equal(cloneTbMiB({ BULKHEAD_VM_CLONE_TB_MIB: '0' }), undefined, '0: QEMU\'s default');
    assert.equal(cloneTbMiB({ BULKHEAD_VM_CLONE_TB_MIB: '8,x=1' }), CLONE_TB_MIB, 'anything else: the default');
  });
  it('boots the guest without the LSMs it never gives a policy and without PSI (hooks a TCG clone translates), Landlock, Yama and lockdown kept', () => {
    const base = { name: 'p', kernel: '/k', initramfs: '/i', memoryMiB: 256, vcpus: 1, accel: 'tcg' as const, drives: [], consoleLog: '/c', workDir: '/w' };
    const words = qemuArgs(base)[qemuArgs(base).indexOf('-append') + 1]!.split(' ');
    assert.ok(words.includes('lsm=landlock,lockdown,yama'), words.join(' '));
    assert.ok(words.includes('psi=0'));
    assert.deepEqual(words.slice(0, GUEST_KERNEL_ARGS.length), [...GUEST_KERNEL_ARGS]);
  });
  it('starts QEMU under TCG without transparent huge pages (a 64 KiB ROM took a 2 MiB page); KVM keeps them', () => {
    const p = noThpPrefix('tcg', 'x64', '/usr/bin/perl', {});
    assert.deepEqual([p[0], p[1], p.at(-1)], ['/usr/bin/perl', '-e', '--']);
    assert.match(p[2]!, /^syscall\(157, 41, 1, 0, 0, 0\); exec \{ \$ARGV\[0\] \} @ARGV/, 'prctl(PR_SET_THP_DISABLE), its failure ignored, then exec without a shell');
    assert.match(noThpPrefix('tcg', 'arm64')[2]!, /^syscall\(167, 41,/);
    assert.deepEqual(noThpPrefix('kvm', 'x64'), []);
    assert.deepEqual(noThpPrefix('tcg', 'ppc64'), [], 'an arch whose prctl number is not known: as before');
    assert.deepEqual(noThpPrefix('tcg', 'x64', '/nonexistent/perl'), [], 'no perl: as before');
    assert.deepEqual(noThpPrefix('tcg', 'x64', '/usr/bin/perl', { BULKHEAD_VM_QEMU_THP: '1' }), [], 'kept when asked');
  });
  it('keeps the guest RAM out of the host\'s KSM unless asked (a clone of a node-wide template): merged pages leak across trust levels', () => {
    const base = { name: 'p', kernel: '/k', initramfs: '/i', memoryMiB: 256, vcpus: 1, accel: 'tcg' as const, drives: [], consoleLog: '/c', workDir: '/w' };
    const machine = (a: string[]): string => a[a.indexOf('-M') + 1]!;
    const backend = (a: string[]): string => a[a.indexOf('-object') + 1]!;
    assert.match(machine(qemuArgs(base)), /,mem-merge=off(,|$)/, 'a booted VM\'s RAM');
    assert.match(backend(qemuArgs({ ...base, fsSocket: '/w/fs.sock' })), /^memory-backend-memfd,.*,merge=off$/);
    const clone = { ...base, incoming: '/t/state', memFile: { path: '/t/memory', share: false } };
    assert.match(machine(qemuArgs(clone)), /,mem-merge=off,/);
    assert.match(backend(qemuArgs(clone)), /^memory-backend-file,.*,share=off,merge=off$/);
    assert.match(machine(qemuArgs({ ...clone, memMerge: true })), /,mem-merge=on,/);
    assert.match(backend(qemuArgs({ ...clone, memMerge: true })), /,merge=on$/);
  });
});

describe('microvm backend options', () => {
  const logger = createLogger({ level: 'error' });
  const globalArgs = (o: Record<string, unknown>): string[] => new MicrovmBackend({ runDir: '/tmp/none', logger, ...o }).runtimeCommand().globalArgs;
  // every command ends with --log-format json (its failures carry their class and reason)
  const assets = (o: Record<string, unknown>): string[] => globalArgs(o).slice(0, -2);
  it('runs bulkhead-vm with --log-format json, after any runtimeArgs', () => {
    assert.deepEqual(globalArgs({ runtimeArgs: ['--log-format', 'text'] }).slice(-4), ['--log-format', 'text', '--log-format', 'json']);
  });
  it('takes the assets root from --assets in runtimeArgs, [vm] assets, or assetsRoot; never from the daemon root; never twice', () => {
    const saved = process.env.BULKHEAD_VM_ASSETS;
    delete process.env.BULKHEAD_VM_ASSETS;
    try {
      // a daemon with a private root still finds the node's installed assets (#18)
      assert.deepEqual(assets({ root: '/srv/bh' }).slice(2), ['--assets', '/var/lib/bulkhead']);
      assert.deepEqual(assets({ root: '/srv/bh', vm: { assets: '/opt/vm-assets' } }).slice(2), ['--assets', '/opt/vm-assets']);
      assert.deepEqual(assets({ root: '/srv/bh', vm: { assets: '/x' }, runtimeArgs: ['--assets', '/a'] }).slice(2), ['--assets', '/a']);
      assert.deepEqual(assets({ root: '/srv/bh', assetsRoot: '/b', runtimeArgs: ['--accel=tcg'] }).slice(2), ['--assets', '/b', '--accel=tcg']);
      assert.deepEqual(assets({}).slice(2), ['--assets', '/var/lib/bulkhead']);
      process.env.BULKHEAD_VM_ASSETS = '/env/assets';
      assert.deepEqual(assets({ root: '/srv/bh' }).slice(2), ['--assets', '/env/assets']);
    } finally {
      if (saved === undefined) delete process.env.BULKHEAD_VM_ASSETS; else process.env.BULKHEAD_VM_ASSETS = saved;
    }
    assert.throws(() => assets({ vm: { assets: 'relative' } }), /vm\.assets must be an absolute/);
    assert.throws(() => assets({ vm: { asets: '/x' } }), /unknown key vm\.asets/);
  });

  it('turns the host\'s standby clone VMMs off per handler (--standby-vmm off, BULKHEAD_VM_STANDBY_VMM=0): the pod\'s start is told so; a bad value is refused', () => {
    const g = (flags: Record<string, string>, env: Record<string, string> = {}): VmGlobal => globalOptions(flags, env);
    assert.equal(g({}).standbyVmm, 'on');
    assert.equal(g({}, { BULKHEAD_VM_STANDBY_VMM: '0' }).standbyVmm, 'off');
    assert.equal(g({}, { BULKHEAD_VM_STANDBY_VMM: '1' }).standbyVmm, 'on');
    assert.equal(g({ 'standby-vmm': 'on' }, { BULKHEAD_VM_STANDBY_VMM: 'off' }).standbyVmm, 'on', 'the flag (a handler\'s runtime_args) wins');
    assert.throws(() => checkGlobal(g({ 'standby-vmm': 'maybe' })), /--standby-vmm \(BULKHEAD_VM_STANDBY_VMM\) must be on or off/);
    const spec: OciSpec = { ociVersion: '1.0.2', annotations: { 'io.bulkhead.vm.trust-level': 'untrusted', 'io.bulkhead.vm.volumes': 'none' } };
    assert.deepEqual(templateFlags(g({}, { BULKHEAD_VM_STANDBY_VMM: 'off' }), spec).slice(-2), ['--standby-vmm', 'off']);
    assert.ok(!templateFlags(g({}), spec).includes('--standby-vmm'));
    assert.ok(!templateFlags(g({ 'standby-vmm': 'off', 'template-sharing': 'none' }), spec).includes('--standby-vmm'), 'no templates, nothing to say');
  });

  it('tells a standby clone VMM not adopted yet by its command line (its dir still there), for benches that measure clones', () => {
    const root = mkdtempSync(join(tmpdir(), 'bh-standby-'));
    try {
      const dir = join(root, 'state/standby/0123456789ab-AbCdEf');
      const cmd = ['qemu-system-x86_64', '-drive', `id=slot0,file=${dir}/slot0.img,format=raw`, '-incoming', 'defer'].join('\0');
      assert.equal(waitingStandby(cmd), false, 'adopted: its dir is gone');
      mkdirSync(dir, { recursive: true });
      assert.equal(waitingStandby(cmd), true);
      assert.equal(waitingStandby(cmd.replace('/standby/', '/pods/')), false, 'a pod\'s QEMU');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('passes [vm] template_sharing, and marks a sandbox with its trust level and a volume-less pod from the pod record only', () => {
    assert.deepEqual(globalArgs({ vm: { template_sharing: 'node' } }).slice(-4, -2), ['--template-sharing', 'node']);
    assert.throws(() => globalArgs({ vm: { template_sharing: 'everyone' } }), /vm.template_sharing must be one of level, node, none/);
    const b = new MicrovmBackend({ runDir: '/tmp/none', logger }) as unknown as { adjustSpec(s: unknown, o: unknown): { annotations: Record<string, string> } };
    const forged = { 'io.bulkhead.vm.trust-level': 'trusted', 'io.bulkhead.vm.volumes': 'none' };
    const sb = b.adjustSpec({ annotations: { ...forged } }, { id: 's1', pod: { podId: 'p', role: 'sandbox', trustLevel: 'untrusted', podAnnotations: { 'io.bulkhead.vm.volumes': 'none' } } }).annotations;
    assert.equal(sb['io.bulkhead.vm.trust-level'], 'untrusted');
    assert.equal(sb['io.bulkhead.vm.volumes'], 'none');
    const plain = b.adjustSpec({ annotations: { ...forged } }, { id: 's2', pod: { podId: 'p', role: 'sandbox' } }).annotations;
    assert.equal(plain['io.bulkhead.vm.trust-level'], undefined, 'a spec cannot bring its own trust level');
    assert.equal(plain['io.bulkhead.vm.volumes'], undefined);
  });

  it('a pod\'s volume mode: its annotation (none, copy, share), else the handler\'s default ([vm] volumes, --volumes); a bad value is refused', () => {
    type B = { adjustSpec(s: unknown, o: unknown): { annotations: Record<string, string> } };
    const mode = (b: B, ann?: string, role = 'sandbox'): string | undefined => b.adjustSpec({ annotations: {} }, { id: 's', pod: { podId: 'p', role, sandboxContainerId: 's', ...(ann ? { podAnnotations: { 'io.bulkhead.vm.volumes': ann } } : {}) } }).annotations['io.bulkhead.vm.volumes'];
    const share = new MicrovmBackend({ runDir: '/tmp/none', logger }) as unknown as B;
    const copyCfg = new MicrovmBackend({ runDir: '/tmp/none', logger, vm: { volumes: 'copy' } }) as unknown as B;
    const copyArg = new MicrovmBackend({ runDir: '/tmp/none', logger, runtimeArgs: ['--volumes', 'copy'] }) as unknown as B;
    const argWins = new MicrovmBackend({ runDir: '/tmp/none', logger, runtimeArgs: ['--volumes=share'], vm: { volumes: 'copy' } }) as unknown as B;
    const cases: [string, B, string | undefined, string | undefined][] = [
      ['share handler, no annotation', share, undefined, undefined],
      ['share handler, copy pod', share, 'copy', 'copy'],
      ['share handler, a value it does not know', share, 'everything', undefined],
      ['share handler, share pod (nothing to say)', share, 'share', undefined],
      ['[vm] volumes = copy, no annotation', copyCfg, undefined, 'copy'],
      ['--volumes copy, no annotation', copyArg, undefined, 'copy'],
      ['copy handler, none pod', copyArg, 'none', 'none'],
      ['copy handler, share pod', copyArg, 'share', 'share'],
      ['runtime_args win over [vm]', argWins, undefined, undefined],
    ];
    for (const [what, b, ann, want] of cases) assert.equal(mode(b, ann), want, what);
    assert.equal(mode(copyArg, 'copy', 'container'), undefined, 'only the sandbox spec carries the mode');
    assert.throws(() => new MicrovmBackend({ runDir: '/tmp/none', logger, vm: { volumes: 'all' } }), /vm.volumes must be "copy" or "share"/);
    assert.throws(() => new MicrovmBackend({ runDir: '/tmp/none', logger, runtimeArgs: ['--volumes', 'all'] }), /--volumes must be copy or share/);
  });

  it('says where it looked for the guest kernel when the assets are missing', async () => {
    const b = new MicrovmBackend({ runDir: '/tmp/none', logger, vm: { assets: '/nonexistent-bulkhead-assets' } });
    const p = await b.probe();
    assert.equal(p.available, false);
    assert.match(p.reason ?? '', /looked in \/nonexistent-bulkhead-assets\/vm: setting \[vm\] assets/);
  });

  it('is unavailable, saying how to rebuild, when the container shim is missing or the guest agent was built from other sources', async () => {
    const { mkdtemp, mkdir, writeFile, rm } = await import('node:fs/promises');
    const root = await mkdtemp('/tmp/bulkhead-stale-assets-');
    try {
      const dir = `${root}/vm`;
      await mkdir(`${dir}/kernel/boot`, { recursive: true });
      await mkdir(`${dir}/kernel/lib/modules/6.1.0-test/`, { recursive: true });
      await mkdir(`${dir}/bin`, { recursive: true });
      await writeFile(`${dir}/kernel/boot/vmlinuz-6.1.0-test`, '');
      await writeFile(`${dir}/kernel/lib/modules/6.1.0-test/modules.dep`, '');
      for (const f of ['initramfs.cpio', 'bin/bulkhead-agent', 'bin/bulkhead-vm-console']) await writeFile(`${dir}/${f}`, '');
      await writeFile(`${dir}/assets.json`, JSON.stringify({ agentSource: '0'.repeat(64), consoleSource: '0'.repeat(64), kernelRelease: '6.1.0-test' }));
      // an install from before the C container shim: the probe names the missing shim and setup
      const noShim = await new MicrovmBackend({ runDir: `${root}/run`, logger, vm: { assets: root } }).probe();
      assert.equal(noShim.available, false);
      assert.match(noShim.reason ?? '', new RegExp(`${root}/vm/bin/bulkhead-vm-shim is missing; run \`bin/bulkhead-vm --assets ${root} setup\``));
      await writeFile(`${dir}/bin/bulkhead-vm-shim`, '');
      const p = await new MicrovmBackend({ runDir: `${root}/run`, logger, vm: { assets: root } }).probe();
      assert.equal(p.available, false);
      assert.match(p.reason ?? '', new RegExp(`guest agent in ${root}/vm was built from other guest/ sources.*bin/bulkhead-vm --assets ${root} setup`));
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('VMM cgroups', () => {
  it('finds the v1 hierarchies and v2 from mountinfo, wherever they are mounted', async () => {
    const { parseCgroupMounts } = await import('../cgroup/mounts.ts');
    const mi = [
      '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
      '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
      '33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct',
      '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory',
      '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd',
      '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
      '50 31 0:39 / /mnt/cg\\040x rw - cgroup cgroup rw,cpu,cpuacct',
    ].join('\n');
    assert.deepEqual(parseCgroupMounts(mi), [
      { path: '/sys/fs/cgroup/cpu', version: 1, controllers: ['cpu'] },
      { path: '/sys/fs/cgroup/cpuacct', version: 1, controllers: ['cpuacct'] },
      { path: '/sys/fs/cgroup/memory', version: 1, controllers: ['memory'] },
      { path: '/sys/fs/cgroup/systemd', version: 1, controllers: [] },
      { path: '/sys/fs/cgroup/unified', version: 2, controllers: [] },
      { path: '/mnt/cg x', version: 1, controllers: ['cpu', 'cpuacct'] },
    ]);
  });
  it('keeps a cgroupsPath inside its hierarchy', async () => {
    const { cleanCgroupPath } = await import('./vm-cgroup.ts');
    assert.equal(cleanCgroupPath('/bulkhead/pod/sb'), 'bulkhead/pod/sb');
    assert.equal(cleanCgroupPath('bulkhead-vm/x/'), 'bulkhead-vm/x');
    for (const bad of ['', '/', '../x', 'a/../../b', '.', 'a/./..']) assert.equal(cleanCgroupPath(bad), undefined, bad);
  });
  it('never creates a directory outside a cgroup filesystem', async () => {
    const { isCgroupFs } = await import('../cgroup/mounts.ts');
    assert.equal(isCgroupFs('/tmp'), false);
    assert.equal(isCgroupFs('/nonexistent'), false);
  });
});

describe('guest agent protocol', () => {
  it('refuses an agent older than the host needs (it would ignore PID namespaces, capabilities and seccomp), naming setup', async () => {
    const { checkAgentProtocol, AGENT_PROTOCOL } = await import('./vmd.ts');
    assert.throws(() => checkAgentProtocol(AGENT_PROTOCOL - 1, '/var/lib/bulkhead/vm'), /speaks protocol 7, this host needs 8 .*run `bin\/bulkhead-vm --assets \/var\/lib\/bulkhead setup`/);
    assert.doesNotThrow(() => checkAgentProtocol(AGENT_PROTOCOL, '/x/vm'));
  });
});

describe('VM templates (units)', () => {
  it('reads whether the host runs KSM (doctor says so: it merges only clones of a node-wide template)', async () => {
    const { hostKsm } = await import('./template-sharing.ts');
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const d = mkdtempSync(join(tmpdir(), 'bh-ksm-'));
    try {
      writeFileSync(join(d, 'run'), '0\n');
      assert.equal(hostKsm(join(d, 'run')), 'off');
      writeFileSync(join(d, 'run'), '1\n');
      assert.equal(hostKsm(join(d, 'run')), 'on');
      writeFileSync(join(d, 'run'), '2\n');
      assert.equal(hostKsm(join(d, 'run')), 'off', '2: unmerging, not merging');
      assert.equal(hostKsm(join(d, 'missing')), undefined, 'no KSM in the kernel: nothing to say');
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
  it('keys a template by every input and its sharing scope; the family ignores file identities', async (t) => {
    const { templateKeys, templateScope, parseTemplateSharing } = await import('./template.ts');
    const { mkdtempSync, writeFileSync, utimesSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const d = mkdtempSync(join(tmpdir(), 'bh-tplkey-'));
    t.after(() => rmSync(d, { recursive: true, force: true }));
    const a = { kernel: join(d, 'k'), initramfs: join(d, 'i') };
    writeFileSync(a.kernel, 'k');
    writeFileSync(a.initramfs, 'i');
    const req = { memoryMiB: 640, vcpus: 1, accel: 'tcg' as const, nic: true };
    const k1 = templateKeys(a, req, 'level:untrusted', '/bin/sh');
    assert.equal(templateKeys(a, req, 'level:untrusted', '/bin/sh').key, k1.key, 'stable');
    assert.notEqual(templateKeys(a, req, 'level:trusted', '/bin/sh').key, k1.key, 'the trust level is part of the key');
    assert.notEqual(templateKeys(a, { ...req, nic: false }, 'level:untrusted', '/bin/sh').key, k1.key, 'so is the NIC');
    assert.notEqual(templateKeys(a, { ...req, memoryMiB: 768 }, 'level:untrusted', '/bin/sh').key, k1.key, 'and the memory');
    assert.notEqual(templateKeys(a, req, 'level:untrusted', '/bin/bash').key, k1.key, 'and the QEMU binary');
    assert.equal(k1.inputs.cmdline, GUEST_KERNEL_ARGS.join(' '), 'and the guest kernel command line (the layout leaves -append out)');
    utimesSync(a.initramfs, new Date(), new Date(Date.now() + 10_000));
    const k2 = templateKeys(a, req, 'level:untrusted', '/bin/sh');
    assert.notEqual(k2.key, k1.key, 'a rewritten initramfs is another template');
    assert.equal(k2.family, k1.family, 'of the same family (the old one is removed when it is built)');
    assert.equal(templateScope('level', 'untrusted'), 'level:untrusted');
    assert.equal(templateScope('level', undefined), 'level:(unknown)');
    assert.match(templateScope('level', '../x')!, /^level:#[0-9a-f]{16}$/);
    assert.notEqual(templateScope('level', '../x'), templateScope('level', '../y'), 'odd level names stay apart');
    assert.equal(templateScope('node', 'untrusted'), 'node');
    assert.equal(templateScope('none', 'untrusted'), undefined);
    assert.throws(() => parseTemplateSharing('all', 'config: vm.template_sharing'), /must be one of level, node, none/);
  });

  it('gives a clone its identity: entropy, clock, the pod MAC and validated addresses', async () => {
    const { identityKv } = await import('./vmd.ts');
    const kv = identityKv({ mac: '0A:58:0A:00:00:05', addresses: ['10.0.0.5/24'], gateway: '10.0.0.1', mtu: 1450 }, 1_700_000_000_123);
    const m = new Map(kv);
    assert.match(m.get('entropy')!, /^[0-9a-f]{128}$/);
    assert.notEqual(identityKv(undefined).find(([k]) => k === 'entropy')![1], m.get('entropy'), 'fresh entropy every time');
    assert.equal(m.get('time'), '1700000000.123000000');
    assert.equal(m.get('mac'), '0a:58:0a:00:00:05');
    assert.deepEqual([m.get('addr'), m.get('gw'), m.get('mtu')], ['10.0.0.5/24', '10.0.0.1', '1450']);
    assert.throws(() => identityKv({ mac: '0a:58:0a:00:00:05', addresses: ['10.0.0.5/24 x'], mtu: 1500 }), /bad pod address/);
    assert.throws(() => identityKv({ mac: 'nope', addresses: [], mtu: 1500 }), /bad pod MAC/);
    assert.deepEqual(identityKv(undefined).map(([k]) => k), ['entropy', 'time'], 'no network: no network identity');
  });
});
