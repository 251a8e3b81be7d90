// The report's charts: Vega-Lite specs built from report.json's record, compiled and rendered to
// SVG by Vega in Node (no canvas, no browser), and to PNG by resvg. Only `bulkhead report` loads
// this module (commands.ts loads a command's module when it runs), so the charting libraries never
// slow the CLI's other commands. Every value a chart shows comes from the report; text that came
// from a sandbox is escaped by Vega's SVG writer (and is a fixed errno name or a handler name).
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { Resvg } from '@resvg/resvg-js';
import { SYSCALL_LOOP_BYTES } from './report-probe.ts';

/** The parts of report.json the charts read (report.ts's Report satisfies it). */
export interface ChartInput {
  handlers: readonly {
    handler: string;
    isolation: string;
    startP50?: number;
    startP99?: number;
    idlePodBytes?: number;
    density?: { pods: number; pssPerPodBytes?: number };
    probe?: { syscallLoopSeconds: number; ops: readonly { name: string; what: string; allowed: boolean; errno: string }[] };
  }[];
}

export type ChartName = 'start-latency' | 'memory' | 'syscalls' | 'blocks';

export interface Chart {
  name: ChartName;
  title: string;
  spec: TopLevelSpec;
}

const FONT = 'DejaVu Sans, Liberation Sans, Arial, sans-serif';
const CONFIG = { font: FONT, background: 'white', view: { stroke: null }, axis: { labelFontSize: 11, titleFontSize: 11 }, legend: { labelFontSize: 11, titleFontSize: 11 }, title: { fontSize: 13, anchor: 'start' as const } };
const MIB = 1048576;

/** A handler's label: its name and isolation, e.g. "gvisor (user-kernel)". */
export const handlerLabel = (h: { handler: string; isolation: string }): string => `${h.handler} (${h.isolation})`;

/** Bars with their value written above each (a small bar stays readable beside a tall one). */
function bars(encoding: Record<string, unknown>, field: string, format: string): { layer: NonNullable<Extract<TopLevelSpec, { layer: unknown }>['layer']> } {
  const { color: _c, ...rest } = encoding;
  return {
    layer: [
      { mark: 'bar', encoding },
      { mark: { type: 'text', dy: -5, fontSize: 9, color: '#333' }, encoding: { ...rest, text: { field, type: 'quantitative', format } } },
    ],
  } as { layer: NonNullable<Extract<TopLevelSpec, { layer: unknown }>['layer']> };
}

/** The charts this report has data for, in the HTML's order; a chart with no data is left out. */
export function chartSpecs(r: ChartInput): Chart[] {
  const order = r.handlers.map(handlerLabel);
  const x = { field: 'handler', type: 'nominal' as const, sort: order, title: null, axis: { labelAngle: -30, labelLimit: 320 } };
  const charts: Chart[] = [];

  const start = r.handlers.flatMap((h) => [
    ...(h.startP50 !== undefined ? [{ handler: handlerLabel(h), stat: 'p50', seconds: h.startP50 }] : []),
    ...(h.startP99 !== undefined ? [{ handler: handlerLabel(h), stat: 'p99', seconds: h.startP99 }] : []),
  ]);
  if (start.length) {
    charts.push({
      name: 'start-latency', title: 'Start latency: run --rm IMAGE true (s)',
      spec: {
        title: 'Start latency, p50 and p99 (s)', width: { step: 36 }, height: 180, config: CONFIG, data: { values: start },
        ...bars({ x, xOffset: { field: 'stat' }, y: { field: 'seconds', type: 'quantitative', title: 'seconds' }, color: { field: 'stat', title: null, scale: { range: ['#4c78a8', '#f58518'] } } }, 'seconds', '.2f'),
      },
    });
  }

  const mem = r.handlers.flatMap((h) => [
    ...(h.density?.pssPerPodBytes !== undefined ? [{ handler: handlerLabel(h), what: 'PSS per pod (N idle pods at once)', mib: h.density.pssPerPodBytes / MIB }] : []),
    ...(h.idlePodBytes !== undefined ? [{ handler: handlerLabel(h), what: 'working set (PodSandboxStats)', mib: h.idlePodBytes / MIB }] : []),
  ]);
  if (mem.length) {
    charts.push({
      name: 'memory', title: 'Memory per idle pod (MiB)',
      spec: {
        title: 'Memory per idle pod (MiB)', width: { step: 36 }, height: 180, config: CONFIG, data: { values: mem },
        ...bars({ x, xOffset: { field: 'what' }, y: { field: 'mib', type: 'quantitative', title: 'MiB' }, color: { field: 'what', title: null, legend: { orient: 'bottom', direction: 'vertical', labelLimit: 320 } } }, 'mib', '.1f'),
      },
    });
  }

  const sys = r.handlers.flatMap((h) => {
    const t = h.probe?.syscallLoopSeconds;
    return t !== undefined && t > 0 ? [{ handler: handlerLabel(h), kcalls: (SYSCALL_LOOP_BYTES * 2) / t / 1000 }] : [];
  });
  if (sys.length) {
    charts.push({
      name: 'syscalls', title: 'Syscall-heavy throughput (thousand read/write calls per second)',
      spec: {
        title: 'Syscall-heavy loop (k calls/s)', width: { step: 40 }, height: 180, config: CONFIG, data: { values: sys },
        ...bars({ x, y: { field: 'kcalls', type: 'quantitative', title: 'thousand calls/s' }, color: { value: '#54a24b' } }, 'kcalls', ',.0f'),
      },
    });
  }

  const probed = r.handlers.filter((h) => h.probe);
  const ops = probed.flatMap((h) => h.probe!.ops.map((o) => ({ handler: handlerLabel(h), op: o.name, outcome: o.allowed ? 'allowed' : 'blocked', label: o.allowed ? 'allowed' : o.errno || 'blocked' })));
  if (ops.length) {
    const opOrder = probed[0]!.probe!.ops.map((o) => o.name);
    const enc = { x: { ...x, axis: { labelAngle: -30, labelLimit: 320, orient: 'top' as const } }, y: { field: 'op', type: 'nominal' as const, sort: opOrder, title: null } };
    charts.push({
      name: 'blocks', title: 'What each sandbox blocks: privileged operations tried inside it',
      spec: {
        title: 'What each sandbox blocks', config: CONFIG, data: { values: ops }, width: { step: 90 }, height: { step: 18 },
        layer: [
          { mark: { type: 'rect', stroke: 'white' }, encoding: { ...enc, color: { field: 'outcome', title: null, scale: { domain: ['blocked', 'allowed'], range: ['#b7e4b7', '#f4a9a8'] }, legend: { orient: 'bottom' } } } },
          { mark: { type: 'text', fontSize: 10 }, encoding: { ...enc, text: { field: 'label' } } },
        ],
      },
    });
  }
  return charts;
}

/** A Vega-Lite spec as an SVG document (headless: Vega's renderer 'none' plus its SVG string writer). */
export async function toSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** An SVG document as PNG (resvg, system fonts; by default twice the SVG's size for sharp text). */
export function toPng(svg: string, zoom = 2): Buffer {
  return new Resvg(svg, { fitTo: { mode: 'zoom', value: zoom }, font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' }, background: 'white' }).render().asPng();
}

/** All the charts in one picture, two a row: the README's. */
export function summarySpec(charts: readonly Chart[]): TopLevelSpec | undefined {
  if (!charts.length) return undefined;
  const parts = charts.map((c) => {
    const { config: _c, ...rest } = c.spec as TopLevelSpec & { config?: unknown };
    return rest;
  });
  return { config: CONFIG, concat: parts, columns: 2, spacing: 40, resolve: { scale: { color: 'independent', x: 'independent' } } } as TopLevelSpec;
}
