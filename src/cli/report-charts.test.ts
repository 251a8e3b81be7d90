import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chartSpecs } from './report-charts.ts';
import { parseProbe } from './report-probe.ts';
import { inlineSvg, renderHtml, writeCharts, type Report } from './report.ts';

const probe = (ops: string, loop: string): ReturnType<typeof parseProbe> =>
  parseProbe(`kernel=k\n${ops}\nsyscall_loop=${loop}\nend=ok`);

export const SAMPLE: Report = {
  version: 1, generatedAt: 'now', hostKernel: 'h', targets: [], notes: [],
  handlers: [
    { handler: 'runc', isolation: 'process', available: true, startSeconds: [0.3, 0.4], startP50: 0.3, startP99: 0.4, idlePodBytes: 2 * 1048576,
      probe: probe('op.mount=1|mount: permission denied (are you root?)\nop.chroot=0|', '0m 0.40s') },
    { handler: 'x<script>alert(1)</script>', isolation: 'user-kernel', available: true, startSeconds: [0.9], startP50: 0.9, startP99: 1.2, idlePodBytes: 40 * 1048576,
      probe: probe('op.mount=1|mount: Operation not permitted\nop.chroot=1|chroot: Function not implemented', '0m 8.00s') },
    { handler: 'microvm', isolation: 'vm', available: false, startSeconds: [] },
  ],
};

test('charts: one per measured quantity, a handler with nothing measured has no bar', () => {
  const charts = chartSpecs(SAMPLE);
  assert.deepEqual(charts.map((c) => c.name), ['start-latency', 'memory', 'syscalls', 'blocks']);
  const values = (n: string): { handler: string }[] => (charts.find((c) => c.name === n)!.spec as { data: { values: { handler: string }[] } }).data.values;
  assert.equal(values('start-latency').length, 4, 'p50 and p99 of two handlers');
  assert.ok(values('start-latency').every((v) => !v.handler.startsWith('microvm')));
  const blocks = values('blocks') as unknown as { handler: string; op: string; outcome: string; label: string }[];
  assert.deepEqual(blocks.filter((b) => b.op === 'chroot').map((b) => [b.outcome, b.label]), [['allowed', 'allowed'], ['blocked', 'ENOSYS']]);
  assert.deepEqual(chartSpecs({ handlers: [] }), []);
});

test('writeCharts renders SVG and PNG files; a hostile handler name stays text in the SVG and the HTML', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-charts-test-'));
  try {
    const charts = await writeCharts(SAMPLE, dir);
    assert.deepEqual((await readdir(join(dir, 'charts'))).sort(), ['blocks.png', 'memory.png', 'start-latency.png', 'syscalls.png']);
    for (const f of ['report.png', 'charts/blocks.png']) {
      const png = await readFile(join(dir, f));
      assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${f} is a PNG`);
      assert.ok(png.length > 2000 && png.length < 1_000_000, `${f}: ${png.length} bytes`);
    }
    for (const c of charts) {
      assert.match(c.svg, /^<svg /);
      assert.doesNotMatch(c.svg, /<script|<foreignObject|href=/i, c.name);
      assert.match(c.svg, /runc \(process\)/, `${c.name} names runc`);
    }
    assert.match(charts.find((c) => c.name === 'blocks')!.svg, /x&lt;script&gt;alert\(1\)&lt;\/script&gt;|x&#60;script/);
    const html = renderHtml(SAMPLE, charts);
    assert.doesNotMatch(html, /<script|<link|src=|https?:\/\//, 'self-contained: no scripts, nothing fetched, no namespace URLs');
    assert.equal(html.match(/<figure class="chart"/g)?.length, 4);
    assert.match(html, /<figure class="chart" id="chart-blocks" data-chart="blocks"><svg [^>]*>/);
    assert.doesNotMatch(inlineSvg('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="1">'), /xmlns/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the charting libraries load only when a report draws charts, not with the CLI\'s commands (bulkhead --help loads them all)', () => {
  const code = `const m = require('node:module');
m.registerHooks({ resolve(s, c, n) { if (/^(vega|@resvg)/.test(s)) process.stdout.write('LOADED ' + s + '\\n'); return n(s, c); } });
import(${JSON.stringify(new URL('./commands.ts', import.meta.url).href)}).then(async (c) => { await c.loadCommands(); process.stdout.write('done\\n'); });`;
  const r = spawnSync(process.execPath, ['--disable-warning=ExperimentalWarning', '-e', code], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'done', r.stdout);
});
