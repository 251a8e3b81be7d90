/**
 * Finding a program as a shell would: a name without a slash is looked up in the directories of
 * $PATH (then in `extraDirs`), and the first executable regular file wins.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function executableFile(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, constants.X_OK);
    return true;
  } catch { return false; }
}

/** The program's path (`bin` itself when it has a slash and is executable), or undefined. */
export function findOnPath(bin: string, extraDirs: readonly string[] = []): string | undefined {
  if (bin.includes('/')) return executableFile(bin) ? bin : undefined;
  for (const dir of [...(process.env.PATH ?? DEFAULT_PATH).split(delimiter), ...extraDirs]) {
    if (!dir) continue;
    const p = join(dir, bin);
    if (executableFile(p)) return p;
  }
  return undefined;
}
