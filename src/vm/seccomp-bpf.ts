/**
 * Compiles an OCI seccomp profile (`linux.seccomp`) to a classic BPF program for the microVM
 * guest, whose agent installs it with seccomp(SECCOMP_SET_MODE_FILTER) right before exec (the
 * guest has no libseccomp). x86_64 only: every other audit arch and the x32 ABI (syscall numbers
 * with bit 30 set) get the deny action, so a 32-bit `int 0x80` cannot go around the profile.
 *
 * Layout: check arch → load nr → one block per rule, in profile order (first match wins) →
 * default action. A rule without args is `jeq nr; ret action`; a rule with args compares each
 * argument's full 64 bits (high and low word), all args of a rule must hold (AND), and a failed
 * comparison falls through to the next rule. Syscall names unknown on x86_64 are skipped, as
 * runc does. Encoding: struct sock_filter, 8 bytes each, little-endian (code u16, jt u8, jf u8, k u32).
 */
import { InvalidArgumentError } from '../errors.ts';
import type { OciSeccomp, OciSeccompSyscall } from '../oci/spec.ts';
import { X86_64_SYSCALLS } from './syscalls-x86-64.ts';

const LD_W_ABS = 0x20;
const JEQ = 0x15;
const JGT = 0x25;
const JGE = 0x35;
const AND_K = 0x54;
const RET_K = 0x06;

const AUDIT_ARCH_X86_64 = 0xc000003e;
const X32_SYSCALL_BIT = 0x40000000;
const OFF_NR = 0;
const OFF_ARCH = 4;
const argOff = (i: number, high: boolean): number => 16 + 8 * i + (high ? 4 : 0);

/** Most instructions the kernel takes in one filter (BPF_MAXINSNS). */
export const MAX_BPF_INSNS = 4096;

const RET_KILL_THREAD = 0x00000000;
const RET_KILL_PROCESS = 0x80000000;
const RET_TRAP = 0x00030000;
const RET_ERRNO = 0x00050000;
const RET_TRACE = 0x7ff00000;
const RET_LOG = 0x7ffc0000;
const RET_ALLOW = 0x7fff0000;
const EPERM = 1;

export type SeccompOp = 'SCMP_CMP_EQ' | 'SCMP_CMP_NE' | 'SCMP_CMP_LT' | 'SCMP_CMP_LE' | 'SCMP_CMP_GT' | 'SCMP_CMP_GE' | 'SCMP_CMP_MASKED_EQ';

/** The SECCOMP_RET_* value of an OCI action. */
export function actionValue(action: string, errnoRet: number | undefined): number {
  const errno = (n: number | undefined): number => {
    const v = n ?? EPERM;
    if (!Number.isInteger(v) || v < 0 || v > 4095) throw new InvalidArgumentError(`seccomp: errnoRet ${v} is not an errno (0..4095)`);
    return v;
  };
  switch (action) {
    case 'SCMP_ACT_ALLOW': return RET_ALLOW;
    case 'SCMP_ACT_ERRNO': return (RET_ERRNO | errno(errnoRet)) >>> 0;
    case 'SCMP_ACT_KILL': case 'SCMP_ACT_KILL_THREAD': return RET_KILL_THREAD;
    case 'SCMP_ACT_KILL_PROCESS': return RET_KILL_PROCESS;
    case 'SCMP_ACT_TRAP': return RET_TRAP;
    case 'SCMP_ACT_TRACE': return (RET_TRACE | errno(errnoRet)) >>> 0;
    case 'SCMP_ACT_LOG': return RET_LOG;
    default: throw new InvalidArgumentError(`seccomp: action ${JSON.stringify(action)} is not supported in the microVM guest`);
  }
}

interface Insn { code: number; jt: number | string; jf: number | string; k: number }
type Item = Insn | { label: string };

function u64(v: number | undefined, what: string): { hi: number; lo: number } {
  if (v === undefined || !Number.isSafeInteger(v) || v < 0) throw new InvalidArgumentError(`seccomp: ${what} ${String(v)} is not an unsigned integer`);
  const b = BigInt(v);
  return { hi: Number((b >> 32n) & 0xffffffffn), lo: Number(b & 0xffffffffn) };
}

/** Instructions that fall through when the argument comparison holds and jump to `fail` when not. */
function argCheck(a: NonNullable<OciSeccompSyscall['args']>[number], fail: string, ok: string): Item[] {
  if (!Number.isInteger(a.index) || a.index < 0 || a.index > 5) throw new InvalidArgumentError(`seccomp: argument index ${a.index} is not 0..5`);
  const ldHi: Insn = { code: LD_W_ABS, jt: 0, jf: 0, k: argOff(a.index, true) };
  const ldLo: Insn = { code: LD_W_ABS, jt: 0, jf: 0, k: argOff(a.index, false) };
  const op = a.op as SeccompOp;
  if (op === 'SCMP_CMP_MASKED_EQ') {
    const m = u64(a.value, 'mask');
    const d = u64(a.valueTwo ?? 0, 'valueTwo');
    return [ldHi, { code: AND_K, jt: 0, jf: 0, k: m.hi }, { code: JEQ, jt: 0, jf: fail, k: d.hi },
      ldLo, { code: AND_K, jt: 0, jf: 0, k: m.lo }, { code: JEQ, jt: 0, jf: fail, k: d.lo }];
  }
  const v = u64(a.value, 'value');
  switch (op) {
    case 'SCMP_CMP_EQ': return [ldHi, { code: JEQ, jt: 0, jf: fail, k: v.hi }, ldLo, { code: JEQ, jt: 0, jf: fail, k: v.lo }];
    case 'SCMP_CMP_NE': return [ldHi, { code: JEQ, jt: 0, jf: ok, k: v.hi }, ldLo, { code: JEQ, jt: fail, jf: ok, k: v.lo }, { label: ok }];
    case 'SCMP_CMP_GT': return [ldHi, { code: JGT, jt: ok, jf: 0, k: v.hi }, { code: JEQ, jt: 0, jf: fail, k: v.hi }, ldLo, { code: JGT, jt: ok, jf: fail, k: v.lo }, { label: ok }];
    case 'SCMP_CMP_GE': return [ldHi, { code: JGT, jt: ok, jf: 0, k: v.hi }, { code: JEQ, jt: 0, jf: fail, k: v.hi }, ldLo, { code: JGE, jt: ok, jf: fail, k: v.lo }, { label: ok }];
    case 'SCMP_CMP_LT': return [ldHi, { code: JGT, jt: fail, jf: 0, k: v.hi }, { code: JEQ, jt: 0, jf: ok, k: v.hi }, ldLo, { code: JGE, jt: fail, jf: ok, k: v.lo }, { label: ok }];
    case 'SCMP_CMP_LE': return [ldHi, { code: JGT, jt: fail, jf: 0, k: v.hi }, { code: JEQ, jt: 0, jf: ok, k: v.hi }, ldLo, { code: JGT, jt: fail, jf: ok, k: v.lo }, { label: ok }];
    default: throw new InvalidArgumentError(`seccomp: comparison ${JSON.stringify(a.op)} is not supported`);
  }
}

/** Resolves labels to relative jumps (8-bit: a rule block longer than 255 instructions is refused). */
interface Resolved { code: number; jt: number; jf: number; k: number }

function assemble(items: Item[]): Resolved[] {
  const pos = new Map<string, number>();
  const insns: Insn[] = [];
  for (const it of items) {
    if ('label' in it) pos.set(it.label, insns.length);
    else insns.push(it);
  }
  return insns.map((ins, i) => {
    const rel = (j: number | string): number => {
      if (typeof j === 'number') return j;
      const t = pos.get(j);
      if (t === undefined) throw new InvalidArgumentError(`seccomp: internal label ${j} missing`);
      const d = t - i - 1;
      if (d < 0 || d > 255) throw new InvalidArgumentError('seccomp: a rule is too long to compile (jump over 255 instructions)');
      return d;
    };
    return { code: ins.code, jt: rel(ins.jt), jf: rel(ins.jf), k: ins.k >>> 0 };
  });
}

/** The BPF program as bytes (struct sock_filter[]). */
export function compileSeccomp(profile: OciSeccomp): Buffer {
  const def = actionValue(profile.defaultAction, profile.defaultErrnoRet);
  // what a non-native arch or x32 call gets: the default, unless the default lets everything through
  const foreign = def === RET_ALLOW || def === RET_LOG || (def & 0xfff00000) === RET_TRACE ? (RET_ERRNO | EPERM) : def;
  const items: Item[] = [
    { code: LD_W_ABS, jt: 0, jf: 0, k: OFF_ARCH },
    { code: JEQ, jt: 1, jf: 0, k: AUDIT_ARCH_X86_64 },
    { code: RET_K, jt: 0, jf: 0, k: foreign },
    { code: LD_W_ABS, jt: 0, jf: 0, k: OFF_NR },
    { code: JGE, jt: 0, jf: 1, k: X32_SYSCALL_BIT },
    { code: RET_K, jt: 0, jf: 0, k: foreign },
  ];
  let n = 0;
  for (const rule of profile.syscalls ?? []) {
    const ret = actionValue(rule.action, rule.errnoRet ?? (rule.action === 'SCMP_ACT_ERRNO' ? profile.defaultErrnoRet : undefined));
    for (const name of rule.names ?? []) {
      const nr = X86_64_SYSCALLS[name];
      if (nr === undefined) continue;
      if (!rule.args?.length) {
        items.push({ code: JEQ, jt: 0, jf: 1, k: nr }, { code: RET_K, jt: 0, jf: 0, k: ret });
        continue;
      }
      const next = `next${++n}`;
      items.push({ code: JEQ, jt: 0, jf: next, k: nr });
      rule.args.forEach((a, i) => items.push(...argCheck(a, next, `ok${n}.${i}`)));
      items.push({ code: RET_K, jt: 0, jf: 0, k: ret }, { label: next }, { code: LD_W_ABS, jt: 0, jf: 0, k: OFF_NR });
    }
  }
  items.push({ code: RET_K, jt: 0, jf: 0, k: def });
  const insns = assemble(items);
  if (insns.length > MAX_BPF_INSNS) throw new InvalidArgumentError(`seccomp: the profile compiles to ${insns.length} instructions, more than the kernel's ${MAX_BPF_INSNS}`);
  const out = Buffer.alloc(insns.length * 8);
  insns.forEach((ins, i) => {
    out.writeUInt16LE(ins.code, i * 8);
    out.writeUInt8(ins.jt, i * 8 + 2);
    out.writeUInt8(ins.jf, i * 8 + 3);
    out.writeUInt32LE(ins.k, i * 8 + 4);
  });
  return out;
}

/**
 * Runs a compiled program on one syscall, as the kernel would (for tests): returns the SECCOMP_RET_*
 * value for `nr` with `args` (64-bit values as bigint) on `arch`.
 */
export function runSeccomp(prog: Buffer, nr: number, args: readonly bigint[] = [], arch = AUDIT_ARCH_X86_64): number {
  const data = Buffer.alloc(64);
  data.writeInt32LE(nr, OFF_NR);
  data.writeUInt32LE(arch, OFF_ARCH);
  args.forEach((a, i) => data.writeBigUInt64LE(BigInt.asUintN(64, a), 16 + 8 * i));
  let acc = 0;
  for (let pc = 0; pc < prog.length / 8;) {
    const code = prog.readUInt16LE(pc * 8);
    const jt = prog.readUInt8(pc * 8 + 2);
    const jf = prog.readUInt8(pc * 8 + 3);
    const k = prog.readUInt32LE(pc * 8 + 4);
    pc++;
    switch (code) {
      case LD_W_ABS: acc = data.readUInt32LE(k); break;
      case AND_K: acc = (acc & k) >>> 0; break;
      case JEQ: pc += acc === k ? jt : jf; break;
      case JGT: pc += acc > k ? jt : jf; break;
      case JGE: pc += acc >= k ? jt : jf; break;
      case RET_K: return k;
      default: throw new Error(`unknown BPF opcode 0x${code.toString(16)}`);
    }
  }
  throw new Error('BPF program fell off its end');
}

export const SECCOMP_RET = { ALLOW: RET_ALLOW, ERRNO: RET_ERRNO, KILL_PROCESS: RET_KILL_PROCESS, KILL_THREAD: RET_KILL_THREAD } as const;
