import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError } from '../errors.ts';
import { parseConfig } from '../daemon/config.ts';
import { defaultPolicy, loadPolicy, parsePolicyText, policyFromConfig, checkPolicyHandlers } from './load.ts';

const invalid: { name: string; text: string; error: RegExp }[] = [
  { name: 'not TOML', text: 'levels = [', error: /not valid TOML/ },
  { name: 'unknown top-level key', text: 'default_trusted = "x"', error: /default_trusted is not a known key/ },
  { name: 'unknown level key (typo)', text: '[levels.t]\nmin_isolation = "process"\nallow_privileged_mode = true', error: /levels\.t\.allow_privileged_mode is not a known key/ },
  { name: 'missing min_isolation', text: '[levels.t]\nallow_privileged = true', error: /levels\.t\.min_isolation is required/ },
  { name: 'bad isolation class', text: '[levels.t]\nmin_isolation = "container"', error: /levels\.t\.min_isolation must be one of process, strict, user-kernel, vm/ },
  { name: 'strict_fallback below the strict class only', text: '[levels.t]\nmin_isolation = "strict"\nstrict_fallback = "runc"', error: /levels\.t\.strict_fallback needs min_isolation = "process"/ },
  { name: 'strict_fallback names runc', text: '[levels.t]\nmin_isolation = "process"\nstrict_fallback = "gvisor"', error: /levels\.t\.strict_fallback must be "runc"/ },
  { name: 'boolean given as string', text: '[levels.t]\nmin_isolation = "process"\nallow_privileged = "yes"', error: /levels\.t\.allow_privileged must be true or false/ },
  { name: 'bad host_paths mode', text: '[levels.t]\nmin_isolation = "process"\nhost_paths = "some"', error: /levels\.t\.host_paths must be one of none, listed, safe, any/ },
  { name: 'listed without paths', text: '[levels.t]\nmin_isolation = "process"\nhost_paths = "listed"', error: /levels\.t\.allowed_host_paths must list at least one path/ },
  { name: 'relative allowed host path', text: '[levels.t]\nmin_isolation = "process"\nhost_paths = "listed"\nallowed_host_paths = ["data"]', error: /levels\.t\.allowed_host_paths\[0\] \("data"\) is not an absolute path/ },
  { name: 'smuggled sysctl in allow-list', text: '[levels.t]\nmin_isolation = "process"\nallowed_sysctls = ["kernel.shm_rmid_forced=1\\nkernel.core_pattern"]', error: /levels\.t\.allowed_sysctls\[0\].*not a plain dotted sysctl name/ },
  { name: 'default handler outside the handler list', text: '[levels.t]\nmin_isolation = "process"\nhandlers = ["gvisor"]\ndefault_handler = "runc"', error: /levels\.t\.default_handler "runc" is not in levels\.t\.handlers/ },
  { name: 'default_trust names no level', text: 'default_trust = "friendly"', error: /default_trust names no defined level "friendly"/ },
  { name: 'rule without name', text: '[[rules]]\ntrust = "untrusted"\nnamespaces = ["a"]', error: /rules\[0\]\.name is required/ },
  { name: 'rule with unknown level', text: '[[rules]]\nname = "r"\ntrust = "trusted"\nnamespaces = ["a"]', error: /rules\[0\] \("r"\)\.trust names no defined level "trusted"/ },
  { name: 'rule trusting a prototype key', text: '[[rules]]\nname = "r"\ntrust = "constructor"\nnamespaces = ["a"]', error: /names no defined level "constructor"/ },
  { name: 'rule matching every pod', text: '[levels.t]\nmin_isolation = "process"\n[[rules]]\nname = "r"\ntrust = "t"', error: /matches every pod/ },
  { name: 'duplicate rule names', text: '[[rules]]\nname = "r"\ntrust = "untrusted"\nnamespaces = ["a"]\n[[rules]]\nname = "r"\ntrust = "untrusted"\nnamespaces = ["b"]', error: /rules\[1\]\.name "r" is used by an earlier rule/ },
  { name: 'wildcard namespace', text: '[levels.t]\nmin_isolation = "process"\n[[rules]]\nname = "r"\ntrust = "t"\nnamespaces = ["*"]', error: /namespaces\[0\] \("\*"\) is not a namespace name/ },
  {
    name: 'spoofable rule: a pod annotation raises trust without a namespace',
    text: '[levels.trusted]\nmin_isolation = "process"\n[[rules]]\nname = "claim"\ntrust = "trusted"\nannotations = { "bulkhead.io/trust" = "trusted" }',
    error: /rules\[0\] \("claim"\)\.namespaces is required: the rule matches annotations, which any pod author can set/,
  },
  {
    name: 'spoofable rule: a label raises trust without a namespace',
    text: '[levels.trusted]\nmin_isolation = "user-kernel"\nallow_host_network = true\n[[rules]]\nname = "lbl"\ntrust = "trusted"\nlabels = { team = "infra" }',
    error: /namespaces is required: the rule matches labels/,
  },
  {
    name: 'spoofable rule: the requested handler raises trust',
    text: '[levels.trusted]\nmin_isolation = "process"\n[[rules]]\nname = "h"\ntrust = "trusted"\nhandlers = ["runc"]',
    error: /namespaces is required: the rule matches handlers/,
  },
  {
    name: 'spoofable rule: a label escapes a default level that requires run as non-root',
    text: 'default_trust = "strict"\n[levels.strict]\nmin_isolation = "user-kernel"\nrequire_run_as_non_root = true\n[levels.loose]\nmin_isolation = "user-kernel"\n[[rules]]\nname = "lbl"\ntrust = "loose"\nlabels = { root = "yes" }',
    error: /namespaces is required: the rule matches labels/,
  },
  { name: 'require_run_as_non_root is a boolean', text: '[levels.t]\nmin_isolation = "process"\nrequire_run_as_non_root = "yes"', error: /levels\.t\.require_run_as_non_root/ },
  { name: 'rules is a table, not a list', text: '[rules]\nname = "x"', error: /rules must be a list/ },
  { name: 'bad registry pattern', text: '[levels.t]\nmin_isolation = "process"\nregistries = ["https://evil"]', error: /levels\.t\.registries\[0\].*not a registry host/ },
];

describe('parsePolicyText: invalid policies give errors naming the key', () => {
  for (const c of invalid) {
    it(c.name, () => {
      assert.throws(() => parsePolicyText(c.text, 'toml', 'p.toml'), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError, String(err));
        assert.match(err.message, /^policy \(p\.toml\): /);
        assert.match(err.message, c.error);
        return true;
      });
    });
  }
});

describe('parsePolicyText: valid policies', () => {
  it('an empty file is the built-in default (everything untrusted, user-kernel at least)', () => {
    const p = parsePolicyText('', 'toml', 'empty');
    assert.equal(p.defaultTrust, 'untrusted');
    assert.equal(p.levels.untrusted?.minIsolation, 'user-kernel');
    assert.equal(p.levels.untrusted?.allowPrivileged, false);
    assert.equal(p.levels.untrusted?.hostPaths, 'none');
    assert.deepEqual(p.rules, []);
  });
  it('a label rule may lower trust without naming namespaces', () => {
    const p = parsePolicyText('[levels.vm]\nmin_isolation = "vm"\n[[rules]]\nname = "opt-in"\ntrust = "vm"\nlabels = { sandbox = "vm" }', 'toml', 't');
    assert.equal(p.rules[0]?.trust, 'vm');
  });
  it('YAML and JSON give the same policy as TOML', () => {
    const toml = parsePolicyText('[levels.trusted]\nmin_isolation = "process"\n[[rules]]\nname = "sys"\ntrust = "trusted"\nnamespaces = ["kube-system"]', 'toml', 's');
    const yaml = parsePolicyText('levels:\n  trusted:\n    min_isolation: process\nrules:\n  - name: sys\n    trust: trusted\n    namespaces: [kube-system]\n', 'yaml', 's');
    const json = parsePolicyText(JSON.stringify({ levels: { trusted: { min_isolation: 'process' } }, rules: [{ name: 'sys', trust: 'trusted', namespaces: ['kube-system'] }] }), 'json', 's');
    assert.deepEqual(yaml, toml);
    assert.deepEqual(json, toml);
  });
  it('protected_paths add to the built-in list (normalized)', () => {
    const p = parsePolicyText('protected_paths = ["/srv/secrets/"]', 'toml', 't');
    assert.ok(p.protectedPaths.includes('/srv/secrets'));
    assert.ok(p.protectedPaths.includes('/var/run/docker.sock'));
  });
  it('checkPolicyHandlers names handlers the node does not have', () => {
    const p = parsePolicyText('[levels.t]\nmin_isolation = "vm"\nhandlers = ["kata"]', 'toml', 't');
    assert.deepEqual(checkPolicyHandlers(p, ['runc', 'gvisor']), ['levels.t.handlers names "kata", which is not a configured handler']);
  });
});

describe('loadPolicy and policyFromConfig', () => {
  let dir = '';
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'bulkhead-policy-load-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('loads TOML, YAML and JSON files by extension', async () => {
    await writeFile(join(dir, 'p.toml'), '[levels.t]\nmin_isolation = "vm"\n');
    await writeFile(join(dir, 'p.yaml'), 'levels:\n  t:\n    min_isolation: vm\n');
    await writeFile(join(dir, 'p.json'), '{"levels":{"t":{"min_isolation":"vm"}}}');
    for (const f of ['p.toml', 'p.yaml', 'p.json']) {
      const p = await loadPolicy(join(dir, f));
      assert.equal(p.levels.t?.minIsolation, 'vm', f);
      assert.equal(p.source, join(dir, f));
    }
  });
  it('a missing file is an error, not the default', async () => {
    await assert.rejects(loadPolicy(join(dir, 'nope.toml')), /policy file .*nope\.toml cannot be read/);
  });
  it('invalid YAML names the file', async () => {
    await writeFile(join(dir, 'bad.yaml'), 'levels: [\n');
    await assert.rejects(loadPolicy(join(dir, 'bad.yaml')), /policy \(.*bad\.yaml\): not valid YAML/);
  });
  it('reads the [policy] section of the daemon config and rejects a bad one', async () => {
    const paths = { root: dir, runDir: dir, socket: join(dir, 's'), config: join(dir, 'c.toml') };
    const good = parseConfig('[policy]\ndefault_trust = "sandboxed"\n[policy.levels.sandboxed]\nmin_isolation = "vm"\n', paths);
    assert.equal((await policyFromConfig(good)).defaultTrust, 'sandboxed');
    const bad = parseConfig('[policy.levels.t]\nmin_isolation = "none"\n', paths);
    await assert.rejects(policyFromConfig(bad), /policy \(\[policy\] section of the config\): levels\.t\.min_isolation must be one of/);
    const both = parseConfig(`policy_file = "${join(dir, 'p.toml')}"\n[policy]\ndefault_trust = "untrusted"\n`, paths);
    await assert.rejects(policyFromConfig(both), /either policy_file or a \[policy\] section/);
    const none = parseConfig('', paths);
    assert.deepEqual(await policyFromConfig(none), defaultPolicy());
  });
});
