/**
 * runc: Linux namespaces + cgroups + seccomp, the host kernel shared ('process' isolation).
 * Pods: containers join the pod's namespaces by path (../sandbox/namespaces-joined.ts).
 */
import { run } from '../../util/exec.ts';
import type { Isolation, ProbeResult, RuntimeCommand } from '../backend.ts';
import { NamespacesJoined } from '../sandbox/namespaces-joined.ts';
import { ConmonBackend, versionLine } from '../conmon-backend.ts';
import type { InProcessRuntime } from '../conmon/driver.ts';
import { endedContainer, removeEndedContainer } from './runc-delete.ts';
import { createdContainer, startCreatedContainer } from './runc-start.ts';

export class RuncBackend extends ConmonBackend {
  readonly name: string = 'runc';
  readonly isolation: Isolation = 'process';
  /** Containers join the pod's namespaces by path (pinned files or a pause process). */
  readonly podSandbox = new NamespacesJoined(this, this.log);

  runtimeCommand(): RuntimeCommand {
    return { path: this.opts.binary ?? 'runc', globalArgs: ['--root', this.stateDir, ...(this.opts.runtimeArgs ?? [])] };
  }

  /**
   * `start` of a created container (./runc-start.ts) and `delete --force` of a container whose exit
   * conmon recorded (./runc-delete.ts) run in the daemon's process: what runc would do there,
   * without a Go binary's start; every other case, and every other command, spawns runc. Off with
   * BULKHEAD_RUNC_IN_PROCESS=0 (for measuring against runc's own).
   */
  protected override inProcessRuntime(): InProcessRuntime | undefined {
    if (process.env.BULKHEAD_RUNC_IN_PROCESS === '0') return undefined;
    return (args, opts) => {
      if (args.length === 2 && args[0] === 'start') {
        const created = createdContainer(this.stateDir, args[1]!);
        if (!created) return undefined;
        return startCreatedContainer(created, opts.timeoutMs, opts.signal).then((done) => {
          if (done) return '';
          this.log.debug('the created container gave no start signal; runc starts it', { id: created.id });
          return undefined;
        });
      }
      const c = this.endedDeleteOf(args);
      const ended = c && endedContainer(this.stateDir, c.id, c.spec);
      if (!ended) return undefined;
      return removeEndedContainer(ended).then((done) => {
        if (done) return '';
        this.log.debug('a cgroup of the ended container stays; runc deletes it', { id: ended.id });
        return undefined;
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
