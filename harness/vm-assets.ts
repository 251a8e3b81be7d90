// Shared by the microVM tests: a busybox-static rootfs, OCI bundles, and a runner for bin/bulkhead-vm
// that gives the container pipes like conmon does.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, cpSync, existsSync, openSync, readFileSync, renameSync, rmSync, writeSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureGuestAssets, GUEST_SOURCE_DIR, guestAssetsCurrent } from '../src/vm/assets.ts';
import { testTempDir } from './test-dirs.ts';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const BULKHEAD_VM = join(REPO, 'bin/bulkhead-vm');
/** The node's installed guest assets (scripts/setup.sh); tests only read them. */
export const NODE_ASSETS = '/var/lib/bulkhead';

/**
 * Guest assets for the tests: BULKHEAD_VM_ASSETS or BULKHEAD_ROOT when set; else the node's when
 * their agent was built from this tree's guest/ sources; else a private copy in the temp dir
 * (the node's kernel linked, agent and initramfs built from this tree), keyed by the sources (and
 * assets.ts, which makes the initramfs), so a changed agent is tested without touching /var/lib/bulkhead.
 */
async function testAssets(): Promise<string> {
  const explicit = process.env.BULKHEAD_VM_ASSETS || process.env.BULKHEAD_ROOT;
  if (explicit) return explicit;
  if (!existsSync(join(NODE_ASSETS, 'vm/kernel')) || await guestAssetsCurrent(NODE_ASSETS)) return NODE_ASSETS;
  // assets.ts: the initramfs's /init and modules (a copy built before a module was added would lack it)
  const key = createHash('sha256').update(readFileSync(join(GUEST_SOURCE_DIR, 'agent.c'))).update(readFileSync(join(GUEST_SOURCE_DIR, 'console-helper.c'))).update(readFileSync(join(GUEST_SOURCE_DIR, 'vm-shim.c')))
    .update(readFileSync(join(REPO, 'src/vm/assets.ts'))).digest('hex').slice(0, 12);
  const dir = join(tmpdir(), `bulkhead-vm-test-assets-${key}`);
  if (existsSync(join(dir, 'vm/assets.json'))) return dir;
  const tmp = mkdtempSync(`${dir}.tmp-`);
  mkdirSync(join(tmp, 'vm'));
  symlinkSync(join(NODE_ASSETS, 'vm/kernel'), join(tmp, 'vm/kernel'));
  if (existsSync(join(NODE_ASSETS, 'vm/accel.json'))) cpSync(join(NODE_ASSETS, 'vm/accel.json'), join(tmp, 'vm/accel.json'));
  await ensureGuestAssets(tmp);
  try { renameSync(tmp, dir); } catch { rmSync(tmp, { recursive: true, force: true }); } // another test file built it first
  return dir;
}

/** Guest assets root for VM tests (see testAssets); exported to child processes as $BULKHEAD_VM_ASSETS. */
export const ASSETS = process.getuid?.() === 0 && spawnSync('gcc', ['--version']).status === 0 ? await testAssets() : (process.env.BULKHEAD_VM_ASSETS ?? NODE_ASSETS);
process.env.BULKHEAD_VM_ASSETS = ASSETS;

/** Why VM tests cannot run here, or undefined. */
export function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  if (spawnSync('qemu-system-x86_64', ['--version']).status !== 0) return 'qemu-system-x86_64 is not installed';
  if (!existsSync(join(ASSETS, 'vm/initramfs.cpio'))) return `no guest assets in ${ASSETS}/vm; run bin/bulkhead-vm --assets ${ASSETS} setup`;
  return undefined;
}

export function makeRootfs(dir: string): string {
  const root = join(dir, 'rootfs');
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root']) mkdirSync(join(root, d), { recursive: true });
  cpSync('/bin/busybox', join(root, 'bin/busybox'));
  for (const c of ['sh', 'ls', 'cat', 'echo', 'uname', 'sleep', 'id', 'hostname', 'dd', 'env', 'tty', 'test', 'true', 'false', 'kill', 'grep', 'head', 'mount', 'touch', 'stty', 'wc', 'unshare', 'ps']) {
    symlinkSync('busybox', join(root, 'bin', c));
  }
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n');
  return root;
}

export interface BundleOpts {
  args: string[];
  terminal?: boolean;
  memoryLimit?: number;
  annotations?: Record<string, string>;
  hostname?: string;
  rootfs: string;
  /** Merged into process (capabilities, noNewPrivileges, user, ...). */
  process?: Record<string, unknown>;
  /** linux.seccomp of the spec. */
  seccomp?: unknown;
  /** Merged into linux.resources. */
  resources?: Record<string, unknown>;
}

export function makeBundle(dir: string, name: string, o: BundleOpts): string {
  const b = join(dir, name);
  mkdirSync(b, { recursive: true });
  const spec = {
    ociVersion: '1.0.2',
    process: { terminal: o.terminal ?? false, user: { uid: 0, gid: 0 }, args: o.args, env: ['PATH=/bin', 'TERM=xterm'], cwd: '/', ...(o.process ?? {}) },
    root: { path: o.rootfs },
    hostname: o.hostname ?? name,
    annotations: o.annotations ?? {},
    linux: { resources: { ...(o.memoryLimit ? { memory: { limit: o.memoryLimit } } : {}), ...(o.resources ?? {}) }, ...(o.seccomp ? { seccomp: o.seccomp } : {}) },
  };
  writeFileSync(join(b, 'config.json'), JSON.stringify(spec));
  return b;
}

/** A test's temporary root, removed with what uses it by a later test if this process dies first (test-dirs.ts). */
export function tempDir(prefix: string): string {
  return testTempDir(prefix);
}

export interface RunResult { code: number | null; stdout: string; stderr: string }

/**
 * Asserts that a bulkhead-vm run (`vm`, `createWithPipes`) exited with `code` (0 unless given; 'failed':
 * any other than 0); the failure's message says what (`what`) and shows its stderr.
 */
export function assertExit(r: { code: number | null; stderr?: string; err?: () => string }, code: number | 'failed' = 0, what = ''): void {
  const stderr = (r.stderr ?? r.err?.() ?? '').trim();
  const msg = `${what ? `${what}: ` : ''}bulkhead-vm exited ${r.code}; stderr: ${stderr ? stderr.slice(-4000) : '(empty)'}`;
  if (code === 'failed') assert.notEqual(r.code, 0, msg);
  else assert.equal(r.code, code, msg);
}

/** Runs bulkhead-vm to completion (with optional stdin), capturing output. */
export function vm(state: string, args: string[], input?: string, timeoutMs = 240_000): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const p = spawn(BULKHEAD_VM, ['--root', state, '--assets', ASSETS, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, BULKHEAD_VM_ACCEL: process.env.BULKHEAD_VM_ACCEL ?? 'auto' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
    p.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    p.stdin.on('error', () => {});
    p.stdin.end(input ?? '');
    const t = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`bulkhead-vm ${args.join(' ')} timed out; stderr: ${stderr}`)); }, timeoutMs);
    p.on('close', (code) => { clearTimeout(t); resolvePromise({ code, stdout, stderr }); });
  });
}

/**
 * `create` the way conmon runs it: the container's stdio are pipes whose other ends we keep
 * (the supervisor inherits them and outlives create).
 */
export interface Created { stdin: { write(s: string): void; close(): void }; out: () => string; err: () => string; create: ChildProcess; pidFile: string; done: Promise<void> }

export function createWithPipes(state: string, id: string, bundle: string, assets = ASSETS): Promise<Created & { code: number | null }> {
  return new Promise((resolvePromise) => {
    const pidFile = join(bundle, 'pid');
    // Node destroys a child's stdin pipe when the child exits; the supervisor outlives create, so
    // its stdin is a FIFO we hold open (as conmon holds its pipe).
    const fifo = join(bundle, 'stdin.fifo');
    spawnSync('mkfifo', [fifo]);
    const inFd = openSync(fifo, 'r+');
    const stdin = { write: (s: string): void => { writeSync(inFd, s); }, close: (): void => { closeSync(inFd); } };
    const p = spawn(BULKHEAD_VM, ['--root', state, '--assets', assets, 'create', '--bundle', bundle, '--pid-file', pidFile, id], { stdio: [inFd, 'pipe', 'pipe'], env: { ...process.env, BULKHEAD_VM_ACCEL: process.env.BULKHEAD_VM_ACCEL ?? 'auto' } });
    let stdout = '';
    let stderr = '';
    let ended = 0;
    let markDone: () => void = () => {};
    const done = new Promise<void>((r) => { markDone = r; });
    const onEnd = (): void => { if (++ended === 2) markDone(); };
    p.stdout!.on('data', (b: Buffer) => { stdout += b.toString(); });
    p.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
    p.stdout!.on('end', onEnd);
    p.stderr!.on('end', onEnd);
    p.on('exit', (code) => resolvePromise({ code, stdin, out: () => stdout, err: () => stderr, create: p, pidFile, done }));
  });
}

export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}
