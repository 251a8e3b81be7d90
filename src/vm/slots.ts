// Drive slot files (see vmd.ts SLOT_COUNT): a container's read-only root image copied into one.
import { open } from 'node:fs/promises';
import { InvalidArgumentError } from '../errors.ts';

/**
 * Copies the root image `image` into the slot file `slot` (at most `maxBytes`). A `fresh` slot (all
 * zeros, sparse, as the supervisor made it) gets only the image's non-zero 64 KiB runs: faster, and
 * the slot stays sparse; a reused one (a deleted container's) is written whole. Two fresh fills of
 * one image give the same bytes (a VM template's slot 0 and its clones', template-sandbox.ts).
 */
export async function fillSlotFile(slot: string, image: string, fresh: boolean, maxBytes: number): Promise<void> {
  const src = await open(image, 'r');
  const dst = await open(slot, 'r+');
  try {
    const size = (await src.stat()).size;
    if (size > maxBytes) throw new InvalidArgumentError(`root image of ${size} bytes exceeds the slot size ${maxBytes}`);
    const buf = Buffer.allocUnsafe(1 << 20);
    const BLOCK = 1 << 16;
    const zero = Buffer.alloc(BLOCK);
    for (let pos = 0; pos < size;) {
      const { bytesRead } = await src.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      if (!fresh) await dst.write(buf, 0, bytesRead, pos);
      else {
        // runs of 64 KiB blocks that are not all zeros, each written at once
        for (let off = 0; off < bytesRead;) {
          const isZero = (o: number): boolean => buf.subarray(o, Math.min(o + BLOCK, bytesRead)).equals(zero.subarray(0, Math.min(BLOCK, bytesRead - o)));
          if (isZero(off)) { off += BLOCK; continue; }
          let end = off + BLOCK;
          while (end < bytesRead && !isZero(end)) end += BLOCK;
          end = Math.min(end, bytesRead);
          await dst.write(buf, off, end - off, pos + off);
          off = end;
        }
      }
      pos += bytesRead;
    }
    await dst.datasync();
  } finally {
    await src.close();
    await dst.close();
  }
}
