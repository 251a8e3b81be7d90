/**
 * The engine's persistent records: pods and containers in `node:sqlite` (WAL) at `<root>/state.db`.
 *
 * Crash safety rests on one rule: a record is written with a transitional phase ('creating',
 * 'removing') BEFORE the engine touches the outside world (mounts, netns, runtime), and moved to
 * its settled phase after. After a SIGKILL, `Engine.recover()` finds every transitional record and
 * finishes or undoes the work, so nothing done outside is ever unknown to the store.
 *
 * Every method is synchronous (DatabaseSync) and each write is one statement or one transaction,
 * so a write is either fully on disk or not at all.
 *
 * A full disk (SQLITE_FULL, ENOSPC) is ResourceExhausted naming the filesystem. Writes that record
 * or remove what exists (phase, exit, delete, and opening the database) may use the disk reserve
 * (util/disk-reserve.ts): on a full disk they release part of it and retry. Inserts never do: a
 * full disk refuses new pods and containers but never the removal that frees it.
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { InternalError, ResourceExhaustedError } from '../errors.ts';
import { isDiskFull, type DiskReserve } from '../util/disk-reserve.ts';
import type { ContainerConfig, PodSandboxConfig, ContainerReason } from '../api/cri.ts';
import type { NetworkMode } from '../network/pod-network.ts';
import { readDecision, type PodDecisionRecord } from '../policy/decision.ts';
import type { PodFiles } from './pod-files.ts';
import { isObject } from '../util/guards.ts';

/** Pod phases. 'creating' and 'removing' are transitional (work in flight or interrupted). */
export type PodPhase = 'creating' | 'ready' | 'notready' | 'removing';
/** Container phases. 'creating' and 'removing' are transitional. */
export type ContainerPhase = 'creating' | 'created' | 'running' | 'exited' | 'removing';

/**
 * The engine's own state for a pod: what it decided and what it made, so that removal undoes
 * exactly that. Records of older versions stored it untyped as `backendState` (with a `pausePid`
 * nothing read); `readPodRuntime` reads both.
 */
export interface PodEngineState {
  /** Network mode the pod was set up with: which PodNetwork tears it down ('host': none). */
  mode: NetworkMode;
  /** The cgroup parent is the engine's own (<cgroupParent>/pod-<id>): removed whole with the pod. */
  ownCgroup: boolean;
  /** For a requested cgroup parent: per hierarchy, the topmost directory creating the pod made. */
  cgroupMade: Record<string, string>;
  /** The log directory is the engine's default one (what older records without logDirMade go by). */
  ownLogDir: boolean;
  /** The topmost log directory the engine made ('' none; absent in records older than it). */
  logDirMade?: string;
  /** The policy's decision for the pod; absent (none stored, or unreadable): fail closed. */
  decision?: PodDecisionRecord;
  /** The pod's /etc files containers mount; set once the pod is ready. */
  files?: PodFiles;
  /**
   * Cgroups the engine removes (whole, every hierarchy) with the pod, besides the above: a warm
   * pool member's own cgroup and the one its sandbox was moved to under the pod's cgroup_parent.
   */
  extraCgroups?: string[];
}

/** What the engine set up for a pod outside the store; enough to tear it down again. */
export interface PodRuntimeInfo {
  /** Network namespace path, '' for host network. */
  netnsPath: string;
  networkMode: 'pod' | 'host' | 'none';
  ips: string[];
  /** Directory with hostname, hosts, resolv.conf. */
  podDir: string;
  logDirectory: string;
  /** Cgroup parent for the pod's containers (cgroupfs path, relative to the hierarchy roots). */
  cgroupParent: string;
  /** Id of the pause container when the backend needs one, else ''. */
  pauseId: string;
  /** Namespace paths of the pause process (/proc/<pid>/ns/…) containers join; empty without pause. */
  namespacePaths: Record<string, string>;
  engine: PodEngineState;
}

export interface PodRecord {
  id: string;
  name: string;
  namespace: string;
  uid: string;
  attempt: number;
  handler: string;
  phase: PodPhase;
  /** Nanoseconds since the epoch. */
  createdAt: number;
  config: PodSandboxConfig;
  runtime: PodRuntimeInfo;
}

/** What the engine set up for a container outside the store. */
export interface ContainerRuntimeInfo {
  bundleDir: string;
  rootfsDir: string;
  /** Whether the rootfs was prepared by the image service (and must be removed). */
  rootfsPrepared: boolean;
  /** Container pid as the runtime reported it (0 when unknown). */
  pid: number;
  /** Cgroup path of the container (cgroupfs, relative). */
  cgroupPath: string;
  /** Signal from the image's StopSignal, default SIGTERM. */
  stopSignal: string;
}

export interface ContainerRecord {
  id: string;
  podId: string;
  name: string;
  attempt: number;
  phase: ContainerPhase;
  createdAt: number;
  startedAt: number;
  finishedAt: number;
  exitCode: number;
  reason: ContainerReason;
  message: string;
  imageRef: string;
  imageId: string;
  /** Absolute path of the CRI log file. */
  logPath: string;
  config: ContainerConfig;
  runtime: ContainerRuntimeInfo;
}

interface PodRow {
  id: string; name: string; namespace: string; uid: string; attempt: number; handler: string;
  phase: string; created_at: number; config: string; runtime: string;
}
interface ContainerRow {
  id: string; pod_id: string; name: string; attempt: number; phase: string; created_at: number;
  started_at: number; finished_at: number; exit_code: number; reason: string; message: string;
  image_ref: string; image_id: string; log_path: string; config: string; runtime: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pods (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  namespace TEXT NOT NULL,
  uid TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  handler TEXT NOT NULL,
  phase TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  config TEXT NOT NULL,
  runtime TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS pods_name ON pods (namespace, name, attempt);
CREATE TABLE IF NOT EXISTS containers (
  id TEXT PRIMARY KEY,
  pod_id TEXT NOT NULL,
  name TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  phase TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  started_at INTEGER NOT NULL DEFAULT 0,
  finished_at INTEGER NOT NULL DEFAULT 0,
  exit_code INTEGER NOT NULL DEFAULT 0,
  reason TEXT NOT NULL DEFAULT '',
  message TEXT NOT NULL DEFAULT '',
  image_ref TEXT NOT NULL,
  image_id TEXT NOT NULL,
  log_path TEXT NOT NULL,
  config TEXT NOT NULL,
  runtime TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS containers_name ON containers (pod_id, name, attempt);
CREATE INDEX IF NOT EXISTS containers_pod ON containers (pod_id);
`;

// --- reading stored runtime info ------------------------------------------------------------------
// Tolerant: a record written by an older version (other or missing fields, the untyped
// `backendState`) still loads, and is written back in the current shape on its next update; a
// field of the wrong type reads as its empty value (what removal then skips), never as a throw.

type Obj = Record<string, unknown>;
const strOf = (v: unknown): string => (typeof v === 'string' ? v : '');
const numOf = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const strArray = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
function strMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (isObject(v)) for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
}

/** The engine state of a stored pod, from the current `engine` or an older record's `backendState`. */
export function readPodEngineState(v: unknown): PodEngineState {
  const o = isObject(v) ? v : {};
  const mode = o.mode === 'bridge' || o.mode === 'host' || o.mode === 'none' ? o.mode : 'none';
  const st: PodEngineState = { mode, ownCgroup: o.ownCgroup === true, cgroupMade: strMap(o.cgroupMade), ownLogDir: o.ownLogDir === true };
  if (typeof o.logDirMade === 'string') st.logDirMade = o.logDirMade;
  const extra = strArray(o.extraCgroups);
  if (extra.length > 0) st.extraCgroups = extra;
  const decision = readDecision(o.decision);
  if (decision) st.decision = decision;
  const f = o.files;
  if (isObject(f) && typeof f.hostname === 'string' && typeof f.hosts === 'string' && typeof f.resolvConf === 'string') {
    st.files = { hostname: f.hostname, hosts: f.hosts, resolvConf: f.resolvConf };
  }
  return st;
}

export function readPodRuntime(v: unknown): PodRuntimeInfo {
  const o = isObject(v) ? v : {};
  const networkMode = o.networkMode === 'host' || o.networkMode === 'none' ? o.networkMode : 'pod';
  return {
    netnsPath: strOf(o.netnsPath), networkMode, ips: strArray(o.ips), podDir: strOf(o.podDir), logDirectory: strOf(o.logDirectory),
    cgroupParent: strOf(o.cgroupParent), pauseId: strOf(o.pauseId), namespacePaths: strMap(o.namespacePaths),
    engine: readPodEngineState(o.engine ?? o.backendState),
  };
}

export function readContainerRuntime(v: unknown): ContainerRuntimeInfo {
  const o = isObject(v) ? v : {};
  return {
    bundleDir: strOf(o.bundleDir), rootfsDir: strOf(o.rootfsDir), rootfsPrepared: o.rootfsPrepared === true,
    pid: numOf(o.pid), cgroupPath: strOf(o.cgroupPath), stopSignal: strOf(o.stopSignal) || 'SIGTERM',
  };
}

function podFromRow(r: PodRow): PodRecord {
  return {
    id: r.id, name: r.name, namespace: r.namespace, uid: r.uid, attempt: Number(r.attempt), handler: r.handler,
    phase: r.phase as PodPhase, createdAt: Number(r.created_at),
    config: JSON.parse(r.config) as PodSandboxConfig, runtime: readPodRuntime(JSON.parse(r.runtime)),
  };
}

function containerFromRow(r: ContainerRow): ContainerRecord {
  return {
    id: r.id, podId: r.pod_id, name: r.name, attempt: Number(r.attempt), phase: r.phase as ContainerPhase,
    createdAt: Number(r.created_at), startedAt: Number(r.started_at), finishedAt: Number(r.finished_at),
    exitCode: Number(r.exit_code), reason: r.reason as ContainerReason, message: r.message,
    imageRef: r.image_ref, imageId: r.image_id, logPath: r.log_path,
    config: JSON.parse(r.config) as ContainerConfig, runtime: readContainerRuntime(JSON.parse(r.runtime)),
  };
}

/**
 * What all stored pods (and, separately, all containers) may add to one ListPodSandbox /
 * ListContainers / List*Stats answer: 12 MiB, so an answer stays under 16 MiB, the receive limit
 * of the kubelet and crictl (the daemon's own send limit is larger). Each record counts its
 * labels, annotations and names with protobuf's per-entry overhead (`listedBytes`). A client on
 * gRPC's plain 4 MiB default can still be exceeded by a node full of large pods; use 16 MiB.
 */
export const LIST_BUDGET_BYTES = 12 * 1024 * 1024;
/** Pods and containers the store holds at most (each RunPodSandbox / CreateContainer past it is refused). */
export const MAX_PODS = 4096;
export const MAX_CONTAINERS = 8192;

function mapListedBytes(m: Record<string, string> | undefined | null): number {
  let n = 0;
  for (const [k, v] of Object.entries(m ?? {})) n += Buffer.byteLength(k) + Buffer.byteLength(String(v)) + 12;
  return n;
}

/** Upper estimate of the bytes a pod or container adds to a List* answer. */
export function listedBytes(r: PodRecord | ContainerRecord): number {
  const fixed = 'podId' in r
    ? 256 + Buffer.byteLength(r.podId) + Buffer.byteLength(r.name) + Buffer.byteLength(r.config.image?.image ?? '') + Buffer.byteLength(r.imageRef) + Buffer.byteLength(r.imageId)
    : 256 + Buffer.byteLength(r.name) + Buffer.byteLength(r.namespace) + Buffer.byteLength(r.uid) + Buffer.byteLength(r.handler);
  return fixed + Buffer.byteLength(r.id) + mapListedBytes(r.config.labels) + mapListedBytes(r.config.annotations);
}

/** Running totals of `listedBytes` per record, to refuse an insert past the budget in O(1). */
class ListBudget {
  readonly #bytes = new Map<string, number>();
  #total = 0;
  readonly #what: string;
  readonly #max: number;
  constructor(what: string, max: number) { this.#what = what; this.#max = max; }
  get count(): number { return this.#bytes.size; }
  get total(): number { return this.#total; }
  check(n: number): void {
    if (this.#bytes.size >= this.#max) {
      throw new ResourceExhaustedError(`this node already holds ${this.#bytes.size} ${this.#what}s (limit ${this.#max}, bulkhead bound max ${this.#what}s); remove some first`);
    }
    if (this.#total + n > LIST_BUDGET_BYTES) {
      throw new ResourceExhaustedError(`the ${this.#what}s on this node already carry ${this.#total} bytes of labels, annotations and names; ${n} more would pass the ${LIST_BUDGET_BYTES / (1024 * 1024)} MiB list budget (a List answer must stay under clients' 16 MiB limit); remove ${this.#what}s or shorten their labels/annotations`);
    }
  }
  /** Re-counts a record still held (a config rewritten in place). */
  update(id: string, n: number): void { if (this.#bytes.has(id)) this.set(id, n); }
  set(id: string, n: number): void { this.#total += n - (this.#bytes.get(id) ?? 0); this.#bytes.set(id, n); }
  delete(id: string): void { this.#total -= this.#bytes.get(id) ?? 0; this.#bytes.delete(id); }
}

/** Thrown (as a plain marker) when a unique name index rejects an insert. */
export class NameConflict extends InternalError {
  constructor(message: string) { super(message); }
}

export class StateStore {
  readonly #db: DatabaseSync;
  readonly #stmts = new Map<string, StatementSync>();
  readonly #podBudget = new ListBudget('pod', MAX_PODS);
  readonly #containerBudget = new ListBudget('container', MAX_CONTAINERS);
  readonly #path: string;
  readonly #reserve: DiskReserve | undefined;

  /** Opens (creating if needed) the database at `path`; ':memory:' for a throwaway store. */
  constructor(path: string, opts: { reserve?: DiskReserve } = {}) {
    this.#path = path;
    this.#reserve = opts.reserve;
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.#db = this.#write('open the state database', true, () => {
      const db = new DatabaseSync(path);
      try {
        db.exec('PRAGMA journal_mode = WAL');
        // WAL + NORMAL: a commit is durable once it is in the WAL (no fsync per commit; the WAL is
        // synced at checkpoints), so a killed daemon loses nothing and the file is never corrupt; only an
        // OS crash / power loss may roll back the last few commits, and after one every container and
        // pod is dead anyway (recovery reconciles records with what really exists).
        db.exec('PRAGMA synchronous = NORMAL');
        db.exec('PRAGMA busy_timeout = 5000');
        db.exec(SCHEMA);
        db.prepare(`INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', '1')`).run();
        return db;
      } catch (err) {
        db.close();
        throw err;
      }
    });
    for (const p of this.listPods()) this.#podBudget.set(p.id, listedBytes(p));
    for (const c of this.listContainers()) this.#containerBudget.set(c.id, listedBytes(c));
  }

  /** Pods/containers held and their share of the list budget (LIST_BUDGET_BYTES). */
  budget(): { pods: number; podBytes: number; containers: number; containerBytes: number } {
    return { pods: this.#podBudget.count, podBytes: this.#podBudget.total, containers: this.#containerBudget.count, containerBytes: this.#containerBudget.total };
  }

  /**
   * Runs one write. A full disk becomes ResourceExhausted naming the filesystem; with `keepsBooks`
   * (the write records or removes what exists) part of the disk reserve is released and the write
   * tried again, until it succeeds or the reserve is gone.
   */
  #write<T>(what: string, keepsBooks: boolean, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      let last: unknown = err;
      // a quarter of the reserve at a time, while there is some
      while (keepsBooks && this.#reserve?.release(what)) {
        try { return fn(); } catch (again) { if (!isDiskFull(again)) throw again; last = again; }
      }
      throw new ResourceExhaustedError(`${what}: the filesystem holding ${dirname(this.#path)} is full (${(last as Error).message}); free space there (remove stopped containers, pods or unused images) and retry`, { cause: last });
    }
  }

  #stmt(sql: string): StatementSync {
    let s = this.#stmts.get(sql);
    if (!s) {
      s = this.#db.prepare(sql);
      // nanosecond timestamps exceed 2^53: read as BigInt, the row mappers convert with Number()
      s.setReadBigInts(true);
      this.#stmts.set(sql, s);
    }
    return s;
  }

  close(): void {
    this.#stmts.clear();
    if (this.#db.isOpen) this.#db.close();
  }

  // --- pods ------------------------------------------------------------------------------------

  /**
   * Inserts a new pod; throws NameConflict when (namespace, name, attempt) is taken, and
   * ResourceExhausted past MAX_PODS or the list budget.
   */
  insertPod(p: PodRecord): void {
    this.#write(`record pod ${p.namespace}/${p.name}`, false, () => {
      const n = listedBytes(p);
      this.#podBudget.check(n);
      try {
        this.#stmt(`INSERT INTO pods (id, name, namespace, uid, attempt, handler, phase, created_at, config, runtime)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
          p.id, p.name, p.namespace, p.uid, p.attempt, p.handler, p.phase, p.createdAt,
          JSON.stringify(p.config), JSON.stringify(p.runtime));
        this.#podBudget.set(p.id, n);
      } catch (err) {
        if (/UNIQUE constraint failed: pods\.namespace/.test((err as Error).message)) {
          throw new NameConflict(`pod ${p.namespace}/${p.name} attempt ${p.attempt} already exists`);
        }
        throw err;
      }
    });
  }

  updatePod(p: PodRecord): void {
    this.#write(`record pod ${p.id}`, true, () => {
      this.#stmt(`UPDATE pods SET phase = ?, runtime = ? WHERE id = ?`).run(p.phase, JSON.stringify(p.runtime), p.id);
    });
  }

  setPodPhase(id: string, phase: PodPhase): void {
    this.#write(`record pod ${id} ${phase}`, true, () => {
      this.#stmt(`UPDATE pods SET phase = ? WHERE id = ?`).run(phase, id);
    });
  }

  getPod(id: string): PodRecord | undefined {
    const r = this.#stmt(`SELECT * FROM pods WHERE id = ?`).get(id) as PodRow | undefined;
    return r ? podFromRow(r) : undefined;
  }

  listPods(): PodRecord[] {
    return (this.#stmt(`SELECT * FROM pods ORDER BY created_at`).all() as unknown as PodRow[]).map(podFromRow);
  }

  /** Ids starting with `prefix` (for crictl-style short ids). */
  podIdsWithPrefix(prefix: string): string[] {
    const rows = this.#stmt(`SELECT id FROM pods WHERE substr(id, 1, ?) = ?`).all(prefix.length, prefix) as unknown as { id: string }[];
    return rows.map((r) => r.id);
  }

  deletePod(id: string): void {
    this.#write(`remove the record of pod ${id}`, true, () => {
      this.#stmt(`DELETE FROM pods WHERE id = ?`).run(id);
      this.#podBudget.delete(id);
    });
  }

  // --- containers ------------------------------------------------------------------------------

  /**
   * Inserts a new container; throws NameConflict when (pod, name, attempt) is taken, and
   * ResourceExhausted past MAX_CONTAINERS or the list budget.
   */
  insertContainer(c: ContainerRecord): void {
    this.#write(`record container ${c.name}`, false, () => {
      const n = listedBytes(c);
      this.#containerBudget.check(n);
      try {
        this.#stmt(`INSERT INTO containers (id, pod_id, name, attempt, phase, created_at, started_at, finished_at,
          exit_code, reason, message, image_ref, image_id, log_path, config, runtime)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
          c.id, c.podId, c.name, c.attempt, c.phase, c.createdAt, c.startedAt, c.finishedAt,
          c.exitCode, c.reason, c.message, c.imageRef, c.imageId, c.logPath,
          JSON.stringify(c.config), JSON.stringify(c.runtime));
        this.#containerBudget.set(c.id, n);
      } catch (err) {
        if (/UNIQUE constraint failed: containers\.pod_id/.test((err as Error).message)) {
          throw new NameConflict(`container ${c.name} attempt ${c.attempt} already exists in pod ${c.podId}`);
        }
        throw err;
      }
    });
  }

  /** Writes every mutable field of a container. */
  updateContainer(c: ContainerRecord): void {
    this.#write(`record container ${c.id}`, true, () => {
      this.#stmt(`UPDATE containers SET phase = ?, started_at = ?, finished_at = ?, exit_code = ?, reason = ?,
        message = ?, log_path = ?, config = ?, runtime = ? WHERE id = ?`).run(
        c.phase, c.startedAt, c.finishedAt, c.exitCode, c.reason, c.message, c.logPath,
        JSON.stringify(c.config), JSON.stringify(c.runtime), c.id);
      this.#containerBudget.update(c.id, listedBytes(c));
    });
  }

  setContainerPhase(id: string, phase: ContainerPhase): void {
    this.#write(`record container ${id} ${phase}`, true, () => {
      this.#stmt(`UPDATE containers SET phase = ? WHERE id = ?`).run(phase, id);
    });
  }

  getContainer(id: string): ContainerRecord | undefined {
    const r = this.#stmt(`SELECT * FROM containers WHERE id = ?`).get(id) as ContainerRow | undefined;
    return r ? containerFromRow(r) : undefined;
  }

  listContainers(podId?: string): ContainerRecord[] {
    const rows = podId === undefined
      ? this.#stmt(`SELECT * FROM containers ORDER BY created_at`).all()
      : this.#stmt(`SELECT * FROM containers WHERE pod_id = ? ORDER BY created_at`).all(podId);
    return (rows as unknown as ContainerRow[]).map(containerFromRow);
  }

  containerIdsWithPrefix(prefix: string): string[] {
    const rows = this.#stmt(`SELECT id FROM containers WHERE substr(id, 1, ?) = ?`).all(prefix.length, prefix) as unknown as { id: string }[];
    return rows.map((r) => r.id);
  }

  deleteContainer(id: string): void {
    this.#write(`remove the record of container ${id}`, true, () => {
      this.#stmt(`DELETE FROM containers WHERE id = ?`).run(id);
      this.#containerBudget.delete(id);
    });
  }
}
