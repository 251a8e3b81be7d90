import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cidrContains, cidrsOverlap, formatCidr4, formatIp4, parseCidr4, parseIp4 } from './cidr.ts';
import { chooseSubnet } from './default-network.ts';

describe('cidr', () => {
  it('parses and formats addresses', () => {
    for (const s of ['0.0.0.0', '10.1.2.3', '255.255.255.255', '169.254.169.254']) assert.equal(formatIp4(parseIp4(s)), s);
    for (const bad of ['', '1.2.3', '1.2.3.256', '01.2.3.4', 'a.b.c.d', '1.2.3.4.5']) assert.throws(() => parseIp4(bad), { code: 'InvalidArgument' }, bad);
  });
  it('parses CIDRs, rejects host bits unless allowed', () => {
    const table: [string, string][] = [['10.0.0.0/8', '10.0.0.0/8'], ['169.254.169.254', '169.254.169.254/32'], ['0.0.0.0/0', '0.0.0.0/0'], ['192.168.1.128/25', '192.168.1.128/25']];
    for (const [inp, out] of table) assert.equal(formatCidr4(parseCidr4(inp)), out);
    assert.throws(() => parseCidr4('10.0.0.1/24'), /host bits/);
    assert.equal(formatCidr4(parseCidr4('10.0.0.1/24', { allowHostBits: true })), '10.0.0.0/24');
    for (const bad of ['10.0.0.0/33', '10.0.0.0/', '10.0.0.0/8/8', '10.0.0.0/x']) assert.throws(() => parseCidr4(bad), { code: 'InvalidArgument' }, bad);
  });
  it('contains and overlaps', () => {
    const c = parseCidr4('10.1.0.0/16');
    assert.ok(cidrContains(c, parseIp4('10.1.255.255')));
    assert.ok(!cidrContains(c, parseIp4('10.2.0.0')));
    assert.ok(cidrsOverlap(c, parseCidr4('10.0.0.0/8')));
    assert.ok(cidrsOverlap(parseCidr4('10.0.0.0/8'), c));
    assert.ok(!cidrsOverlap(c, parseCidr4('10.2.0.0/16')));
    assert.ok(cidrsOverlap(parseCidr4('0.0.0.0/0'), parseCidr4('255.255.255.255/32')));
  });
  it('chooses a subnet that collides with nothing used', () => {
    const seq = [0, 0, 0, 0, 5, 7]; // first pick 10.64.0.0/24 (used), then 10.69.7.0/24
    let i = 0;
    const pick = chooseSubnet([parseCidr4('10.64.0.0/16')], [], () => seq[i++] ?? 0);
    assert.equal(formatCidr4(pick), '10.69.7.0/24');
    assert.throws(() => chooseSubnet([parseCidr4('10.0.0.0/8')], [], () => 0), { code: 'ResourceExhausted' });
  });
});
