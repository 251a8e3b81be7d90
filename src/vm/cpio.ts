/**
 * A writer for the cpio "newc" format (the one the Linux kernel unpacks as an initramfs).
 * Deterministic: fixed mtime, inode numbers in entry order, so the same inputs give the same bytes.
 */

export interface CpioEntry {
  /** Path inside the archive, without a leading slash ("init", "bin/busybox"). */
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'char';
  /** Permission bits (e.g. 0o755). */
  mode: number;
  data?: Buffer;
  /** Link target for symlinks. */
  target?: string;
  /** Device numbers for character devices. */
  major?: number;
  minor?: number;
}

const TYPE_BITS: Record<CpioEntry['type'], number> = { file: 0o100000, dir: 0o040000, symlink: 0o120000, char: 0o020000 };

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}

function pad4(len: number): Buffer {
  return Buffer.alloc((4 - (len % 4)) % 4);
}

function header(ino: number, mode: number, size: number, nameLen: number, rmajor: number, rminor: number, nlink: number): string {
  // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
  return '070701' + [ino, mode, 0, 0, nlink, 0, size, 0, 0, rmajor, rminor, nameLen, 0].map(hex8).join('');
}

/** The archive for `entries`, followed by the TRAILER!!! record. */
export function buildCpio(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const put = (name: string, mode: number, data: Buffer, rmajor = 0, rminor = 0, nlink = 1): void => {
    const nameBuf = Buffer.from(name + '\0', 'utf8');
    const h = Buffer.from(header(ino++, mode, data.length, nameBuf.length, rmajor, rminor, nlink), 'ascii');
    parts.push(h, nameBuf, pad4(h.length + nameBuf.length), data, pad4(data.length));
  };
  for (const e of entries) {
    const name = e.path.replace(/^\/+/, '');
    if (!name || name.split('/').includes('..')) throw new RangeError(`bad cpio path ${JSON.stringify(e.path)}`);
    const mode = TYPE_BITS[e.type] | (e.mode & 0o7777);
    if (e.type === 'file') put(name, mode, e.data ?? Buffer.alloc(0));
    else if (e.type === 'symlink') put(name, mode, Buffer.from(e.target ?? '', 'utf8'));
    else if (e.type === 'char') put(name, mode, Buffer.alloc(0), e.major ?? 0, e.minor ?? 0);
    else put(name, mode, Buffer.alloc(0), 0, 0, 2);
  }
  put('TRAILER!!!', 0, Buffer.alloc(0), 0, 0, 1);
  return Buffer.concat(parts);
}
