import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePoolsConfig } from './pools-config.ts';
import { defaultPolicy, untrustedLevel } from '../policy/load.ts';

const policy = defaultPolicy();
policy.levels.open = { ...untrustedLevel(), name: 'open', egressGuard: false, allowHostNetwork: true };

test('[pools]: handler tables of level = size; the level\'s network settings are carried', () => {
  assert.deepEqual(parsePoolsConfig(undefined, ['gvisor'], policy), { pools: [], fillParallelism: 1 });
  assert.deepEqual(parsePoolsConfig({ fill_parallelism: 2, gvisor: { untrusted: 2, open: 1 } }, ['gvisor'], policy), {
    fillParallelism: 2,
    pools: [
      { handler: 'gvisor', level: 'untrusted', size: 2, egressGuard: true, hostNetwork: false },
      { handler: 'gvisor', level: 'open', size: 1, egressGuard: false, hostNetwork: true },
    ],
  });
  assert.deepEqual(parsePoolsConfig({ gvisor: { untrusted: 0 } }, ['gvisor'], policy).pools, [], 'size 0 = no pool');
  assert.deepEqual(parsePoolsConfig({ gvisor: { untrusted: { size: 3, network: 'none' } } }, ['gvisor'], policy).pools, [
    { handler: 'gvisor', level: 'untrusted', size: 3, egressGuard: true, hostNetwork: false, network: 'none' },
  ]);
  assert.deepEqual(parsePoolsConfig({ microvm: { untrusted: { size: 1, volumes: 'none' }, open: { size: 1, volumes: 'any' } } }, ['microvm'], policy).pools, [
    { handler: 'microvm', level: 'untrusted', size: 1, egressGuard: true, hostNetwork: false, volumes: 'none' },
    { handler: 'microvm', level: 'open', size: 1, egressGuard: false, hostNetwork: true },
  ]);
  assert.deepEqual(parsePoolsConfig({ microvm: { untrusted: { size: 2, volumes: 'copy' } } }, ['microvm'], policy).pools, [
    { handler: 'microvm', level: 'untrusted', size: 2, egressGuard: true, hostNetwork: false, volumes: 'copy' },
  ]);
});

test('[pools]: unknown handlers and levels, bad sizes and totals are errors naming the key', () => {
  const bad: [unknown, RegExp][] = [
    [[], /pools must be a table/],
    [{ runc: { untrusted: 1 } }, /pools\.runc: no runtime handler/],
    [{ gvisor: 3 }, /pools\.gvisor must be a table/],
    [{ gvisor: { nope: 1 } }, /pools\.gvisor\.nope: the policy .* has no trust level/],
    [{ gvisor: { untrusted: -1 } }, /pools\.gvisor\.untrusted must be an integer 0\.\.64/],
    [{ gvisor: { untrusted: 65 } }, /0\.\.64/],
    [{ gvisor: { untrusted: 1.5 } }, /0\.\.64/],
    [{ fill_parallelism: 0 }, /fill_parallelism must be an integer 1\.\.8/],
    [{ gvisor: { untrusted: { size: 1, network: 'host' } } }, /network must be "bridge" or "none"/],
    [{ gvisor: { untrusted: { size: 1, nic: 'x' } } }, /unknown key pools\.gvisor\.untrusted\.nic/],
    [{ gvisor: { untrusted: { network: 'none' } } }, /must be an integer/],
    [{ gvisor: { untrusted: { size: 1, volumes: 'some' } } }, /volumes must be "none", "copy" or "any"/],
  ];
  for (const [raw, re] of bad) assert.throws(() => parsePoolsConfig(raw, ['gvisor', 'g2'], policy), (e: Error) => re.test(e.message), JSON.stringify(raw));
  assert.throws(() => parsePoolsConfig({ gvisor: { untrusted: 64, open: 64 }, g2: { untrusted: 64, open: 64 }, g3: { untrusted: 1 } }, ['gvisor', 'g2', 'g3'], policy), /at most 256/);
});
