// The pod VM supervisor (src/vm/vmd.ts) against a scripted guest agent on a socketpair: what only
// the supervisor decides and a real guest cannot be made to show on demand — a guest delete that
// has not answered yet, and a sandbox create request that differs from the one a template's sandbox
// container was started with (prepareCreate writes both from one spec: a real run never differs).
// The real paths: test/vm/template.test.ts. And output flow control: a guest that writes faster than
// one client reads, with a second pod in the same process (as under `--supervisor node`).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { VmdClient } from '../../src/vm/client.ts';
import { encodeFrame, FrameDecoder, type Frame } from '../../src/vm/protocol.ts';
import { createLogger } from '../../src/util/log.ts';
import { AGENT_PROTOCOL, CLIENT_BUFFER_BYTES, PodVmSupervisor, SLOT_BYTES } from '../../src/vm/vmd.ts';
import type { GuestAssets } from '../../src/vm/assets.ts';
import type { TemplateImage, TemplateProvider, TemplateRequest, VmConfig, VmExit, VmHandle, Vmm } from '../../src/vm/vmm.ts';

/** The guest side: every frame the supervisor sent, and a way to answer. */
class FakeAgent {
  readonly frames: Frame[] = [];
  readonly #dec = new FrameDecoder('test');
  readonly control: Duplex;
  #toHost!: (b: Buffer) => void;
  /** Answers the agent gives by frame type (undefined: no answer). */
  answer: Partial<Record<Frame['type'], (f: Frame) => [Frame['type'], string] | undefined>> = {};
  /** Output the guest writes as fast as the host reads it (as the agent's port writes wait on a throttled port). */
  readonly #streams: { id: number; left: number; frame: number }[] = [];
  /** Bytes of stream output the host has taken from the channel so far. */
  produced = 0;
  /** While true the guest reads no input: the host's writes queue on its side of the channel. */
  inputBlocked = false;
  readonly #blocked: (() => void)[] = [];
  inputBytes = 0;
  constructor() {
    // host side of the channel: what it writes reaches the agent; the agent pushes into it
    const self = this;
    this.control = new Duplex({
      read() { self.#pump(); },
      write(chunk: Buffer, _enc, cb) {
        for (const f of self.#dec.push(chunk)) {
          self.frames.push(f);
          if (f.type === 'I') self.inputBytes += f.payload.length;
          const a = self.answer[f.type]?.(f);
          if (a) setImmediate(() => self.send(a[0], f.id, a[1]));
        }
        if (self.inputBlocked) self.#blocked.push(cb); else cb();
      },
    });
    this.#toHost = (b) => { this.control.push(b); };
  }
  send(type: Frame['type'], id: number, payload: string): void { this.#toHost(encodeFrame(type, id, payload)); }
  /** `total` bytes of stdout for session `id` in 32 KiB frames (frame k filled with k mod 256), then its exit. */
  stream(id: number, total: number): void { this.#streams.push({ id, left: total, frame: 0 }); this.#pump(); }
  unblockInput(): void { this.inputBlocked = false; for (const cb of this.#blocked.splice(0)) cb(); }
  #pump(): void {
    for (;;) {
      const s = this.#streams[0];
      if (!s) return;
      const n = Math.min(32768, s.left);
      s.left -= n;
      this.produced += n;
      const more = this.control.push(encodeFrame('O', s.id, Buffer.alloc(n, s.frame++ % 256)));
      if (!s.left) { this.#streams.shift(); this.control.push(encodeFrame('X', s.id, '0')); }
      if (!more) return;
    }
  }
  types(): string { return this.frames.map((f) => f.type).join(''); }
}

function fakeVmm(agent: FakeAgent, onBoot: (cfg: VmConfig) => void): Vmm {
  return {
    name: 'qemu',
    async boot(cfg: VmConfig): Promise<VmHandle> {
      onBoot(cfg);
      let exit!: (e: VmExit) => void;
      const exited = new Promise<VmExit>((r) => { exit = r; });
      return {
        pid: process.pid, accel: 'tcg', control: agent.control,
        wait: () => exited,
        stop: async () => { const e = { code: 0, signal: null, reason: 'stopped' }; exit(e); return e; },
        consoleTail: async () => [],
      };
    },
  };
}

describe('pod VM supervisor with a scripted agent', () => {
  let dir: string;
  let image: string;
  const sups: PodVmSupervisor[] = [];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'bh-vmd-fake-'));
    image = join(dir, 'image.ext4');
    writeFileSync(image, Buffer.alloc(4096, 1));
  });
  after(async () => {
    for (const s of sups) await s.shutdown('test over', false).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  const assets = (): GuestAssets => ({ dir: join(dir, 'vm'), kernelRelease: 'k', kernel: '/k', initramfs: '/i', agent: '/a', consoleHelper: '/c', shim: '/s', imagesDir: dir });
  const logger = createLogger({ write: () => {} });

  async function supervisor(name: string, agent: FakeAgent, templates?: TemplateProvider, sandbox?: { image: string; kv: [string, string][] }): Promise<{ sup: PodVmSupervisor; client: VmdClient }> {
    const podDir = join(dir, name);
    const sup = new PodVmSupervisor({
      podId: name, podDir, assets: assets(), vmm: fakeVmm(agent, () => {}), accel: 'tcg', memoryMiB: 256, vcpus: 1, bootTimeoutMs: 5000,
      cgroup: '', logger, volumes: false, ...(templates ? { templates } : {}), ...(sandbox ? { sandbox } : {}),
    });
    sups.push(sup);
    await sup.start();
    return { sup, client: await VmdClient.connect(sup.socketPath) };
  }

  it('answers the delete of an exited app container before the guest has: its name is free at once, its slot once the guest answers', async () => {
    const agent = new FakeAgent();
    agent.send('H', 0, `bulkhead-agent ${AGENT_PROTOCOL} k`); // a booted VM: its hello first
    agent.answer = { C: () => ['A', 'created'], S: () => ['A', '42'] };
    const { client } = await supervisor('del', agent);
    await client.request('create', { name: 'app', image, kv: [['arg', 'true']], sandbox: false });
    await client.request('start', { name: 'app' });
    const gid = agent.frames.find((f) => f.type === 'S')!.id;
    agent.send('X', gid, '0');
    // the supervisor has seen the exit (info says so) before the delete
    for (;;) {
      const i = await client.request<{ containers: { name: string; exited: number | null }[] }>('info');
      if (i.containers[0]?.exited === 0) break;
      await new Promise((r) => setImmediate(r));
    }
    // the guest never answers this delete: the client is answered anyway
    await client.request('delete', { name: 'app' }, 5000);
    assert.equal(agent.frames.at(-1)?.type, 'D', 'the guest was asked to delete it');
    // the name is free: a new container of that name goes into another slot while the old one is taken
    await client.request('create', { name: 'app', image, kv: [['arg', 'true']], sandbox: false });
    const info = await client.request<{ containers: { name: string; slot: number }[] }>('info');
    assert.deepEqual(info.containers.map((c) => [c.name, c.slot]), [['app', 1]]);
    // the guest's answer frees slot 0
    // (the channel's data is handled before the next request's socket read: no wait needed beyond a turn)
    agent.send('A', gid, 'deleted');
    await new Promise((r) => setImmediate(r));
    await client.request('create', { name: 'other', image, kv: [['arg', 'true']], sandbox: false });
    const info2 = await client.request<{ containers: { name: string; slot: number }[] }>('info');
    assert.deepEqual(info2.containers.map((c) => [c.name, c.slot]).sort(), [['app', 1], ['other', 0]]);
    client.close();
  });

  const request = { image: '', kv: [['arg', '/pause'], ['env', 'PATH=/bin'], ['env', 'HOSTNAME=pod-a'], ['hostname', 'pod-a'], ['hosts', '127.0.0.1 pod-a\n']] as [string, string][] };
  const provider = (got: TemplateRequest[]): TemplateProvider => ({
    async get(req) { got.push(req); return { key: 'k'.repeat(32), memFile: '/m', stateFile: '/s', kernel: 'k', agentVersion: AGENT_PROTOCOL, nodeWide: false, sandbox: { hash: req.sandbox!.hash, gid: 1, pid: 7 } } satisfies TemplateImage; },
    async restore(_vm, _t, _ms, beforeRun) { await beforeRun?.(); /* the fake VM runs as it is */ },
  });
  const cloneAgent = (): FakeAgent => {
    const agent = new FakeAgent();
    agent.answer = { U: () => ['A', `bulkhead-agent ${AGENT_PROTOCOL} k random=${'ab'.repeat(32)}`], C: () => ['A', 'created'], S: () => ['A', '99'], D: () => ['A', 'deleted'] };
    return agent;
  };

  it('a clone adopts its template\'s sandbox container for the request it was started with: no create or start reaches the guest; the pod\'s hostname and files go with the identity', async () => {
    const agent = cloneAgent();
    const got: TemplateRequest[] = [];
    const { client } = await supervisor('adopt', agent, provider(got), { ...request, image });
    // the template is asked for with the request's generic part only
    assert.deepEqual(got[0]?.sandbox?.kv, [['arg', '/pause'], ['env', 'PATH=/bin']]);
    const u = agent.frames.find((f) => f.type === 'U')!.payload.toString('utf8').split('\0');
    for (const kv of ['sb=1', 'sb_hostname=pod-a', 'sb_hosts=127.0.0.1 pod-a\n']) assert.ok(u.includes(kv), `identity carries ${JSON.stringify(kv)}`);
    assert.ok(!u.some((kv) => kv.startsWith('sb_env') || kv.startsWith('hostname=')), 'only the pod\'s names and files, for the sandbox');
    const created = await client.request<{ id: number }>('create', { name: 'pod-a', image, kv: request.kv, sandbox: true });
    assert.equal(created.id, 1);
    const started = await client.request<{ pid: number }>('start', { name: 'pod-a' });
    assert.equal(started.pid, 7, 'the template\'s sandbox process');
    assert.equal(agent.types(), 'U', 'nothing but the identity reached the guest');
    // an app container is created as usual, in the next slot and session
    await client.request('create', { name: 'app', image, kv: [['arg', 'true']], sandbox: false });
    const c = agent.frames.at(-1)!;
    assert.equal(c.type, 'C');
    assert.equal(c.id, 2);
    assert.ok(c.payload.toString('utf8').split('\0').includes('slot=slot1'));
    client.close();
  });

  it('a clone is ready before its identity is answered, and nothing else reaches its guest until then: held requests follow the answer in order', async () => {
    const agent = cloneAgent();
    const { U: _u, ...rest } = agent.answer;
    agent.answer = rest; // the identity is answered below, by hand
    const { client } = await supervisor('pipelined', agent, provider([]), { ...request, image });
    assert.equal(agent.types(), 'U', 'the start sent the identity and did not wait for its answer');
    // the sandbox is adopted without the guest; an app container's create waits for the identity
    await client.request('create', { name: 'pod-p', image, kv: request.kv, sandbox: true });
    await client.request('start', { name: 'pod-p' });
    const created = client.request('create', { name: 'app', image, kv: [['arg', 'true']], sandbox: false });
    // the supervisor has taken the create (its slot filled, its request made) before the assertion below
    for (;;) {
      const info = await client.request<{ containers: { name: string }[] }>('info');
      if (info.containers.some((c) => c.name === 'app')) break;
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(agent.types(), 'U', 'the create is held while the identity is unanswered');
    agent.send('A', 0, `bulkhead-agent ${AGENT_PROTOCOL} k random=${'cd'.repeat(32)}`);
    await created;
    assert.equal(agent.types(), 'UC', 'then sent');
    client.close();
  });

  it('a clone whose identity fails after it was ready stops as a crashed VM does: its clients are told why, held requests never reach the guest, and a template whose sandbox container is gone is removed', async () => {
    const agent = cloneAgent();
    const { U: _u, ...rest } = agent.answer;
    agent.answer = rest;
    const discarded: string[] = [];
    const templates: TemplateProvider = { ...provider([]), async discard(t) { discarded.push(t.key); } };
    const { sup, client } = await supervisor('identity-fails', agent, templates, { ...request, image });
    await client.request('create', { name: 'pod-f', image, kv: request.kv, sandbox: true });
    const gone = new Promise<string>((r) => client.once('gone', r));
    const created = client.request('create', { name: 'app', image, kv: [['arg', 'true']], sandbox: false });
    agent.send('F', 0, 'identity: the template\'s sandbox container is not running');
    await assert.rejects(created, (e: Error & { code?: string }) => /pod VM gone: .*identity/.test(e.message));
    assert.match(await gone, /refused or did not take its identity.*sandbox container is not running/);
    assert.equal(await sup.finished(), 1, 'the supervisor ends as after a crash');
    assert.ok(!agent.types().includes('C'), `nothing after the identity reached the guest (${agent.types()})`);
    assert.deepEqual(discarded, ['k'.repeat(32)], 'the template is removed');
    assert.ok(existsSync(join(dir, 'identity-fails', 'exit.json')), 'the pod dir keeps the reason for its containers\' delete');
    client.close();
  });

  it('a clone given up after its identity was sent (its restore failed) boots instead, and nothing of that identity holds the booted VM\'s requests', async () => {
    const agent = new FakeAgent();
    agent.answer = { C: () => ['A', 'created'] };
    const templates: TemplateProvider = {
      ...provider([]),
      async restore(_vm, _t, _ms, beforeRun) { await beforeRun?.(); throw new Error('QEMU refused cont'); },
    };
    const podDir = join(dir, 'fallback');
    const sup = new PodVmSupervisor({
      podId: 'fallback', podDir, assets: assets(), accel: 'tcg', memoryMiB: 256, vcpus: 1, bootTimeoutMs: 5000, cgroup: '', logger, volumes: false, templates, sandbox: { ...request, image },
      // the boot after the clone: its agent says hello
      vmm: fakeVmm(agent, (cfg) => { if (!cfg.incoming) setImmediate(() => agent.send('H', 0, `bulkhead-agent ${AGENT_PROTOCOL} k`)); }),
    });
    sups.push(sup);
    await sup.start();
    const client = await VmdClient.connect(sup.socketPath);
    const info = await client.request<{ template: string | null }>('info');
    assert.equal(info.template, null, 'booted, not a clone');
    assert.equal(agent.types(), 'U', 'the clone had been sent its identity');
    await client.request('create', { name: 'app', image, kv: [['arg', 'true']], sandbox: false }, 5000);
    assert.equal(agent.types(), 'UC', 'the booted VM\'s create is not held behind the clone\'s identity');
    client.close();
  });

  /** A `Y` frame's header (u32 length, then key=value\0 pairs). */
  const copyHeader = (f: Frame): Record<string, string> => {
    const n = f.payload.readUInt32BE(0);
    return Object.fromEntries(f.payload.subarray(4, 4 + n).toString().split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  };

  it('copied volumes: sent before the create; a copy the guest refuses fails the create and deletes the container again', async () => {
    const agent = new FakeAgent();
    agent.send('H', 0, `bulkhead-agent ${AGENT_PROTOCOL} k`);
    const cfg = join(dir, 'cfg-refused');
    mkdirSync(cfg);
    writeFileSync(join(cfg, 'a'), 'x'.repeat(1000));
    agent.answer = {
      Y: (f) => (copyHeader(f).path === 'a' ? ['F', 'copy: write a: No space left on device'] : ['A', 'ok']),
      C: () => ['A', 'created'], D: () => ['A', 'deleted'],
    };
    const { client } = await supervisor('copy-refused', agent);
    const copies = [{ n: 0, kind: 'ro-dir', source: cfg, destination: '/etc/cfg', readonly: true }];
    await assert.rejects(client.request('create', { name: 'app', image, kv: [['arg', 'true']], sandbox: false, copies }), /copied volumes: copy: write a: No space left on device/);
    assert.equal(agent.types().replace(/^H?/, ''), 'YYCD', 'init and the file before the create, a delete after it');
    assert.deepEqual(copyHeader(agent.frames.find((f) => f.type === 'Y')!), { op: 'init', dir: String(agent.frames.find((f) => f.type === 'C')!.id), size: String(2 * 1000 + (256 << 10)) });
    const c = agent.frames.find((f) => f.type === 'C')!;
    assert.match(c.payload.toString(), /cvol=\d+\/0\x1f\/etc\/cfg\x1fro\x1fd\x1fprivate/);
    // the name is free again
    for (;;) {
      const i = await client.request<{ containers: unknown[] }>('info');
      if (i.containers.length === 0) break;
      await new Promise((r) => setImmediate(r));
    }
  });

  it('copied volumes: the supervisor sends a volume no faster than the guest takes it (at most ~1 MiB queued on the channel)', async () => {
    const agent = new FakeAgent();
    agent.send('H', 0, `bulkhead-agent ${AGENT_PROTOCOL} k`);
    const cfg = join(dir, 'cfg-big');
    mkdirSync(cfg);
    for (let i = 0; i < 6; i++) writeFileSync(join(cfg, `f${i}`), Buffer.alloc(1 << 20, i));
    agent.answer = { Y: () => ['A', 'ok'], C: () => ['A', 'created'] };
    const { client } = await supervisor('copy-flow', agent);
    agent.inputBlocked = true;
    const warned: string[] = [];
    const onWarn = (w: Error): void => { warned.push(w.name); };
    process.on('warning', onWarn);
    try {
      const created = client.request('create', { name: 'app', image, kv: [['arg', 'true']], sandbox: false, copies: [{ n: 0, kind: 'ro-dir', source: cfg, destination: '/cfg', readonly: true }] }, 20_000);
      await new Promise((r) => setTimeout(r, 300));
      // what waits on the host side of the channel: the bound plus the one chunk that crossed it, not the 6 MiB
      const queued = agent.control.writableLength;
      assert.ok(queued > 0 && queued <= CLIENT_BUFFER_BYTES + (600 << 10), `${queued} bytes queued for a guest that reads nothing`);
      assert.ok(!agent.frames.some((f) => f.type === 'C'), 'the create waits for its volumes');
      agent.unblockInput();
      await created;
      const puts = agent.frames.filter((f) => f.type === 'Y').map(copyHeader);
      assert.equal(puts.filter((h) => h.op === 'put' && h.end === '1').length, 6, 'every file whole, in 512 KiB chunks');
      assert.equal(puts.filter((h) => h.op === 'put').length, 12);
      assert.deepEqual(warned, [], 'no listener piles up while it waits');
    } finally {
      process.off('warning', onWarn);
    }
  });

  it('copied volumes: a termination log comes back to the host file before the exit is told; a refused get still tells the exit', async () => {
    const agent = new FakeAgent();
    agent.send('H', 0, `bulkhead-agent ${AGENT_PROTOCOL} k`);
    const term = join(dir, 'termination-log');
    writeFileSync(term, '');
    agent.answer = { Y: (f) => (copyHeader(f).op === 'get' ? undefined : ['A', 'ok']), C: () => ['A', 'created'], S: () => ['A', '42'] };
    const { client } = await supervisor('copy-back', agent);
    const copies = [{ n: 0, kind: 'rw-file', source: term, destination: '/dev/termination-log', readonly: false, writeBack: true }];
    const exitedOf = async (): Promise<number | null | undefined> => (await client.request<{ containers: { exited: number | null }[] }>('info')).containers[0]?.exited;
    for (const [round, answer] of [[0, 'A'], [1, 'F']] as const) {
      const name = `app${round}`;
      await client.request('create', { name, image, kv: [['arg', 'true']], sandbox: false, copies });
      await client.request('start', { name });
      const gid = agent.frames.filter((f) => f.type === 'S').at(-1)!.id;
      agent.send('X', gid, '3');
      let get: Frame | undefined;
      while (!(get = agent.frames.find((f) => f.type === 'Y' && f.id === gid && copyHeader(f).op === 'get'))) await new Promise((r) => setImmediate(r));
      assert.deepEqual(copyHeader(get), { op: 'get', dir: `${gid}/0`, path: 'f' });
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(await exitedOf(), null, 'the exit waits for the termination log');
      agent.send(answer, gid, answer === 'A' ? 'the message\n' : 'copy: read f: No such file or directory');
      while ((await exitedOf()) !== 3) await new Promise((r) => setImmediate(r));
      assert.equal(readFileSync(term, 'utf8'), 'the message\n', round ? 'a refused get leaves the host file as it was' : 'written before the exit was told');
      await client.request('delete', { name }, 5000);
    }
  });

  it('a sandbox request that differs from the one the template\'s container was started with deletes that container and creates its own', async () => {
    const agent = cloneAgent();
    const { client } = await supervisor('mismatch', agent, provider([]), { ...request, image });
    const other = [...request.kv, ['env', 'EXTRA=1']] as [string, string][];
    const created = await client.request<{ id: number }>('create', { name: 'pod-b', image, kv: other, sandbox: true });
    assert.notEqual(created.id, 1);
    assert.equal(agent.types(), 'UDC', 'the template\'s container deleted, the pod\'s created');
    assert.equal(agent.frames[1]!.id, 1);
    assert.ok(agent.frames[2]!.payload.toString('utf8').split('\0').includes('env=EXTRA=1'));
    await client.request('start', { name: 'pod-b' });
    assert.equal(agent.types(), 'UDCS', 'and started in the guest');
    client.close();
  });

  it('a warm-up runs one throwaway container of the sandbox\'s image through create, start and delete in a free slot, and leaves the pod as it was', async () => {
    const agent = new FakeAgent();
    agent.send('H', 0, `bulkhead-agent ${AGENT_PROTOCOL} k`);
    agent.answer.C = () => ['A', 'created'];
    agent.answer.S = () => ['A', '42'];
    agent.answer.D = () => ['A', 'deleted'];
    const { client } = await supervisor('warm', agent);
    const sbKv: [string, string][] = [['arg', '/pause'], ['hostname', 'pod-a'], ['sysctl', 'kernel.shm_rmid_forced=1'], ['cap', 'CAP_KILL'], ['seccomp', 'x']];
    await client.request('create', { name: 'pod-w', image, kv: sbKv, sandbox: true });
    await client.request('start', { name: 'pod-w' });
    const before = await client.request<{ containers: unknown[] }>('info');
    agent.frames.length = 0;
    const r = await client.request<{ ms: number }>('warmup', {}, 5000);
    assert.equal(typeof r.ms, 'number');
    assert.equal(agent.types(), 'CSD', 'create, start, delete of one session');
    const [c, st, d] = agent.frames;
    assert.ok(c!.id !== 1 && st!.id === c!.id && d!.id === c!.id, 'its own session, not the sandbox\'s');
    const kv = c!.payload.toString().split('\0').filter(Boolean);
    assert.ok(kv.includes('slot=slot7'), `the last free slot: ${kv.join(' ')}`);
    assert.ok(kv.includes('arg=/pause') && kv.includes('cap=CAP_KILL') && kv.includes('seccomp=x'), 'the sandbox\'s process and settings');
    assert.ok(kv.includes('join_ipc=1') && kv.includes('join_uts=1'), 'in the sandbox\'s IPC and UTS namespaces, as an app container');
    assert.ok(!kv.some((e) => e.startsWith('hostname=') || e.startsWith('sysctl=')), `never the pod's hostname or sysctls: ${kv.join(' ')}`);
    assert.deepEqual((await client.request<{ containers: unknown[] }>('info')).containers, before.containers, 'nothing of it is left');
    const slot7 = statSync(join(dir, 'warm', 'slot7.img'));
    assert.equal(slot7.blocks, 0, 'its slot is sparse zeros again (a later fill writes only an image\'s non-zero runs)');
    assert.equal(slot7.size, SLOT_BYTES);
    // an app container takes the first free slot as before; a start that fails still deletes
    agent.answer.S = () => ['F', 'start: exec /pause: no such file'];
    agent.frames.length = 0;
    await assert.rejects(client.request('warmup', {}, 5000), /no such file/);
    assert.equal(agent.types(), 'CSD');
    agent.frames.length = 0;
    agent.answer.C = () => ['F', 'create: mount: bad'];
    await assert.rejects(client.request('warmup', {}, 5000));
    assert.equal(agent.types(), 'C', 'a create that failed: nothing to delete');
    agent.answer.C = () => ['A', 'created'];
    agent.frames.length = 0;
    await client.request('create', { name: 'app', image, kv: [['arg', 'true']], sandbox: false });
    assert.ok(agent.frames[0]!.payload.toString().includes('slot=slot1\0'), 'the warm-up\'s slot is free again and the app takes the first');
  });

  it('a warm-up needs a sandbox container', async () => {
    const agent = new FakeAgent();
    agent.send('H', 0, `bulkhead-agent ${AGENT_PROTOCOL} k`);
    const { client } = await supervisor('warm-none', agent);
    await assert.rejects(client.request('warmup', {}, 5000), /no sandbox container/);
    assert.equal(agent.types(), '');
  });
});

/** A client on a raw socket, to stop reading it: requests, and every frame of its sessions. */
class RawClient {
  readonly sock: Socket;
  readonly #dec = new FrameDecoder('test client');
  #next = 1;
  readonly #waiting = new Map<number, (f: Frame) => void>();
  /** Output bytes per session, checked in order (frame k of a stream is filled with k mod 256). */
  readonly out = new Map<number, { bytes: number; frames: number; bad: number }>();
  readonly exits = new Map<number, (code: string) => void>();
  private constructor(sock: Socket) {
    this.sock = sock;
    sock.on('data', (b: Buffer) => {
      for (const f of this.#dec.push(b)) {
        if (f.type === 'A' || f.type === 'F') { this.#waiting.get(f.id)?.(f); this.#waiting.delete(f.id); continue; }
        if (f.type === 'O') {
          const o = this.out.get(f.id) ?? { bytes: 0, frames: 0, bad: 0 };
          if (f.payload.some((x) => x !== o.frames % 256)) o.bad++;
          o.frames++;
          o.bytes += f.payload.length;
          this.out.set(f.id, o);
        }
        if (f.type === 'X') this.exits.get(f.id)?.(f.payload.toString());
      }
    });
  }
  static async connect(path: string): Promise<RawClient> {
    const sock = connect(path);
    await new Promise((r, j) => { sock.once('connect', r); sock.once('error', j); });
    return new RawClient(sock);
  }
  request(op: string, args: Record<string, unknown> = {}): Promise<Frame> {
    const id = this.#next++;
    const p = new Promise<Frame>((r) => this.#waiting.set(id, r));
    this.sock.write(encodeFrame('Q', id, JSON.stringify({ op, ...args })));
    return p;
  }
  exited(gid: number): Promise<string> { return new Promise((r) => this.exits.set(gid, r)); }
}

describe('output flow control in the pod VM supervisor (two pods in one process, as under --supervisor node)', () => {
  let dir: string;
  let image: string;
  const sups: PodVmSupervisor[] = [];
  const socks: Socket[] = [];
  const closers: (() => void)[] = [];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'bh-vmd-flow-'));
    image = join(dir, 'image.ext4');
    writeFileSync(image, Buffer.alloc(4096, 1));
  });
  after(async () => {
    for (const s of socks) s.destroy();
    for (const c of closers) c();
    for (const s of sups) await s.shutdown('test over', false).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });
  const logger = createLogger({ write: () => {} });
  interface Flow { queued: number; toGuest: number; paused: boolean; pauses: number; held: number }

  async function pod(name: string): Promise<{ agent: FakeAgent; sup: PodVmSupervisor; client: RawClient; gid: number; info: () => Promise<Flow> }> {
    const agent = new FakeAgent();
    agent.send('H', 0, `bulkhead-agent ${AGENT_PROTOCOL} k`);
    agent.answer = { C: () => ['A', 'created'], S: () => ['A', '42'] };
    const sup = new PodVmSupervisor({
      podId: name, podDir: join(dir, name), vmm: fakeVmm(agent, () => {}), accel: 'tcg', memoryMiB: 256, vcpus: 1, bootTimeoutMs: 5000, cgroup: '', logger, volumes: false,
      assets: { dir: join(dir, 'vm'), kernelRelease: 'k', kernel: '/k', initramfs: '/i', agent: '/a', consoleHelper: '/c', shim: '/s', imagesDir: dir },
    });
    sups.push(sup);
    await sup.start();
    const client = await RawClient.connect(sup.socketPath);
    socks.push(client.sock);
    const created = await client.request('create', { name: 'app', image, kv: [['arg', 'yes']], sandbox: false });
    assert.equal(created.type, 'A');
    const gid = (JSON.parse(created.payload.toString()) as { id: number }).id;
    assert.equal((await client.request('start', { name: 'app' })).type, 'A');
    const other = await VmdClient.connect(sup.socketPath);
    closers.push(() => other.close());
    const info = async (): Promise<Flow> => (await other.request<{ flow: Flow }>('info')).flow;
    return { agent, sup, client, gid, info };
  }

  it('a client that stops reading stops its own pod\'s guest channel at a bound, not the other pod\'s output, and gets everything once it reads', async () => {
    const total = 32 << 20;
    const a = await pod('slow');
    const b = await pod('fast');
    a.client.sock.pause(); // pod a's reader stops reading
    const aExit = a.client.exited(a.gid);
    a.agent.stream(a.gid, total);
    // until the supervisor pauses pod a's channel (or, without flow control, takes all of it)
    let fa = await a.info();
    while (!fa.paused && a.agent.produced < total) fa = await a.info();
    assert.ok(fa.paused, 'pod a\'s guest channel is paused');
    // what pod a made the supervisor take: the bound, one read of the channel, the sockets' kernel buffers
    assert.ok(fa.queued <= CLIENT_BUFFER_BYTES + (1 << 20), `supervisor queue for the slow client ${fa.queued} bytes`);
    const producedA = a.agent.produced;
    assert.ok(producedA < 4 << 20, `pod a's guest wrote ${producedA} of ${total} bytes while its reader read nothing`);
    // pod b's output flows meanwhile, all of it, more than the bound
    const bExit = b.client.exited(b.gid);
    b.agent.stream(b.gid, 8 << 20);
    assert.equal(await bExit, '0');
    assert.deepEqual(b.client.out.get(b.gid), { bytes: 8 << 20, frames: 256, bad: 0 });
    // pod a did not move while b ran: still paused, nothing more taken from its guest
    fa = await a.info();
    assert.ok(fa.paused);
    assert.equal(a.agent.produced, producedA);
    // pod a's reader reads again: everything arrives, in order, and the channel reads on
    a.client.sock.resume();
    assert.equal(await aExit, '0');
    assert.deepEqual(a.client.out.get(a.gid), { bytes: total, frames: total / 32768, bad: 0 });
    fa = await a.info();
    assert.equal(fa.paused, false);
    assert.ok(fa.pauses >= 1);
    a.client.sock.end();
    b.client.sock.end();
  });

  it('a client\'s input the guest does not take is held at the bound: its socket is not read until the channel drains', async () => {
    const c = await pod('input');
    c.agent.inputBlocked = true;
    const chunk = Buffer.alloc(65536, 7);
    const total = 8 << 20;
    for (let n = 0; n < total; n += chunk.length) c.client.sock.write(encodeFrame('I', c.gid, chunk));
    let f = await c.info();
    while (f.held === 0 && c.agent.inputBytes < total) f = await c.info();
    assert.equal(f.held, 1, 'the client is not read');
    // a few more turns of the supervisor's loop: a held client's socket stays unread
    for (let i = 0; i < 20; i++) f = await c.info();
    assert.ok(f.toGuest <= CLIENT_BUFFER_BYTES + (1 << 20), `queued for the guest ${f.toGuest} bytes`);
    c.agent.unblockInput();
    while (c.agent.inputBytes < total) await c.info();
    assert.equal(c.agent.inputBytes, total);
    assert.equal((await c.info()).held, 0);
    c.client.sock.end();
  });
});
