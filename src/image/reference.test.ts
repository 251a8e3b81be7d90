import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatReference, parseReference } from './reference.ts';
import { parseChallenge, AuthFile } from './registry/auth.ts';

const D = 'sha256:' + 'a'.repeat(64);

test('references normalise as docker and crictl do', () => {
  const table: [string, string][] = [
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['library/busybox', 'docker.io/library/busybox:latest'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['index.docker.io/library/busybox:1', 'docker.io/library/busybox:1'],
    ['user/app', 'docker.io/user/app:latest'],
    ['localhost/app', 'localhost/app:latest'],
    ['localhost:5000/a/b:tag', 'localhost:5000/a/b:tag'],
    ['127.0.0.1:5000/test/busybox', '127.0.0.1:5000/test/busybox:latest'],
    ['quay.io/org/sub/repo:v1.2-rc_3', 'quay.io/org/sub/repo:v1.2-rc_3'],
    [`busybox@${D}`, `docker.io/library/busybox@${D}`],
    [`busybox:1.36@${D}`, `docker.io/library/busybox:1.36@${D}`],
    ['[::1]:5000/x', '[::1]:5000/x:latest'],
    ['a__b/c-d.e', 'docker.io/a__b/c-d.e:latest'],
  ];
  for (const [input, want] of table) assert.equal(formatReference(parseReference(input)), want, input);
});

test('invalid references are InvalidArgument with a reason', () => {
  const table: [string, RegExp][] = [
    ['', /empty/],
    ['Busybox', /lowercase/],
    ['docker.io/Library/x', /lowercase/],
    ['busybox:', /invalid tag/],
    ['busybox:-x', /invalid tag/],
    ['busybox@sha256:abc', /invalid digest/],
    ['busybox@md5:' + 'a'.repeat(32), /unsupported digest algorithm/],
    ['a//b', /invalid repository path component/],
    ['a/../b', /invalid repository path component/],
    ['host:99999/x', /invalid registry host/],
    ['-bad.io/x', /invalid registry host/],
    [':tag', /missing repository/],
    ['x/' + 'a'.repeat(300), /longer than 255/],
    ['a b', /invalid repository path component/],
  ];
  for (const [input, re] of table) assert.throws(() => parseReference(input), (e: Error & { code?: string }) => e.code === 'InvalidArgument' && re.test(e.message), input);
});

test('WWW-Authenticate challenges and docker config.json', () => {
  assert.deepEqual(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'), {
    scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' },
  });
  assert.deepEqual(parseChallenge('Basic realm="x"'), { scheme: 'basic', params: { realm: 'x' } });
  assert.equal(parseChallenge('Negotiate'), undefined);
  const f = AuthFile.parse(JSON.stringify({ auths: {
    'https://index.docker.io/v1/': { auth: Buffer.from('hub:pw').toString('base64') },
    '127.0.0.1:5000': { username: 'u', password: 'p' },
  } }));
  assert.deepEqual(f.lookup('docker.io'), { username: 'hub', password: 'pw' });
  assert.deepEqual(f.lookup('127.0.0.1:5000'), { username: 'u', password: 'p' });
  assert.equal(f.lookup('127.0.0.1:5001'), undefined);
  assert.throws(() => AuthFile.parse('{"auths":{"h":{"auth":"bm9jb2xvbg=="}}}'), { code: 'InvalidArgument' });
});
