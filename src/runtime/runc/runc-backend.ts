/**
 * runc: Linux namespaces + cgroups + seccomp, the host kernel shared ('process' isolation).
 * Pods: containers join the pod's namespaces by path (../sandbox/namespaces-joined.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../util/exec.ts';
import type { OciSpec } from '../../oci/spec.ts';
import type { Isolation, ProbeResult, RuntimeCommand } from '../backend.ts';
import { NamespacesJoined } from '../sandbox/namespaces-joined.ts';
import { ConmonBackend, versionLine } from '../conmon-backend.ts';
import type { InProcessRuntime } from '../conmon/driver.ts';
import { classifyRuntimeFailure } from '../errors.ts';
import { endedContainer, removeEndedContainer } from './runc-delete.ts';

export class RuncBackend extends ConmonBackend {
  readonly name: string = 'runc';
  readonly isolation: Isolation = 'process';
  /** Containers join the pod's namespaces by path (pinned files or a pause process). */
  readonly podSandbox = new NamespacesJoined(this, this.log);

  runtimeCommand(): RuntimeCommand {
    return { path: this.opts.binary ?? 'runc', globalArgs: ['--root', this.stateDir, ...(this.opts.runtimeArgs ?? [])] };
  }

  /**
   * `delete --force` of a container whose exit conmon recorded runs in the daemon's process
   * (./runc-delete.ts: what runc would do there, without a Go binary's start); every other case,
   * and every other command, spawns runc. Off with BULKHEAD_RUNC_IN_PROCESS=0 (for measuring
   * against runc's own delete).
   */
  protected override inProcessRuntime(): InProcessRuntime | undefined {
    if (process.env.BULKHEAD_RUNC_IN_PROCESS === '0') return undefined;
    return (args, { signal, timeoutMs }) => {
      if (args.length !== 3 || args[0] !== 'delete' || args[1] !== '--force') return undefined;
      const id = args[2]!;
      if (!existsSync(this.driver.exitFile(id))) return undefined;
      let spec: OciSpec;
      try { spec = JSON.parse(readFileSync(join(this.driver.bundleDir(id), 'config.json'), 'utf8')) as OciSpec; } catch { return undefined; }
      const ended = endedContainer(this.stateDir, id, spec);
      if (!ended) return undefined;
      return removeEndedContainer(ended).then(async (done) => {
        if (done) return '';
        this.log.debug('a cgroup of the ended container stays; runc deletes it', { id });
        const r = await run(this.driver.runtime.path, [...this.driver.runtime.globalArgs, ...args], { timeoutMs, ...(signal ? { signal } : {}) });
        if (r.code !== 0) throw classifyRuntimeFailure({ what: `${this.driver.runtime.path} delete ${id}`, stderr: r.stderr, stdout: r.stdout, code: r.code });
        return r.stdout;
      });
    };
  }

  protected async probeHost(signal?: AbortSignal): Promise<ProbeResult> {
    const bin = this.runtimeCommand().path;
    try {
      const v = await run(bin, ['--version'], { timeoutMs: 10_000, ...(signal ? { signal } : {}) });
      if (v.code !== 0) return { available: false, reason: `${bin} --version failed: ${v.stderr.trim()}`, details: {} };
      const c = await run(this.opts.conmon ?? 'conmon', ['--version'], { timeoutMs: 10_000, ...(signal ? { signal } : {}) });
      return { available: true, details: { runtimeVersion: versionLine(v.stdout), conmonVersion: versionLine(c.stdout) } };
    } catch (err) {
      return { available: false, reason: `${bin} or conmon not usable (${(err as Error).message}); install the runc and conmon packages`, details: {} };
    }
  }
}
