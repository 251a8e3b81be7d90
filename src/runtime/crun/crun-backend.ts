/**
 * crun: the C OCI runtime, same model as runc. Debian's crun 1.8 refuses a cgroup v1 hybrid
 * host (it wants either pure v1 or a v2 unified hierarchy), so the probe runs a real container
 * and reports crun's own words when it fails. That refusal on a hybrid host is kept until the
 * crun binary or the cgroup layout changes (the handler registry asks again every 30 s: three
 * process runs each time otherwise); a fresh probe (`bulkhead doctor`) runs crun again.
 */
import { ownedTempDir } from '../../util/temp-dir.ts';
import { realpathSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { cgroupLayout, describeLayout } from '../../cgroup/hierarchy.ts';
import { removeTree } from '../../cgroup/tree.ts';
import { run } from '../../util/exec.ts';
import type { ProbeOptions, ProbeResult, RuntimeCommand } from '../backend.ts';
import { resolveBinary } from '../conmon/shared.ts';
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

  /** crun's refusal of this host's cgroup layout, with what it depends on (refusalKey). */
  #refused: { key: string; result: ProbeResult } | undefined;

  /** What a refusal depends on: the crun binary (real path, inode, size, times) and the cgroup layout. */
  #refusalKey(): string | undefined {
    try {
      const bin = realpathSync(resolveBinary(this.runtimeCommand().path));
      const st = statSync(bin);
      return JSON.stringify([bin, st.dev, st.ino, st.size, st.mtimeMs, st.ctimeMs, cgroupLayout()]);
    } catch { return undefined; }
  }

  protected async probeHost(signal?: AbortSignal, opts: ProbeOptions = {}): Promise<ProbeResult> {
    const key = this.#refusalKey();
    if (!opts.fresh && key !== undefined && this.#refused?.key === key) return this.#refused.result;
    this.#refused = undefined;
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
        const refused: ProbeResult = {
          available: false,
          reason: `crun cannot run containers on this host's cgroup layout (${cg}): "${why}". crun needs a pure cgroup v1 or a cgroup v2 unified hierarchy; boot with systemd.unified_cgroup_hierarchy=1 or use the runc handler`,
          details: { runtimeVersion: version, cgroups: cg },
        };
        // crun's own exit on a hybrid host (a timeout throws above): the same until crun or the layout changes
        if (cgroupLayout() === 'v1-hybrid' && r.code !== null && key !== undefined) this.#refused = { key, result: refused };
        return refused;
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

