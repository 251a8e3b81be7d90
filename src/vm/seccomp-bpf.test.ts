import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { defaultSeccompProfile } from '../runtime/seccomp.ts';
import { compileSeccomp, MAX_BPF_INSNS, runSeccomp, SECCOMP_RET } from './seccomp-bpf.ts';
import { X86_64_SYSCALLS as NR } from './syscalls-x86-64.ts';

const EPERM = (SECCOMP_RET.ERRNO | 1) >>> 0;
const nr = (name: string): number => { const n = NR[name]; assert.ok(n !== undefined, name); return n; };

describe('seccomp profile → classic BPF for the guest', () => {
  const prog = compileSeccomp(defaultSeccompProfile());

  it('compiles the default profile within the kernel limit', () => {
    assert.equal(prog.length % 8, 0);
    assert.ok(prog.length / 8 < MAX_BPF_INSNS, `${prog.length / 8} instructions`);
  });

  it('allows what the default profile allows and denies the rest with EPERM', () => {
    for (const s of ['read', 'write', 'openat', 'execve', 'exit_group', 'capset', 'setuid', 'prctl', 'wait4']) assert.equal(runSeccomp(prog, nr(s)), SECCOMP_RET.ALLOW, s);
    for (const s of ['unshare', 'mount', 'umount2', 'setns', 'pivot_root', 'bpf', 'kexec_load', 'init_module', 'ptrace', 'keyctl', 'open_tree']) assert.equal(runSeccomp(prog, nr(s)), EPERM, s);
    assert.equal(runSeccomp(prog, 999), EPERM, 'an unknown number gets the default');
    assert.equal(runSeccomp(prog, nr('clone3')), (SECCOMP_RET.ERRNO | 38) >>> 0, 'clone3 answers ENOSYS');
  });

  it('checks clone flags and personality values (argument rules)', () => {
    assert.equal(runSeccomp(prog, nr('clone'), [0x11n /* SIGCHLD */]), SECCOMP_RET.ALLOW);
    assert.equal(runSeccomp(prog, nr('clone'), [0x20000n /* CLONE_NEWNS */ | 0x11n]), EPERM);
    assert.equal(runSeccomp(prog, nr('clone'), [0x20000000n /* CLONE_NEWPID */]), EPERM);
    assert.equal(runSeccomp(prog, nr('personality'), [0n]), SECCOMP_RET.ALLOW);
    assert.equal(runSeccomp(prog, nr('personality'), [0xffffffffn]), SECCOMP_RET.ALLOW);
    assert.equal(runSeccomp(prog, nr('personality'), [0x0040000n /* READ_IMPLIES_EXEC */]), EPERM);
    assert.equal(runSeccomp(prog, nr('personality'), [0x1_0000_0000n]), EPERM, 'the high word is compared too');
  });

  it('denies other ABIs: i386 and x32 calls cannot go around the profile', () => {
    assert.equal(runSeccomp(prog, 3, [], 0x40000003 /* AUDIT_ARCH_I386 */), EPERM);
    assert.equal(runSeccomp(prog, 0x40000000 + nr('read')), EPERM);
    const allowAll = compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mount'], action: 'SCMP_ACT_ERRNO' }] });
    assert.equal(runSeccomp(allowAll, nr('read')), SECCOMP_RET.ALLOW);
    assert.equal(runSeccomp(allowAll, nr('mount')), EPERM);
    assert.equal(runSeccomp(allowAll, 21, [], 0x40000003), EPERM, 'a deny list still blocks the 32-bit ABI');
  });

  it('compares 64-bit arguments like the kernel would for every operator', () => {
    const values = [0n, 1n, 5n, 0xffffffffn, 0x1_0000_0000n, 0x1_0000_0005n, 0x2_0000_0000n, 0xffff_ffff_ffff_ffffn];
    const ops: Record<string, (a: bigint, v: bigint) => boolean> = {
      SCMP_CMP_EQ: (a, v) => a === v, SCMP_CMP_NE: (a, v) => a !== v, SCMP_CMP_LT: (a, v) => a < v,
      SCMP_CMP_LE: (a, v) => a <= v, SCMP_CMP_GT: (a, v) => a > v, SCMP_CMP_GE: (a, v) => a >= v,
    };
    for (const [op, f] of Object.entries(ops)) {
      for (const v of values.filter((x) => x <= BigInt(Number.MAX_SAFE_INTEGER))) {
        const p = compileSeccomp({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['ioctl'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: Number(v), op }] }] });
        for (const a of values) {
          assert.equal(runSeccomp(p, nr('ioctl'), [0n, a]), f(a, v) ? SECCOMP_RET.ALLOW : EPERM, `${op} arg=${a} value=${v}`);
        }
      }
    }
    const masked = compileSeccomp({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['ioctl'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0x1_0000_00ff, valueTwo: 0x1_0000_0012, op: 'SCMP_CMP_MASKED_EQ' }] }] });
    assert.equal(runSeccomp(masked, nr('ioctl'), [0x1_0000_ab12n]), SECCOMP_RET.ALLOW);
    assert.equal(runSeccomp(masked, nr('ioctl'), [0x0_0000_ab12n]), EPERM);
  });

  it('refuses what it cannot compile, naming it', () => {
    assert.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_NOTIFY' }), /action "SCMP_ACT_NOTIFY" is not supported/);
    assert.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 7, value: 0, op: 'SCMP_CMP_EQ' }] }] }), /index 7/);
    assert.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: -1, op: 'SCMP_CMP_EQ' }] }] }), /not an unsigned integer/);
    const huge = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: Array.from({ length: 1200 }, () => ({ names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' })) };
    assert.throws(() => compileSeccomp(huge), /more than the kernel's 4096/);
  });
});
