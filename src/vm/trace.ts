// Timestamps of a pod VM's steps for bench/vm-template.ts --phases: with $BULKHEAD_VM_TRACE naming a
// file, each process appends `<epoch ms> <pid> <step>` lines to it; without it, nothing happens.
import { appendFileSync } from 'node:fs';

const file = process.env.BULKHEAD_VM_TRACE;

export function trace(step: string): void {
  if (!file) return;
  try { appendFileSync(file, `${(performance.timeOrigin + performance.now()).toFixed(1)} ${process.pid} ${step}\n`); } catch { /* a trace never fails a step */ }
}
