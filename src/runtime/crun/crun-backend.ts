/**
 * crun: the C OCI runtime, same model as runc. Debian's crun 1.8 refuses a cgroup v1 hybrid
 * host (it wants either pure v1 or a v2 unified hierarchy), so the probe runs a real container
 * and reports crun's own words when it fails.
 */
import { ownedTempDir } from '../../util/temp-dir.ts';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describeLayout } from '../../cgroup/hierarchy.ts';
import { removeTree } from '../../cgroup/tree.ts';
import { run } from '../../util/exec.ts';
import type { ProbeResult, RuntimeCommand } from '../backend.ts';
import { NamespacesJoined } from '../sandbox/namespaces-joined.ts';
import { ConmonBackend, versionLine } from '../conmon-backend.ts';
import { runtimeMessage } from '../errors.ts';
import { writeProbeBundle } from '../pause.ts';

export class CrunBackend extends ConmonBackend {
  readonly name: string = 'crun';
  readonly isolation = 'process' as const;
  /** Containers join the pod's namespaces by path (pinned files or a pause process). */
  readonly podSandbox = new NamespacesJoined(this, this.log);

  runtimeCommand(): RuntimeCommand {
    return { path: this.opts.binary ?? 'crun', globalArgs: ['--root', this.stateDir, ...(this.opts.runtimeArgs ?? [])] };
  }

  protected async probeHost(signal?: AbortSignal): Promise<ProbeResult> {
    const bin = this.runtimeCommand().path;
    let version: string;
    try {
      const v = await run(bin, ['--version'], { timeoutMs: 10_000, ...(signal ? { signal } : {}) });
      if (v.code !== 0) return { available: false, reason: `${bin} --version failed`, details: {} };
      version = versionLine(v.stdout);
    } catch {
      return { available: false, reason: 'crun is not installed; install the crun package', details: {} };
    }
    // a real run of `true` in a minimal bundle tells whether crun accepts this host's cgroups
    const dir = await ownedTempDir('bulkhead-crun-probe-');
    const id = `bulkhead-probe-${process.pid}-${Date.now()}`;
    try {
      await writeProbeBundle(dir, { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }, { type: 'network' }], cgroupsPath: `/bulkhead-probe/${id}` });
      const r = await run(bin, ['--root', join(dir, 'state'), 'run', '--bundle', dir, id], { timeoutMs: 30_000, ...(signal ? { signal } : {}) });
      if (r.code !== 0) {
        const why = runtimeMessage(r.stderr) || `exit ${r.code}`;
        const cg = describeLayout();
        return {
          available: false,
          reason: `crun cannot run containers on this host's cgroup layout (${cg}): "${why}". crun needs a pure cgroup v1 or a cgroup v2 unified hierarchy; boot with systemd.unified_cgroup_hierarchy=1 or use the runc handler`,
          details: { runtimeVersion: version, cgroups: cg },
        };
      }
      return { available: true, details: { runtimeVersion: version, cgroups: describeLayout() } };
    } finally {
      await run(bin, ['--root', join(dir, 'state'), 'delete', '--force', id], { timeoutMs: 10_000 }).catch(() => {});
      await rm(dir, { recursive: true, force: true });
      // crun made the probe's cgroup in every hierarchy, and its parent (left while another probe uses it)
      await removeTree(`/bulkhead-probe/${id}`);
      await removeTree('/bulkhead-probe', { deep: false });
    }
  }
}

