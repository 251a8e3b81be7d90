// `bulkhead policy check|validate` run in-process on real files (YAML manifests, TOML policies).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import policyCommand from '../../src/cli/policy.ts';
import { UsageError } from '../../src/cli/command.ts';
import { InvalidArgumentError } from '../../src/errors.ts';

const POD = `
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
  annotations:
    bulkhead.io/trust: trusted
spec:
  runtimeClassName: runc
  containers:
    - name: app
      image: busybox:1.36
      securityContext:
        capabilities: { add: [SYS_ADMIN] }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: api, namespace: infra }
spec:
  selector: { matchLabels: { app: api } }
  template:
    metadata: { labels: { app: api } }
    spec:
      runtimeClassName: runc
      containers: [{ name: api, image: registry.internal/api:1 }]
`;

const POLICY = `
[levels.trusted]
min_isolation = "process"
[[rules]]
name = "infra namespace"
trust = "trusted"
namespaces = ["infra"]
`;

describe('bulkhead policy', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulkhead-policy-cli-'));
    await writeFile(join(dir, 'pods.yaml'), POD);
    await writeFile(join(dir, 'policy.toml'), POLICY);
    await writeFile(join(dir, 'allowed.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec:\n  containers: [{name: c, image: busybox}]\n');
    await writeFile(join(dir, 'broken.yaml'), 'apiVersion: v1\nkind: Pod\nspec:\n  containers: {name: c}\n');
    await writeFile(join(dir, 'bad-policy.toml'), '[levels.trusted]\nmin_isolation = "process"\n[[rules]]\nname = "claim"\ntrust = "trusted"\nlabels = { trusted = "yes" }\n');
  });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  async function run(args: string[], flags: Record<string, string> = {}, json = false): Promise<{ code: number; out: string }> {
    const stdout = new PassThrough();
    let out = '';
    stdout.on('data', (b: Buffer) => { out += b.toString(); });
    const code = await policyCommand.run({
      global: { root: dir, runDir: dir, socket: join(dir, 's.sock'), config: join(dir, 'no-config.toml'), json, debug: false },
      flags, args, stdout, stderr: new PassThrough(), signal: new AbortController().signal,
    });
    return { code, out };
  }

  it('check explains each pod: spoofed annotation ignored, moved off runc, CAP_SYS_ADMIN refused; exit 1', async () => {
    const r = await run(['check', join(dir, 'pods.yaml')], { policy: join(dir, 'policy.toml'), handlers: 'runc,gvisor' });
    assert.equal(r.code, 1);
    assert.match(r.out, /pod default\/web: DENIED \(rule untrusted\/capabilities\)/);
    assert.match(r.out, /annotation bulkhead\.io\/trust ignored/);
    assert.match(r.out, /handler: +gvisor \(requested runc, moved to a stronger one\)/);
    assert.match(r.out, /\[capabilities\] container app: adding capability CAP_SYS_ADMIN/);
    assert.match(r.out, /Deployment pod template infra\/api: ALLOWED \(rule trusted\/handler\)/);
    assert.match(r.out, /trust: +trusted \(rule "infra namespace"\)/);
  });

  it('check --json gives the decisions; an allowed pod exits 0', async () => {
    const r = await run(['check', join(dir, 'allowed.yaml')], { handlers: 'runc,gvisor,microvm' }, true);
    assert.equal(r.code, 0);
    const doc = JSON.parse(r.out) as { results: { pod: string; decision: { allowed: boolean; handler: string; trust: string } }[] };
    assert.equal(doc.results.length, 1);
    assert.deepEqual([doc.results[0]!.pod, doc.results[0]!.decision.allowed, doc.results[0]!.decision.handler, doc.results[0]!.decision.trust], ['default/ok', true, 'microvm', 'untrusted']);
  });

  it('a malformed manifest is an error naming the field', async () => {
    await assert.rejects(run(['check', join(dir, 'broken.yaml')]), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError);
      assert.match(err.message, /document 1 \(Pod\): pod: spec\.containers must be a list/);
      return true;
    });
  });

  it('validate accepts a good policy and rejects a spoofable one', async () => {
    const ok = await run(['validate', join(dir, 'policy.toml')]);
    assert.equal(ok.code, 0);
    assert.match(ok.out, /valid \(default trust "untrusted", levels untrusted, trusted, 1 rule\)/);
    await assert.rejects(run(['validate', join(dir, 'bad-policy.toml')]), /rules\[0\] \("claim"\)\.namespaces is required/);
  });

  it('usage errors', async () => {
    await assert.rejects(run([]), UsageError);
    await assert.rejects(run(['check']), UsageError);
  });
});
