// `bulkhead-vm delete`: removes a container; deleting a sandbox container stops its pod's VM.
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { errorCode, errorReason, FailedPreconditionError, UnavailableError } from '../../errors.ts';
import { liveStartTime } from '../../util/proc.ts';
import { VmdClient } from '../client.ts';
import { endPodDir } from '../pod-dir.ts';
import { readProc } from '../procs.ts';
import { releaseRootfsImage } from '../rootfs-image.ts';
import { detachVolumes, shareDir } from '../share.ts';
import { alive, checkId, containerDir, indexRemove, podDir, readRecord, status, type ContainerRecord } from '../state.ts';
import { hostSocket, readFileSafe, type VmCommand } from './common.ts';
import { bool } from './flags.ts';
import { trace } from '../trace.ts';

const command: VmCommand = {
  name: 'delete',
  synopsis: 'bulkhead-vm delete [--force] ID',
  summary: 'Delete a container (--force: also a running one; a sandbox container takes its pod VM along)',
  flags: { force: { type: 'boolean', short: 'f' } },
  byId: true,
  async run({ global: g, flags, args }) {
    await deleteContainer(g.root, checkId(args[0]), bool(flags, 'force'));
    return 0;
  },
};
export default command;

/**
 * A pod served by the node-wide host (cmd/vmhost.ts, recorded as `host.proc`): the host's supervisor
 * of the pod ends it first, a start under way included — unlike a pod's own `_vmd`, the host is not
 * ended by the sweep below, and a start it kept going could spawn a VMM after that sweep. Bounded.
 */
async function endInHost(podDir: string): Promise<void> {
  if (!readProc(podDir, 'host')) return;
  try {
    const c = await VmdClient.connect(hostSocket(resolve(podDir, '..', '..')), undefined, 2000);
    try { await c.request('end', { podDir, reason: 'the pod was deleted' }, 4000); } finally { c.close(); }
  } catch { /* no host (it died, and its VMMs with it): the sweep ends whatever is left */ }
}

/**
 * Deletes container `id` under `root` (`force`: a running one too; a sandbox container takes its pod
 * VM along). Bounded throughout (see below). The microvm backend calls it in-process.
 */
export async function deleteContainer(root: string, id: string, force: boolean): Promise<void> {
  checkId(id);
  trace(`delete ${id.slice(0, 8)}`);
  let rec: ContainerRecord;
  try { rec = await readRecord(root, id); } catch (e) {
    if (force && errorReason(e) === 'BH_CONTAINER_NOT_FOUND') {
      // a create killed before it wrote its record may still have started the pod VM (a sandbox's pod is its id)
      const pdir = podDir(root, id);
      if (existsSync(pdir)) { await endInHost(pdir); await endPodDir(pdir); }
      return;
    }
    throw e;
  }
  const st = await status(root, rec);
  if (st.status === 'running' && !force) {
    throw new FailedPreconditionError(`container "${id}" is running; stop it first or use --force`);
  }
  // Bounded throughout: a wedged supervisor costs at most the request timeout, then its processes
  // are ended by pid (verified by start time), SIGKILL after a short grace.
  const sock = join(rec.podDir, 'vmd.sock');
  if (existsSync(sock)) {
    try {
      const c = await VmdClient.connect(sock, undefined, force ? 2000 : 10_000);
      // A sandbox's VM goes with it: the supervisor is told to stop the VM at once (the guest's own
      // delete of the sandbox container would only be thrown away with the VM: ~70 ms of a templated
      // pod's removal under TCG). A container still running in the VM dies with it; the sweep below
      // (supervisor's cleanup, host's `end`, pids, cgroups, share, dir) is the same either way.
      const [op, args] = rec.sandbox ? ['shutdown', { reason: 'pod stopped: sandbox container deleted' }] : ['delete', { name: id }];
      try { await c.request(op, args, force ? 2000 : 30_000); } finally { c.close(); }
    } catch (e) {
      if (!force && errorCode(e) !== 'Unavailable') throw e;
    }
  }
  trace(`delete answered ${id.slice(0, 8)}`);
  if (alive(rec.pid) && (rec.pidStart === undefined || liveStartTime(rec.pid) === rec.pidStart)) { try { process.kill(rec.pid, 'SIGKILL'); } catch { /* gone */ } }
  if (rec.sandbox) {
    // the VM stops with its sandbox: give the supervisor a moment to power it off and clean up
    // (it takes ~20-30 ms after its answer: polled often, not every 100 ms — the poll was most of a pod's removal)
    for (const until = Date.now() + (force ? 1500 : 15_000); Date.now() < until && existsSync(join(rec.podDir, 'vmd.sock'));) await new Promise((r) => setTimeout(r, 10));
    await endInHost(rec.podDir);
    trace(`delete vmd.sock gone ${id.slice(0, 8)}`);
    const left = await endPodDir(rec.podDir, force ? 500 : 2000);
    trace(`delete pod dir ended ${id.slice(0, 8)}`);
    // the record goes only once nothing of the VM runs: a delete that could not end it can be retried
    if (left.length) throw new UnavailableError(`the pod VM of container "${id}" did not end (pids ${left.join(', ')} survived SIGKILL); its record is kept: retry the delete`);
  } else await detachVolumes(shareDir(rec.podDir), id);
  const created = JSON.parse(readFileSafe(join(containerDir(root, id), 'create.json')) || '{}') as { image?: unknown };
  await rm(containerDir(root, id), { recursive: true, force: true });
  await indexRemove(id, containerDir(root, id));
  // The container's disk image goes once no other container uses it.
  if (typeof created.image === 'string') await releaseRootfsImage(created.image, containerDir(root, id)).catch(() => {});
  trace(`deleted ${id.slice(0, 8)}`);
}
