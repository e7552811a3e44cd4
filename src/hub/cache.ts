/**
 * The Hugging Face hub cache, laid out exactly as huggingface_hub lays it out so that Python tools
 * and unime share downloads:
 *
 *   $HF_HUB_CACHE/models--org--name/
 *     blobs/<etag>                 file contents; etag = sha256 for LFS files, git blob sha1 otherwise
 *     blobs/<etag>.incomplete      a download in progress (resumed with an HTTP Range request)
 *     snapshots/<commit>/<path>    relative symlinks into ../../blobs
 *     refs/<revision>              the commit a branch or tag pointed to when last resolved
 *     trees/<commit>.json          the repo's file listing at that commit (huggingface_hub's tree
 *                                  cache, format_version 1); lets offline mode name missing files
 */
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { writeBytesAtomic, writeJsonAtomic } from '../io/atomic.js';
import { log } from '../runtime/log.js';
import { COMMIT_SHA, type RepoRef, repoFolderName } from './repo.js';

/** One file of a repo at a commit, as the tree endpoint describes it. */
export interface TreeEntry {
  path: string;
  size: number;
  /** Git blob id (sha1). */
  oid: string;
  /** Present for LFS files: the content's sha256 and size. */
  lfs?: { sha256: string; size: number } | undefined;
  xetHash?: string | undefined;
}

/** The blob file name huggingface_hub uses for an entry: sha256 for LFS files, the git oid otherwise. */
export function blobKey(e: TreeEntry): string {
  return e.lfs?.sha256 ?? e.oid;
}

const TREE_FORMAT_VERSION = 1;

/** A repo path from the server, checked so it cannot escape the snapshot folder. */
export function checkRepoPath(p: string): string {
  const parts = p.split('/');
  if (p === '' || p.startsWith('/') || p.includes('\\') || p.includes('\0') || parts.some((s) => s === '' || s === '.' || s === '..')) {
    throw new UnimeError(`the Hub listed a file with an unsafe path: ${JSON.stringify(p)}`, {
      fix: 'this is a server problem; nothing was written for that file',
    });
  }
  return p;
}

export class RepoCache {
  readonly dir: string;

  constructor(
    readonly root: string,
    readonly ref: RepoRef,
  ) {
    this.dir = path.join(root, repoFolderName(ref));
  }

  blobPath(key: string): string {
    return path.join(this.dir, 'blobs', key);
  }
  incompletePath(key: string): string {
    return path.join(this.dir, 'blobs', `${key}.incomplete`);
  }
  snapshotDir(commit: string): string {
    return path.join(this.dir, 'snapshots', commit);
  }
  pointerPath(commit: string, file: string): string {
    return path.join(this.snapshotDir(commit), ...checkRepoPath(file).split('/'));
  }
  refPath(revision: string): string {
    return path.join(this.dir, 'refs', ...revision.split('/'));
  }
  treePath(commit: string): string {
    return path.join(this.dir, 'trees', `${commit}.json`);
  }

  /** The commit a revision resolves to from the cache alone: a full sha as itself, else refs/<revision>. */
  async commitFor(revision: string): Promise<string | undefined> {
    if (COMMIT_SHA.test(revision)) return revision;
    try {
      const sha = (await fsp.readFile(this.refPath(revision), 'utf8')).trim();
      return COMMIT_SHA.test(sha) ? sha : undefined;
    } catch {
      return undefined;
    }
  }

  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    const p = this.refPath(revision);
    try {
      if ((await fsp.readFile(p, 'utf8')) === commit) return;
    } catch {
      // not there yet
    }
    await writeBytesAtomic(p, commit);
  }

  async readTree(commit: string): Promise<TreeEntry[] | undefined> {
    let text: string;
    try {
      text = await fsp.readFile(this.treePath(commit), 'utf8');
    } catch {
      return undefined;
    }
    try {
      const data = JSON.parse(text) as { format_version?: unknown; files?: Record<string, { size: number; blob_id: string; lfs_sha256?: string; lfs_size?: number; xet_hash?: string }> };
      if (data.format_version !== TREE_FORMAT_VERSION || typeof data.files !== 'object' || data.files === null) return undefined;
      return Object.entries(data.files).map(([p, f]) => {
        if (typeof f.size !== 'number' || typeof f.blob_id !== 'string') throw new Error('bad entry');
        return {
          path: checkRepoPath(p),
          size: f.size,
          oid: f.blob_id,
          lfs: typeof f.lfs_sha256 === 'string' ? { sha256: f.lfs_sha256, size: f.lfs_size ?? f.size } : undefined,
          xetHash: f.xet_hash,
        };
      });
    } catch {
      log.warn(`ignoring a corrupted tree listing in the cache: ${this.treePath(commit)}`);
      return undefined;
    }
  }

  async writeTree(commit: string, entries: readonly TreeEntry[]): Promise<void> {
    const files: Record<string, Record<string, unknown>> = {};
    for (const e of [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
      const f: Record<string, unknown> = { size: e.size, blob_id: e.oid };
      if (e.lfs) {
        f.lfs_sha256 = e.lfs.sha256;
        f.lfs_size = e.lfs.size;
      }
      if (e.xetHash !== undefined && /^[0-9a-f]{64}$/.test(e.xetHash)) f.xet_hash = e.xetHash;
      files[e.path] = f;
    }
    try {
      await writeJsonAtomic(this.treePath(commit), { format_version: TREE_FORMAT_VERSION, files });
    } catch (e) {
      // The listing only helps offline mode; a read-only cache must not fail the pull.
      log.debug(`could not write ${this.treePath(commit)}: ${(e as Error).message}`);
    }
  }

  /** Whether the blob for `key` is in place with `size` bytes. */
  async hasBlob(key: string, size: number): Promise<boolean> {
    try {
      const st = await fsp.stat(this.blobPath(key));
      return st.isFile() && st.size === size;
    } catch {
      return false;
    }
  }

  /** Whether snapshots/<commit>/<file> exists and leads to a file of `size` bytes (when given). */
  async hasPointer(commit: string, file: string, size?: number): Promise<boolean> {
    try {
      const st = await fsp.stat(this.pointerPath(commit, file));
      return st.isFile() && (size === undefined || st.size === size);
    } catch {
      return false;
    }
  }

  /** Point snapshots/<commit>/<file> at blobs/<key> with a relative symlink (a copy where symlinks fail). */
  async linkPointer(commit: string, file: string, key: string): Promise<void> {
    const pointer = this.pointerPath(commit, file);
    const blob = this.blobPath(key);
    const target = path.relative(path.dirname(pointer), blob);
    await fsp.mkdir(path.dirname(pointer), { recursive: true });
    try {
      if ((await fsp.readlink(pointer)) === target) return;
    } catch {
      // missing, or a regular file
    }
    const tmp = `${pointer}.tmp-link-${process.pid}`;
    await fsp.rm(tmp, { force: true });
    try {
      await fsp.symlink(target, tmp);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EPERM' && code !== 'EACCES' && code !== 'ENOTSUP') throw e;
      log.once('hub-no-symlinks', 'warn', `this file system refuses symlinks; the hub cache will hold copies (${code})`);
      await fsp.copyFile(blob, tmp);
    }
    await fsp.rename(tmp, pointer);
  }

  exists(): boolean {
    return existsSync(this.dir);
  }
}
