import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'smol-toml';
import { formatCidr4 } from './cidr.ts';
import { parseNetworkConfig } from './config.ts';

const sect = (toml: string): unknown => (parse(toml) as { network?: unknown }).network;

describe('[network] config', () => {
  it('defaults: bridge mode, 169.254.0.0/16 blocked, nothing routed', () => {
    const c = parseNetworkConfig(undefined);
    assert.equal(c.defaultMode, 'bridge');
    assert.deepEqual(c.blocked.map(formatCidr4), ['169.254.0.0/16']);
    assert.deepEqual(c.routed, []);
    assert.equal(c.subnet, null);
  });
  it('parses every key; metadata range stays blocked whatever is configured', () => {
    const c = parseNetworkConfig(sect(`[network]
default_mode = "none"
subnet = "10.99.1.0/24"
bridge = "bh0"
blocked = ["10.0.0.0/8", "169.254.0.0/16"]
routed = ["192.0.2.10/32"]
plugin_timeout_ms = 5000
instance = "node_a"
`));
    assert.equal(c.defaultMode, 'none');
    assert.equal(formatCidr4(c.subnet!), '10.99.1.0/24');
    assert.equal(c.bridge, 'bh0');
    assert.deepEqual(c.blocked.map(formatCidr4), ['169.254.0.0/16', '10.0.0.0/8']);
    assert.deepEqual(c.routed.map(formatCidr4), ['192.0.2.10/32']);
    assert.equal(c.pluginTimeoutMs, 5000);
    assert.equal(c.instance, 'node_a');
  });
  const bad: [string, RegExp][] = [
    ['typo = 1', /unknown key network\.typo/],
    ['default_mode = "bridged"', /default_mode/],
    ['default_mode = "host"', /default_mode = "host" is refused: a pod gets the host network only by asking for it/],
    ['subnet = "10.0.0.1/24"', /network\.subnet: .*host bits/],
    ['subnet = "10.0.0.0/30"', /between/],
    ['bridge = "a-name-that-is-too-long"', /network\.bridge/],
    ['blocked = "10.0.0.0/8"', /list of CIDR/],
    ['blocked = ["10.0.0.0/33"]', /network\.blocked/],
    ['routed = ["nope"]', /network\.routed/],
    ['plugin_timeout_ms = 5', /plugin_timeout_ms/],
    ['instance = "Has-Caps"', /instance/],
  ];
  for (const [line, re] of bad) {
    it(`rejects ${line}`, () => {
      assert.throws(() => parseNetworkConfig(sect(`[network]\n${line}\n`)), (e: Error & { code?: string }) => e.code === 'InvalidArgument' && re.test(e.message));
    });
  }
});
