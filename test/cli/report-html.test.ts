// report.html as a browser renders it: Debian's headless Chromium opens the file (driven over the
// DevTools pipe, every network use cut off), the test reads the table cells and chart elements
// from the live DOM and checks them against report.json, and takes a screenshot (kept in the
// report's directory; BULKHEAD_REPORT_SCREENSHOT=PATH copies it out to be looked at).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BIN } from '../fixtures/cli.ts';
import { chromiumSkipReason, HeadlessChromium } from '../fixtures/chromium.ts';
import { parseProbe } from '../../src/cli/report-probe.ts';
import { renderHtml, writeCharts, type Report } from '../../src/cli/report.ts';

const skip = chromiumSkipReason();

interface Dom {
  title: string;
  scripts: number;
  images: number;
  tables: Record<string, string[][]>;
  charts: { name: string; caption: string; width: number; height: number; title: string; axisLabels: string[]; marks: number; cellTexts: string[] }[];
}

const READ_DOM = `(() => ({
  title: document.title,
  scripts: document.scripts.length,
  images: document.images.length,
  tables: Object.fromEntries([...document.querySelectorAll('table')].map((t) => [t.id, [...t.rows].map((r) => [...r.cells].map((c) => c.textContent))])),
  charts: [...document.querySelectorAll('figure.chart')].map((f) => {
    const svg = f.querySelector('svg');
    const box = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
    return {
      name: f.dataset.chart, caption: f.querySelector('figcaption')?.textContent ?? '',
      width: box.width, height: box.height,
      title: [...f.querySelectorAll('.role-title-text text')].map((t) => t.textContent).join(' '),
      axisLabels: [...f.querySelectorAll('.role-axis-label text')].map((t) => t.textContent),
      marks: f.querySelectorAll('.role-mark path, .role-mark rect').length,
      cellTexts: [...f.querySelectorAll('.mark-text.role-mark text')].map((t) => t.textContent),
    };
  }),
}))()`;

async function readPage(file: string, screenshot?: string): Promise<Dom> {
  const chromium = await HeadlessChromium.start();
  try {
    const page = await chromium.open(pathToFileURL(file).href);
    const dom = await chromium.evaluate<Dom>(page, READ_DOM);
    if (screenshot) {
      const png = await chromium.screenshot(page);
      await writeFile(screenshot, png);
    }
    return dom;
  } finally {
    await chromium.close();
  }
}

const row = (t: string[][] | undefined, label: string): string[] => {
  const r = t?.find((cells) => cells[0] === label);
  assert.ok(r, `a row "${label}"`);
  return r.slice(1);
};

test('report.html in headless Chromium: the table cells and the charts match report.json', { skip }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-report-html-'));
  try {
    const out = join(dir, 'out');
    const child = spawn(BIN, ['--json', '--root', join(dir, 'root'), '--run-dir', join(dir, 'run'), 'report', '--out', out, '--handlers', 'runc,gvisor', '--runs', '2', '--density', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearTimeout(timer);
    assert.equal(code, 0, stderr);
    const r = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    assert.deepEqual(JSON.parse(stdout), r, '--json prints report.json');
    const shot = join(out, 'screenshot.png');
    const dom = await readPage(join(out, 'report.html'), shot);
    if (process.env.BULKHEAD_REPORT_SCREENSHOT) await copyFile(shot, process.env.BULKHEAD_REPORT_SCREENSHOT);

    assert.equal(dom.title, 'Bulkhead report');
    assert.equal(dom.scripts, 0);
    const labels = r.handlers.map((h) => `${h.handler} (${h.isolation})`);
    assert.deepEqual(labels, ['runc (process)', 'gvisor (user-kernel)']);
    for (const id of ['facts', 'ops', 'reach', 'cost']) assert.deepEqual(dom.tables[id]?.[0], ['', ...labels], `${id}: a column per handler`);
    assert.deepEqual(row(dom.tables.facts, 'kernel seen'), r.handlers.map((h) => h.probe!.kernel));
    assert.deepEqual(row(dom.tables.facts, 'no_new_privs'), r.handlers.map((h) => (h.probe!.noNewPrivs ? 'on' : 'off')));
    for (const op of r.handlers[0]!.probe!.ops) {
      assert.deepEqual(row(dom.tables.ops, `${op.name}: ${op.what}`), r.handlers.map((h) => {
        const o = h.probe!.ops.find((x) => x.name === op.name)!;
        return o.allowed ? 'allowed' : `blocked ${o.errno}`.trim();
      }), op.name);
    }
    assert.deepEqual(row(dom.tables.cost, 'start p50 / p99 (s)'), r.handlers.map((h) => `${h.startP50!.toFixed(2)} / ${h.startP99!.toFixed(2)} (n=2)`));
    assert.deepEqual(row(dom.tables.cost, 'PSS per pod (MiB)'), r.handlers.map((h) => (h.density!.pssPerPodBytes! / 1048576).toFixed(1)));
    assert.deepEqual(row(dom.tables.cost, 'left after removal'), ['nothing', 'nothing']);

    // the charts: rendered (a size on the page), titled, one axis label per handler, the matrix's cells as report.json has them
    assert.deepEqual(dom.charts.map((c) => c.name), ['start-latency', 'memory', 'syscalls', 'blocks']);
    for (const c of dom.charts) {
      assert.ok(c.width > 100 && c.height > 100, `${c.name} is drawn: ${c.width}x${c.height}`);
      assert.ok(c.title.length > 0 && c.caption.length > 0, c.name);
      assert.ok(c.marks >= labels.length, `${c.name}: ${c.marks} marks`);
      for (const l of labels) assert.ok(c.axisLabels.includes(l), `${c.name} labels ${l}: ${c.axisLabels.join(', ')}`);
    }
    const blocks = dom.charts.find((c) => c.name === 'blocks')!;
    assert.deepEqual(blocks.cellTexts, r.handlers.flatMap((h) => h.probe!.ops.map((o) => (o.allowed ? 'allowed' : o.errno || 'blocked'))));
    for (const op of r.handlers[0]!.probe!.ops) assert.ok(blocks.axisLabels.includes(op.name), op.name);
    const start = dom.charts.find((c) => c.name === 'start-latency')!;
    assert.equal(start.marks, 4, 'p50 and p99 bars for each handler');
    const png = await readFile(shot);
    assert.ok(png.length > 50_000, `a screenshot with content: ${png.length} bytes`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('in Chromium, what a sandbox or a handler name carries stays text: no element, no script', { skip }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-report-html-'));
  try {
    const evil = '<img src=x onerror="document.title=1"><script>document.title=2</script>';
    const probe = parseProbe(`kernel=${evil}\nop.mount=1|mount: Operation not permitted\nsyscall_loop=0m 0.40s\nend=ok`);
    const r: Report = {
      version: 1, generatedAt: 'now', hostKernel: 'h', targets: [], notes: [],
      handlers: [{ handler: evil, isolation: 'process', available: true, probe, startSeconds: [0.2], startP50: 0.2, startP99: 0.2 }],
    };
    const file = join(dir, 'report.html');
    await writeFile(file, renderHtml(r, await writeCharts(r, dir)));
    const dom = await readPage(file);
    assert.equal(dom.title, 'Bulkhead report', 'no handler ran');
    assert.equal(dom.scripts, 0);
    assert.equal(dom.images, 0);
    assert.deepEqual(row(dom.tables.facts, 'kernel seen'), [evil]);
    assert.equal(dom.tables.facts?.[0]?.[1], `${evil} (process)`);
    assert.ok(dom.charts.every((c) => c.axisLabels.some((l) => l.startsWith('<img'))), 'the charts show the name as text');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
