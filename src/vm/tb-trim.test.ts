// The idle trim's parsing (tb-trim.ts): QEMU's `info jit`, the code buffer's mapping in
// /proc/PID/maps, GDB remote packets. The trim itself runs against real QEMU in test/vm/tb-trim.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gdbPacket, jitMapping, parseJitUsed, trimIdleMs, TRIM_IDLE_MS } from './tb-trim.ts';

describe('tb-trim parsing', () => {
  it('reads the bytes in use and the size from info jit', () => {
    const text = 'Translation buffer state:\ngen code size       18604195/33549312\nTB count            32937\n';
    assert.deepEqual(parseJitUsed(text), { used: 18604195, size: 33549312 });
    assert.equal(parseJitUsed('info jit: not supported with KVM'), undefined);
  });

  it('finds the writable memfd mapping at offset 0, and nothing else', () => {
    const maps = [
      '55d0c0000000-55d0c0100000 r-xp 00000000 08:01 123 /usr/bin/qemu-system-x86_64',
      '7feafe000000-7feb00000000 r-xs 00000000 00:01 13298                      /memfd:tcg-jit (deleted)',
      '7feb04a7d000-7feb06a7c000 rw-s 00000000 00:01 13298                      /memfd:tcg-jit (deleted)',
      '7feb06a7c000-7feb06a7d000 ---s 01fff000 00:01 13298                      /memfd:tcg-jit (deleted)',
    ].join('\n');
    assert.deepEqual(jitMapping(maps), { range: '7feb04a7d000-7feb06a7c000', bytes: 0x1fff000 });
    // no split-wx: the buffer is anonymous rwx, nothing to punch
    assert.equal(jitMapping('7f0000000000-7f0002000000 rwxp 00000000 00:00 0 \n'), undefined);
    // a memfd of another name, or one mapped at another offset, is not the buffer
    assert.equal(jitMapping('7f0000000000-7f0002000000 rw-s 00000000 00:01 5 /memfd:other (deleted)'), undefined);
    assert.equal(jitMapping('7f0000000000-7f0002000000 rw-s 00001000 00:01 5 /memfd:tcg-jit (deleted)'), undefined);
  });

  it('frames GDB packets with their checksum', () => {
    assert.equal(gdbPacket('s'), '$s#73');
    assert.equal(gdbPacket('D'), '$D#44');
    assert.equal(gdbPacket('qSupported'), '$qSupported#37');
  });

  it('takes the quiet time from the environment, 0 = off, junk = the default', () => {
    assert.equal(trimIdleMs({}), TRIM_IDLE_MS);
    assert.equal(trimIdleMs({ BULKHEAD_VM_TB_TRIM_IDLE_MS: '0' }), 0);
    assert.equal(trimIdleMs({ BULKHEAD_VM_TB_TRIM_IDLE_MS: '2500' }), 2500);
    assert.equal(trimIdleMs({ BULKHEAD_VM_TB_TRIM_IDLE_MS: '-1' }), TRIM_IDLE_MS);
    assert.equal(trimIdleMs({ BULKHEAD_VM_TB_TRIM_IDLE_MS: '1e9' }), TRIM_IDLE_MS);
  });
});
