// The host processes of one idle microVM pod, one by one: PSS, private memory and RSS of the pod
// supervisor (_vmd, Node.js), each container's shim (C), virtiofsd and QEMU, for the QEMU/V8 settings
// the code uses now; and, with --vmd-flags, for other V8 flags of the supervisor (measured, not kept).
//
//   node bench/vm-lean.ts [--containers 2] [--vmd-flags="--max-semi-space-size=1;--jitless"] [--settle-ms 4000]
//
// Each variant boots one pod VM (bin/bulkhead-vm directly, as conmon drives it), waits, reads
// /proc/PID/smaps_rollup, and deletes the pod.
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { vmdNodeArgs } from '../src/vm/cmd/common.ts';
import { createWithPipes, makeBundle, makeRootfs, REPO, skipReason, tempDir, vm } from '../harness/vm-assets.ts';

const { values } = parseArgs({ options: { containers: { type: 'string', default: '2' }, 'vmd-flags': { type: 'string', default: '' }, 'settle-ms': { type: 'string', default: '4000' } } });
const skip = skipReason();
if (skip) { console.log(`skipped: ${skip}`); process.exit(0); }

interface Mem { pss: number; priv: number; rss: number }
function mem(pid: number): Mem {
  const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(t)?.[1] ?? 0);
  return { pss: kb('Pss'), priv: kb('Private_Clean') + kb('Private_Dirty'), rss: kb('Rss') };
}
function children(pid: number): number[] {
  const out: number[] = [];
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    for (const k of readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').split(' ')) if (/^\d+$/.test(k)) out.push(Number(k), ...children(Number(k)));
  }
  return out;
}
const mib = (kb: number): string => (kb / 1024).toFixed(1);

async function variant(label: string, vmdFlags: string): Promise<void> {
  const dir = tempDir('bulkhead-vm-lean-');
  const root = join(dir, 'state');
  const rootfs = makeRootfs(dir);
  const sb = `lean-sb-${process.pid}`;
  const ids = [sb];
  const env = process.env.BULKHEAD_VMD_V8_FLAGS;
  process.env.BULKHEAD_VMD_V8_FLAGS = vmdFlags;
  try {
    // Node's compile cache is per set of V8 flags: warm it for these (as the node's first pod does for the next)
    spawnSync(process.execPath, [...vmdNodeArgs({ BULKHEAD_VMD_V8_FLAGS: vmdFlags }), join(REPO, 'src/vm/cli.ts'), '_vmd', '--help'],
      { env: { ...process.env, NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? '/var/cache/bulkhead/node' }, stdio: 'ignore', timeout: 60_000 });
    const t0 = Date.now();
    const c = await createWithPipes(root, sb, makeBundle(dir, 'sb', { rootfs, annotations: { 'io.kubernetes.cri.container-type': 'sandbox' }, args: ['sleep', '3600'] }));
    if (c.code !== 0) throw new Error(c.err());
    const boot = Date.now() - t0;
    await vm(root, ['start', sb]);
    for (let i = 1; i < Number(values.containers); i++) {
      const id = `lean-c${i}-${process.pid}`;
      const cc = await createWithPipes(root, id, makeBundle(dir, `c${i}`, { rootfs, annotations: { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': sb }, args: ['sleep', '3600'] }));
      if (cc.code !== 0) throw new Error(cc.err());
      ids.push(id);
      await vm(root, ['start', id]);
    }
    await new Promise((r) => setTimeout(r, Number(values['settle-ms'])));
    const pods = join(root, 'pods');
    const podDir = join(pods, readdirSync(pods)[0]!);
    const rows: [string, number[]][] = [];
    const proc = (role: string): number => (JSON.parse(readFileSync(join(podDir, `${role}.proc`), 'utf8')) as { pid: number }).pid;
    rows.push(['vmd (Node.js)', [proc('vmd')]]);
    rows.push(['qemu', [proc('vmm')]]);
    const fsd = proc('fsd');
    rows.push(['virtiofsd (2)', [fsd, ...children(fsd)]]);
    rows.push([`shims (${ids.length})`, ids.map((id) => (JSON.parse(readFileSync(join(root, id, 'state.json'), 'utf8')) as { pid: number }).pid)]);
    let total = 0;
    console.log(`\n${label}: create of the sandbox (boot) ${boot} ms`);
    console.log(`  ${'process'.padEnd(16)}${'PSS MiB'.padStart(9)}${'private'.padStart(9)}${'RSS'.padStart(8)}`);
    for (const [name, pids] of rows) {
      const m = pids.map(mem).reduce((a, b) => ({ pss: a.pss + b.pss, priv: a.priv + b.priv, rss: a.rss + b.rss }));
      total += m.pss;
      console.log(`  ${name.padEnd(16)}${mib(m.pss).padStart(9)}${mib(m.priv).padStart(9)}${mib(m.rss).padStart(8)}`);
    }
    console.log(`  ${'total (no conmon)'.padEnd(16)}${mib(total).padStart(9)}`);
  } finally {
    if (env === undefined) delete process.env.BULKHEAD_VMD_V8_FLAGS; else process.env.BULKHEAD_VMD_V8_FLAGS = env;
    for (const id of ids.reverse()) await vm(root, ['delete', '--force', id]).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

await variant('as configured', '');
for (const f of values['vmd-flags'].split(';').map((s) => s.trim()).filter(Boolean)) await variant(`vmd with ${f}`, f);
