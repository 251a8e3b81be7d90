/**
 * Mount points from /proc/self/mountinfo (never guessed), so that whatever state a mount was left
 * in after a crash, it is found and taken down rather than descended into.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Mount points at or under `dir` in a mountinfo text, deepest first. */
export function mountPointsUnder(mountinfo: string, dir: string): string[] {
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const mp = line.split(' ')[4];
    if (mp === undefined) continue;
    const p = unescapeMountinfo(mp);
    if (p === dir || p.startsWith(dir + '/')) out.push(p);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Mount points at or under `dir`, deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  return mountPointsUnder(await readFile('/proc/self/mountinfo', 'utf8'), dir);
}

/** Mount points at or under `dir`, deepest first; none when mountinfo cannot be read. */
export function mountsUnderSync(dir: string): string[] {
  try { return mountPointsUnder(readFileSync('/proc/self/mountinfo', 'utf8'), dir); } catch { return []; }
}
