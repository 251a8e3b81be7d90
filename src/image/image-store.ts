/**
 * ImageStore: image metadata — names (tags and digest references) → image ID (the config
 * digest) → manifest, config, layers, size.
 *
 * Lifecycle: `put` records an image after every blob and snapshot it needs is committed (so a
 * recorded image is always usable); `tag`/`untag` move names; when the last name of an image is
 * removed the image record goes too (its blobs and snapshots stay until GC). Backed by
 * node:sqlite in WAL mode at `<root>/images/images.db`, so the CLI may read while the daemon
 * writes, from another process.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { InvalidArgumentError } from '../errors.ts';
import { looksLikeId, parseReference, repositoryName, tagName } from './reference.ts';

/** The `config` object of an OCI image config (the parts a runtime uses). */
export interface OciImageConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: Record<string, object>;
  StopSignal?: string;
  Volumes?: Record<string, object>;
}

export interface LayerRecord {
  digest: string;
  mediaType: string;
  size: number;
  diffId: string;
  chainId: string;
}

export interface ImageRecord {
  /** "sha256:<config digest hex>" */
  id: string;
  repoTags: string[];
  repoDigests: string[];
  /** Bytes of config + layer blobs as stored (compressed). */
  size: number;
  config: OciImageConfig;
  manifestDigest: string;
  /** Index digest when the image came from a multi-platform index. */
  indexDigest?: string;
  layers: LayerRecord[];
  architecture: string;
  os: string;
  pinned?: boolean;
  /** Unix ms. */
  created: number;
}

type Body = Omit<ImageRecord, 'repoTags' | 'repoDigests'>;

export interface ImageStore {
  put(record: Body, names: { tags: string[]; digests: string[] }): ImageRecord;
  get(refOrId: string): ImageRecord | undefined;
  list(): ImageRecord[];
  /** Removes one name, or (for an ID) the whole image; returns the image ID when the image is gone. */
  remove(refOrId: string): { removed: boolean; imageGone?: string };
  close(): void;
}

export class SqliteImageStore implements ImageStore {
  private readonly db: DatabaseSync;
  private constructor(db: DatabaseSync) { this.db = db; }

  static async open(dir: string): Promise<SqliteImageStore> {
    await mkdir(dir, { recursive: true });
    const db = new DatabaseSync(join(dir, 'images.db'));
    db.exec('PRAGMA busy_timeout = 10000');
    db.exec('PRAGMA journal_mode = WAL');
    db.exec('PRAGMA synchronous = NORMAL');
    db.exec(`CREATE TABLE IF NOT EXISTS images (id TEXT PRIMARY KEY, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS names (name TEXT PRIMARY KEY, id TEXT NOT NULL, kind TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS names_id ON names(id);`);
    return new SqliteImageStore(db);
  }

  private tx<T>(fn: () => T): T {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const r = fn();
      this.db.exec('COMMIT');
      return r;
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw err;
    }
  }

  private record(id: string): ImageRecord | undefined {
    const row = this.db.prepare('SELECT body FROM images WHERE id = ?').get(id) as { body: string } | undefined;
    if (!row) return undefined;
    const body = JSON.parse(row.body) as Body;
    const names = this.db.prepare('SELECT name, kind FROM names WHERE id = ? ORDER BY name').all(id) as { name: string; kind: string }[];
    return { ...body, repoTags: names.filter((n) => n.kind === 'tag').map((n) => n.name), repoDigests: names.filter((n) => n.kind === 'digest').map((n) => n.name) };
  }

  put(body: Body, names: { tags: string[]; digests: string[] }): ImageRecord {
    this.tx(() => {
      this.db.prepare('INSERT INTO images (id, body) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET body = excluded.body').run(body.id, JSON.stringify(body));
      const moved = new Set<string>();
      for (const [kind, list] of [['tag', names.tags], ['digest', names.digests]] as const) {
        for (const name of list) {
          const prev = this.db.prepare('SELECT id FROM names WHERE name = ?').get(name) as { id: string } | undefined;
          if (prev && prev.id !== body.id) moved.add(prev.id);
          this.db.prepare('INSERT INTO names (name, id, kind) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET id = excluded.id, kind = excluded.kind').run(name, body.id, kind);
        }
      }
      // An image whose last tag moved away keeps existing only if it still has some name (docker keeps a dangling image; we keep it by its digest name).
      for (const old of moved) this.dropIfNameless(old);
    });
    return this.record(body.id)!;
  }

  private dropIfNameless(id: string): boolean {
    const n = this.db.prepare('SELECT COUNT(*) AS c FROM names WHERE id = ?').get(id) as { c: number };
    if (n.c > 0) return false;
    this.db.prepare('DELETE FROM images WHERE id = ?').run(id);
    return true;
  }

  /** Resolves a name, digest reference, ID or unique ID prefix to an image ID. */
  resolve(refOrId: string): string | undefined {
    const s = refOrId.trim();
    if (/^(sha256:)?[a-f0-9]{64}$/.test(s)) {
      const id = s.startsWith('sha256:') ? s : `sha256:${s}`;
      if (this.db.prepare('SELECT 1 FROM images WHERE id = ?').get(id)) return id;
    }
    let names: string[] = [];
    try {
      const ref = parseReference(s);
      const t = tagName(ref);
      if (t) names.push(t);
      if (ref.digest) names.push(`${repositoryName(ref)}@${ref.digest}`);
    } catch (err) {
      if (!looksLikeId(s)) throw err;
      names = [];
    }
    for (const n of names) {
      const row = this.db.prepare('SELECT id FROM names WHERE name = ?').get(n) as { id: string } | undefined;
      if (row) return row.id;
    }
    // name:tag@digest where only the digest is known
    if (names.length === 2) return undefined;
    if (looksLikeId(s)) {
      const prefix = s.startsWith('sha256:') ? s : `sha256:${s}`;
      const rows = this.db.prepare("SELECT id FROM images WHERE substr(id, 1, ?) = ?").all(prefix.length, prefix) as { id: string }[];
      if (rows.length > 1) throw new InvalidArgumentError(`image ID prefix "${s}" is ambiguous (${rows.length} images)`);
      if (rows.length === 1) return rows[0]!.id;
    }
    return undefined;
  }

  get(refOrId: string): ImageRecord | undefined {
    const id = this.resolve(refOrId);
    return id ? this.record(id) : undefined;
  }

  list(): ImageRecord[] {
    const rows = this.db.prepare('SELECT id FROM images ORDER BY id').all() as { id: string }[];
    return rows.map((r) => this.record(r.id)).filter((r): r is ImageRecord => r !== undefined);
  }

  remove(refOrId: string): { removed: boolean; imageGone?: string } {
    const r = this.removeTx(refOrId);
    // The write-ahead log only grows between checkpoints: a removal gives its space back too.
    if (r.imageGone) this.db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    return r;
  }

  private removeTx(refOrId: string): { removed: boolean; imageGone?: string } {
    return this.tx(() => {
      const id = this.resolve(refOrId);
      if (!id) return { removed: false };
      const s = refOrId.trim();
      const byId = /^(sha256:)?[a-f0-9]{6,64}$/.test(s) && id.startsWith(s.startsWith('sha256:') ? s : `sha256:${s}`);
      if (byId) {
        this.db.prepare('DELETE FROM names WHERE id = ?').run(id);
        this.db.prepare('DELETE FROM images WHERE id = ?').run(id);
        return { removed: true, imageGone: id };
      }
      const ref = parseReference(s);
      const t = tagName(ref);
      if (t) this.db.prepare('DELETE FROM names WHERE name = ? AND id = ?').run(t, id);
      if (ref.digest) this.db.prepare('DELETE FROM names WHERE name = ? AND id = ?').run(`${repositoryName(ref)}@${ref.digest}`, id);
      // docker rmi: when no tag is left, the digest names go too and the image is removed.
      const tags = this.db.prepare("SELECT COUNT(*) AS c FROM names WHERE id = ? AND kind = 'tag'").get(id) as { c: number };
      if (tags.c === 0) this.db.prepare('DELETE FROM names WHERE id = ?').run(id);
      return this.dropIfNameless(id) ? { removed: true, imageGone: id } : { removed: true };
    });
  }

  close(): void {
    this.db.close();
  }
}
