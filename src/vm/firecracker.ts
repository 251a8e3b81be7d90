/**
 * Firecracker driver, used only when a `firecracker` binary is configured (`--firecracker PATH`).
 * Configured through its HTTP API on a unix socket (machine-config, boot-source, drives, vsock,
 * InstanceStart). Firecracker has no virtio-serial: the agent channel is virtio-vsock — the guest
 * agent connects to the host (CID 2) port 1024, which Firecracker forwards to the unix socket
 * `<uds_path>_1024` we listen on. Firecracker needs KVM; drives are found by order (no serials).
 * Not exercised on this host (no binary): see test/vm/firecracker.test.ts.
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync, existsSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { join } from 'node:path';
import { FailedPreconditionError, InternalError, UnavailableError } from '../errors.ts';
import { stopVmmProcess, tailFile, type VmConfig, type VmExit, type VmHandle, type Vmm } from './vmm.ts';

export const AGENT_VSOCK_PORT = 1024;

function api(sock: string, path: string, body: unknown): Promise<void> {
  // node:http (and the dozen modules it loads) only here: the supervisors' bundle (src/cli/bundle-build.ts)
  // holds this module, and a static import would load it into every node-wide host (~1 MiB, QEMU pods too)
  const { request } = process.getBuiltinModule('node:http');
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = request({ socketPath: sock, method: 'PUT', path, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } }, (res) => {
      let text = '';
      res.on('data', (b: Buffer) => { text += b.toString(); });
      res.on('end', () => {
        if ((res.statusCode ?? 500) < 300) resolve();
        else reject(new InternalError(`firecracker PUT ${path}: ${res.statusCode} ${text.trim()}`));
      });
    });
    req.setTimeout(10_000, () => req.destroy(new InternalError(`firecracker PUT ${path} timed out`)));
    req.on('error', reject);
    req.end(data);
  });
}

/** A Duplex that buffers writes until the guest's vsock connection arrives, then pipes both ways. */
class LateSocket extends Duplex {
  #sock: Socket | undefined;
  #queue: { chunk: Buffer; cb: (e?: Error | null) => void }[] = [];
  attach(s: Socket): void {
    this.#sock = s;
    s.on('data', (b: Buffer) => { this.push(b); });
    s.on('end', () => this.push(null));
    s.on('error', (e) => this.destroy(e));
    for (const q of this.#queue.splice(0)) s.write(q.chunk, q.cb);
  }
  override _read(): void { /* data is pushed as it arrives */ }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.#sock) this.#sock.write(chunk, cb); else this.#queue.push({ chunk, cb });
  }
  override _destroy(err: Error | null, cb: (e: Error | null) => void): void { this.#sock?.destroy(); cb(err); }
}

export class FirecrackerVmm implements Vmm {
  readonly name = 'firecracker' as const;
  readonly #binary: string;
  constructor(binary: string) { this.#binary = binary; }

  async boot(cfg: VmConfig, signal?: AbortSignal): Promise<VmHandle> {
    if (cfg.accel !== 'kvm') throw new FailedPreconditionError('Firecracker needs KVM, which does not run guests on this host');
    const apiSock = join(cfg.workDir, 'fc-api.sock');
    const vsock = join(cfg.workDir, 'fc-vsock.sock');
    const control = new LateSocket();
    const server = createServer((s) => { server.close(); control.attach(s); });
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(`${vsock}_${AGENT_VSOCK_PORT}`, () => resolve()); });
    const logFd = openSync(cfg.consoleLog, 'a');
    const child = spawn(this.#binary, ['--api-sock', apiSock, '--id', cfg.name.replace(/[^A-Za-z0-9-]/g, '-').slice(0, 60)], { stdio: ['ignore', logFd, logFd], ...(signal ? { signal } : {}) });
    closeSync(logFd);
    const exited = new Promise<VmExit>((resolve) => {
      child.once('exit', (code, sig) => {
        server.close();
        resolve({ code, signal: sig, reason: sig ? `VMM (firecracker pid ${child.pid}) killed by ${sig}` : code === 0 ? 'guest powered off' : `VMM (firecracker) exited with code ${code}` });
      });
    });
    child.once('error', () => {});
    if (child.pid === undefined) throw new UnavailableError(`${this.#binary} could not be started`);
    for (let i = 0; i < 100 && !existsSync(apiSock); i++) await new Promise((r) => setTimeout(r, 20));
    try {
      await api(apiSock, '/machine-config', { vcpu_count: cfg.vcpus, mem_size_mib: cfg.memoryMiB, smt: false });
      await api(apiSock, '/boot-source', {
        kernel_image_path: cfg.kernel, initrd_path: cfg.initramfs,
        boot_args: ['console=ttyS0', 'quiet', 'panic=-1', 'reboot=k', 'pci=off', ...(cfg.kernelArgs ?? [])].join(' '),
      });
      for (const d of cfg.drives) await api(apiSock, `/drives/${d.serial}`, { drive_id: d.serial, path_on_host: d.path, is_root_device: false, is_read_only: true });
      await api(apiSock, '/vsock', { guest_cid: 3, uds_path: vsock });
      await api(apiSock, '/actions', { action_type: 'InstanceStart' });
    } catch (e) {
      child.kill('SIGKILL');
      await exited;
      throw e;
    }
    const consoleLog = cfg.consoleLog;
    return {
      pid: child.pid,
      accel: 'kvm',
      control,
      wait: () => exited,
      stop: (graceMs = 3000) => stopVmmProcess(child, exited, graceMs),
      consoleTail: (n = 20) => tailFile(consoleLog, n),
    };
  }
}
