// Which guest pages a microVM clone copies (its own copies of template pages: "guest RAM: own
// copies (CoW)" of bench/density.ts --breakdown), by what the guest uses each page for. A sandbox
// (template path, no volumes) is started with bulkhead-vm as conmon would, then optionally an app
// container; after --settle-ms the host's /proc/PID/pagemap of QEMU's guest RAM mapping gives the
// guest-physical pages the clone copied, and the guest's /proc/kpageflags (read by an exec with
// CAP_SYS_ADMIN) says what each is: free (buddy), slab, page tables, anonymous (process memory),
// page cache, or none of these (kernel data: struct pages, per-CPU areas, vmalloc, reserved). Also
// TCG's translation buffer (QEMU's one anonymous rwx mapping, resident) after each step.
//
//   node bench/vm-dirty.ts [--app] [--settle-ms 3000]
//
// Needs root, QEMU and the guest assets (harness/vm-assets.ts). Prints figures, asserts nothing.
import { closeSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createWithPipes, makeBundle, makeRootfs, tempDir, vm } from '../harness/vm-assets.ts';
import { podDir } from '../src/vm/state.ts';

const { values } = parseArgs({ options: { app: { type: 'boolean', default: false }, 'settle-ms': { type: 'string', default: '3000' } } });
const dir = tempDir('bulkhead-bench-vmdirty-');
const root = join(dir, 'state');
const id = `dirty-${process.pid}`;
const READ_CAPS = ['CAP_SYS_ADMIN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH'];
const caps = { bounding: READ_CAPS, effective: READ_CAPS, permitted: READ_CAPS };
const started: string[] = [];
try {
  const rootfs = makeRootfs(dir);
  const sb = makeBundle(dir, 'sb', { rootfs, annotations: { 'io.kubernetes.cri.container-type': 'sandbox', 'io.bulkhead.vm.volumes': 'none' }, args: ['sleep', '100000'], process: { capabilities: caps } });
  /** Resident KiB of QEMU's translation buffer (TCG), or 0 under KVM. */
  const tb = (): number => {
    const pid = (JSON.parse(readFileSync(join(podDir(root, id), 'vmm.proc'), 'utf8')) as { pid: number }).pid;
    let kb = 0, inTb = false;
    for (const l of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
      const h = /^[0-9a-f]+-[0-9a-f]+ (\S{4}) \S+ \S+ \d+\s*(.*)$/.exec(l);
      if (h) { inTb = h[1]!.includes('x') && h[2]!.trim() === ''; continue; }
      const r = /^Rss:\s+(\d+) kB$/.exec(l);
      if (r && inTb) kb += Number(r[1]);
    }
    return kb;
  };
  const steps: string[] = [];
  const c = await createWithPipes(root, id, sb);
  if (c.code !== 0) throw new Error(c.err());
  started.push(id);
  steps.push(`sandbox created (restore, identity, the guest's create) ${(tb() / 1024).toFixed(1)}`);
  if ((await vm(root, ['start', id])).code !== 0) throw new Error('start failed');
  steps.push(`sandbox started ${(tb() / 1024).toFixed(1)}`);
  if (values.app) {
    const app = `${id}-app`;
    const ab = makeBundle(dir, 'app', { rootfs, annotations: { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': id }, args: ['sleep', '100000'] });
    const a = await createWithPipes(root, app, ab);
    if (a.code !== 0) throw new Error(a.err());
    started.unshift(app);
    steps.push(`app created ${(tb() / 1024).toFixed(1)}`);
    if ((await vm(root, ['start', app])).code !== 0) throw new Error('app start failed');
    steps.push(`app started ${(tb() / 1024).toFixed(1)}`);
  }
  await new Promise((r) => setTimeout(r, Number(values['settle-ms'])));
  steps.push(`after ${values['settle-ms']} ms ${(tb() / 1024).toFixed(1)}`);
  const pd = podDir(root, id);
  const pid = (JSON.parse(readFileSync(join(pd, 'vmm.proc'), 'utf8')) as { pid: number }).pid;
  const map = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').find((l) => /\/templates\/[0-9a-f]{32}\/memory$/.test(l));
  if (!map) throw new Error('not a clone: no template memory mapping');
  const [start, end] = map.split(' ')[0]!.split('-').map((h) => BigInt(`0x${h}`)) as [bigint, bigint];
  const pages = Number((end - start) / 4096n);
  const pm = Buffer.alloc(pages * 8);
  const fd = openSync(`/proc/${pid}/pagemap`, 'r');
  try { readSync(fd, pm, 0, pm.length, Number(start / 4096n) * 8); } finally { closeSync(fd); }
  const copied: number[] = [];
  let filePages = 0;
  for (let i = 0; i < pages; i++) {
    const e = pm.readBigUInt64LE(i * 8);
    if (!(e >> 63n & 1n)) continue;
    if (e >> 61n & 1n) filePages++; else copied.push(i);
  }
  // the guest's page flags of every frame (an exec: itself a few pages, after the host's snapshot)
  const r = await vm(root, ['exec', id, 'sh', '-c', `dd if=/proc/kpageflags bs=8 count=${pages} 2>/dev/null | od -An -v -tx8`]);
  if (r.code !== 0) throw new Error(`kpageflags: ${r.stderr}`);
  const flags = r.stdout.split(/\s+/).filter(Boolean).map((h) => BigInt(`0x${h}`));
  const bit = (f: bigint, n: number): boolean => (f >> BigInt(n) & 1n) === 1n;
  const kind = (f: bigint | undefined): string => {
    if (f === undefined) return 'beyond kpageflags';
    if (bit(f, 10)) return 'free (buddy)';
    if (bit(f, 7)) return 'slab';
    if (bit(f, 26)) return 'page table';
    if (bit(f, 12)) return 'anonymous (process memory)';
    if (bit(f, 5) || bit(f, 3)) return 'page cache';
    if (bit(f, 16) || bit(f, 15)) return 'compound (other)';
    return 'no flags (kernel data, struct pages, vmalloc, per-CPU, reserved)';
  };
  const by = new Map<string, number>();
  for (const i of copied) { const k = kind(flags[i]); by.set(k, (by.get(k) ?? 0) + 1); }
  console.log(`clone ${values.app ? 'sandbox + app container' : 'sandbox only'}, ${values['settle-ms']} ms after start: ${copied.length} pages copied (${(copied.length / 256).toFixed(1)} MiB), ${filePages} template file pages mapped`);
  for (const [k, n] of [...by].sort((a, b) => b[1] - a[1])) console.log(`  ${k.padEnd(66)} ${String(n).padStart(5)} pages  ${(n / 256).toFixed(2)} MiB`);
  console.log(`TCG translation buffer resident (MiB) after each step: ${steps.join('; ')}`);
} finally {
  for (const s of started) await vm(root, ['delete', '--force', s]).catch(() => {});
  rmSync(dir, { recursive: true, force: true });
}
