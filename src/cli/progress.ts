/**
 * Renders PullProgress events for humans: on a TTY one redrawn line per layer with a bar;
 * otherwise one plain line per status change (no carriage returns, no colour).
 */
import type { PullProgress } from '../image/image-service.ts';

export interface ProgressRenderer {
  update(ev: PullProgress): void;
  /** Draws the final state (TTY) and stops redrawing. */
  done(): void;
}

function human(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = -1;
  do { v /= 1024; i++; } while (v >= 1024 && i < units.length - 1);
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

const LABEL: Record<PullProgress['status'], string> = {
  waiting: 'Waiting', downloading: 'Downloading', verifying: 'Verifying', extracting: 'Extracting', done: 'Pull complete', exists: 'Already exists',
};

export function renderLine(ev: PullProgress, width = 30): string {
  const showBar = ev.status === 'downloading' || ev.status === 'extracting';
  if (!showBar) return `${ev.id}: ${LABEL[ev.status]}`;
  const frac = ev.total > 0 ? Math.min(1, ev.current / ev.total) : 0;
  const filled = Math.round(frac * width);
  const bar = '='.repeat(Math.max(0, filled - 1)) + (filled > 0 ? '>' : '') + ' '.repeat(width - filled);
  return `${ev.id}: ${LABEL[ev.status].padEnd(11)} [${bar}] ${human(ev.current)}/${human(ev.total)}`;
}

export function createProgressRenderer(out: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }): ProgressRenderer {
  const order: string[] = [];
  const last = new Map<string, PullProgress>();
  if (!out.isTTY) {
    const said = new Map<string, string>();
    return {
      update(ev) {
        if (said.get(ev.id) === ev.status) return;
        said.set(ev.id, ev.status);
        out.write(`${ev.id}: ${LABEL[ev.status]}\n`);
      },
      done() { /* plain output is already complete */ },
    };
  }
  let drawn = 0;
  let timer: NodeJS.Timeout | undefined;
  const draw = (): void => {
    timer = undefined;
    const cols = Math.max(20, (out.columns ?? 80) - 1);
    let s = drawn > 0 ? `\x1b[${drawn}A` : '';
    for (const id of order) s += `\x1b[2K${renderLine(last.get(id)!).slice(0, cols)}\n`;
    drawn = order.length;
    out.write(s);
  };
  return {
    update(ev) {
      if (!last.has(ev.id)) order.push(ev.id);
      last.set(ev.id, ev);
      timer ??= setTimeout(draw, 100); // at most ~10 redraws a second
    },
    done() {
      if (timer) clearTimeout(timer);
      draw();
    },
  };
}
