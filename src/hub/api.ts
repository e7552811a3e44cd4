/**
 * The Hub's HTTP API, the part unime uses. Downloads: revision info (branch or tag -> commit sha),
 * the recursive tree listing, and `resolve` for file contents (in download.ts). Uploads: repo and
 * branch creation, `preupload` (regular or LFS?), the LFS batch API with basic and multipart
 * transfers, and the NDJSON `commit`, which the Hub applies atomically.
 *
 * Every call retries transient failures (see http.ts); the token goes only to the Hub's origin.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TreeEntry } from './cache.js';
import { checkRepoPath } from './cache.js';
import {
  HubError,
  HttpStatusError,
  NetworkError,
  type HubRequest,
  type ResolvedRetry,
  backoffDelay,
  header,
  isRetryable,
  readText,
  requestJson,
  send,
  statusError,
  withRetry,
} from './http.js';
import { type RepoRef, apiRepoUrl } from './repo.js';
import type { HubToken } from './token.js';
import { log } from '../runtime/log.js';

export interface HubClientOptions {
  endpoint: string;
  token?: HubToken | undefined;
  retry: ResolvedRetry;
  /** Idle timeout per request (default 60 s). */
  timeoutMs?: number | undefined;
}

interface RawTreeItem {
  type?: string;
  path?: string;
  size?: number;
  oid?: string;
  lfs?: { oid?: string; size?: number };
  xetHash?: string;
}

export interface LfsAction {
  href: string;
  header?: Record<string, string>;
}
export interface LfsBatchObject {
  oid: string;
  size: number;
  actions?: { upload?: LfsAction; verify?: LfsAction };
  error?: { code: number; message: string };
}

/** Bytes to upload: a file on disk or (for generated files such as the model card) a buffer. */
export interface LfsSource {
  label: string;
  size: number;
  abs?: string | undefined;
  content?: Buffer | undefined;
}

function openRange(src: LfsSource, start: number, length: number): Readable {
  if (src.content) return Readable.from([src.content.subarray(start, start + length)]);
  if (length === 0 || !src.abs) return Readable.from([]);
  return createReadStream(src.abs, { start, end: start + length - 1 });
}

export type CommitOp =
  | { kind: 'regular'; path: string; content: Buffer }
  | { kind: 'lfs'; path: string; sha256: string; size: number };

const LFS_HEADERS = { accept: 'application/vnd.git-lfs+json', 'content-type': 'application/vnd.git-lfs+json' };

function nextLink(link: string | undefined): string | undefined {
  if (!link) return undefined;
  for (const part of link.split(',')) {
    const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(part);
    if (m) return m[1];
  }
  return undefined;
}

export class HubClient {
  readonly endpoint: string;
  readonly token: HubToken | undefined;
  readonly retry: ResolvedRetry;
  readonly timeoutMs: number;
  private readonly origin: string;

  constructor(o: HubClientOptions) {
    this.endpoint = o.endpoint;
    this.token = o.token;
    this.retry = o.retry;
    this.timeoutMs = o.timeoutMs ?? 60_000;
    this.origin = new URL(o.endpoint).origin;
  }

  /** A request with the token attached (for the Hub's own origin only) and the client's timeout. */
  request(r: Omit<HubRequest, 'token' | 'authOrigin' | 'timeoutMs'>, withToken = true): HubRequest {
    return { ...r, token: withToken ? this.token : undefined, authOrigin: this.origin, timeoutMs: this.timeoutMs };
  }

  private async json<T>(what: string, r: Omit<HubRequest, 'token' | 'authOrigin' | 'timeoutMs'>, withToken = true): Promise<T> {
    return withRetry(what, this.retry, async () => (await requestJson<T>(this.request(r, withToken))).value);
  }

  /** The commit a revision (branch, tag or sha) points to. */
  async revisionInfo(ref: RepoRef, revision: string): Promise<{ sha: string; private?: boolean }> {
    const info = await this.json<{ sha?: unknown; private?: boolean }>(`resolving ${ref.id}@${revision}`, {
      method: 'GET',
      url: `${apiRepoUrl(this.endpoint, ref)}/revision/${encodeURIComponent(revision)}`,
    });
    if (typeof info.sha !== 'string' || !/^[0-9a-f]{40}$/.test(info.sha)) {
      throw new HubError(`the Hub's answer for ${ref.id}@${revision} names no commit`, { fix: `check HF_ENDPOINT (${this.endpoint}) points at a Hugging Face Hub` });
    }
    return { sha: info.sha, ...(info.private !== undefined ? { private: info.private } : {}) };
  }

  /** Every file of the repo at `revision` (recursive, all pages). */
  async listTree(ref: RepoRef, revision: string): Promise<TreeEntry[]> {
    const out: TreeEntry[] = [];
    let url: string | undefined = `${apiRepoUrl(this.endpoint, ref)}/tree/${encodeURIComponent(revision)}?recursive=true&expand=false`;
    for (let page = 0; url !== undefined; page++) {
      if (page > 10_000) throw new HubError(`the tree listing of ${ref.id} does not end`, { fix: 'this is a server problem' });
      const pageUrl: string = url;
      const { items, next } = await withRetry(`listing ${ref.id}`, this.retry, async () => {
        const { value, res } = await requestJson<RawTreeItem[]>(this.request({ method: 'GET', url: pageUrl }));
        return { items: value, next: nextLink(header(res.headers, 'link')) };
      });
      if (!Array.isArray(items)) throw new HubError(`the tree listing of ${ref.id} is not a list`, { fix: `check HF_ENDPOINT (${this.endpoint})` });
      for (const it of items) {
        if (it.type !== 'file') continue;
        if (typeof it.path !== 'string' || typeof it.size !== 'number' || typeof it.oid !== 'string') {
          throw new HubError(`the tree listing of ${ref.id} has a malformed entry`, { fix: `check HF_ENDPOINT (${this.endpoint})` });
        }
        const lfs = it.lfs && typeof it.lfs.oid === 'string' ? { sha256: it.lfs.oid, size: typeof it.lfs.size === 'number' ? it.lfs.size : it.size } : undefined;
        out.push({ path: checkRepoPath(it.path), size: it.size, oid: it.oid, lfs, xetHash: typeof it.xetHash === 'string' ? it.xetHash : undefined });
      }
      url = next === undefined ? undefined : new URL(next, pageUrl).toString();
    }
    return out;
  }

  /** Create the repo; false when it already existed (its visibility is then left as it is). */
  async createRepo(ref: RepoRef, opts: { private: boolean }): Promise<boolean> {
    const [owner, name] = ref.id.includes('/') ? ref.id.split('/') : [undefined, ref.id];
    const body: Record<string, unknown> = { name, private: opts.private };
    if (owner) body.organization = owner;
    if (ref.type !== 'model') body.type = ref.type;
    try {
      await this.json(`creating ${ref.id}`, {
        method: 'POST',
        url: `${this.endpoint}/api/repos/create`,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return true;
    } catch (e) {
      if (e instanceof HttpStatusError && e.status === 409) return false;
      throw e;
    }
  }

  /** Create a branch from the default branch; false when it already existed. */
  async createBranch(ref: RepoRef, branch: string): Promise<boolean> {
    try {
      await this.json(`creating branch ${branch}`, {
        method: 'POST',
        url: `${apiRepoUrl(this.endpoint, ref)}/branch/${encodeURIComponent(branch)}`,
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      return true;
    } catch (e) {
      if (e instanceof HttpStatusError && e.status === 409) return false;
      throw e;
    }
  }

  /** Ask which files go through LFS. Empty files always go as regular files. */
  async preupload(ref: RepoRef, revision: string, files: { path: string; size: number; sample: Buffer }[]): Promise<Map<string, { lfs: boolean; ignore: boolean }>> {
    const modes = new Map<string, { lfs: boolean; ignore: boolean }>();
    for (let i = 0; i < files.length; i += 256) {
      const chunk = files.slice(i, i + 256);
      const ans = await this.json<{ files?: { path: string; uploadMode: string; shouldIgnore?: boolean }[] }>(`preupload to ${ref.id}`, {
        method: 'POST',
        url: `${apiRepoUrl(this.endpoint, ref)}/preupload/${encodeURIComponent(revision)}`,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ files: chunk.map((f) => ({ path: f.path, sample: f.sample.toString('base64'), size: f.size })) }),
      });
      for (const f of ans.files ?? []) modes.set(f.path, { lfs: f.uploadMode === 'lfs', ignore: f.shouldIgnore === true });
    }
    for (const f of files) {
      const m = modes.get(f.path);
      if (!m) throw new HubError(`the Hub's preupload answer left out ${f.path}`, { fix: `check HF_ENDPOINT (${this.endpoint})` });
      if (f.size === 0) m.lfs = false;
    }
    return modes;
  }

  /** Upload instructions for LFS objects; objects without an upload action are already stored. */
  async lfsBatch(ref: RepoRef, revision: string, objects: { oid: string; size: number }[]): Promise<LfsBatchObject[]> {
    const out: LfsBatchObject[] = [];
    for (let i = 0; i < objects.length; i += 100) {
      const ans = await this.json<{ objects?: LfsBatchObject[] }>(`LFS batch for ${ref.id}`, {
        method: 'POST',
        url: `${this.endpoint}/${ref.type === 'dataset' ? 'datasets/' : ''}${ref.id}.git/info/lfs/objects/batch`,
        headers: LFS_HEADERS,
        body: JSON.stringify({
          operation: 'upload',
          transfers: ['basic', 'multipart'],
          objects: objects.slice(i, i + 100),
          hash_algo: 'sha256',
          ref: { name: revision },
        }),
      });
      if (!Array.isArray(ans.objects)) throw new HubError(`the LFS batch answer for ${ref.id} has no objects`, { fix: `check HF_ENDPOINT (${this.endpoint})` });
      out.push(...ans.objects);
    }
    return out;
  }

  /** Upload one LFS object by the batch API's instructions (single PUT or multipart), then verify it. */
  async uploadLfs(obj: LfsBatchObject, file: LfsSource, onBytes: (delta: number) => void): Promise<void> {
    const upload = obj.actions?.upload;
    if (!upload) return;
    const hdr = upload.header ?? {};
    const chunkSize = hdr.chunk_size !== undefined ? Number(hdr.chunk_size) : undefined;
    if (chunkSize !== undefined) {
      if (!Number.isInteger(chunkSize) || chunkSize <= 0) throw new HubError(`the Hub sent a bad multipart chunk size for ${file.label}`);
      const parts = Object.entries(hdr)
        .filter(([k]) => /^\d+$/.test(k))
        .map(([k, v]) => ({ n: Number(k), url: v }))
        .sort((a, b) => a.n - b.n);
      if (parts.length !== Math.ceil(file.size / chunkSize)) throw new HubError(`the Hub sent ${parts.length} part URLs for ${file.label}, expected ${Math.ceil(file.size / chunkSize)}`);
      const etags: { partNumber: number; etag: string }[] = [];
      for (const [i, part] of parts.entries()) {
        const start = i * chunkSize;
        const length = Math.min(chunkSize, file.size - start);
        const etag = await this.putBytes(`uploading ${file.label} (part ${i + 1}/${parts.length})`, part.url, {}, file, start, length, onBytes);
        if (!etag) throw new HubError(`storage returned no ETag for part ${i + 1} of ${file.label}`);
        etags.push({ partNumber: i + 1, etag });
      }
      await this.json(`completing the upload of ${file.label}`, {
        method: 'POST',
        url: upload.href,
        headers: LFS_HEADERS,
        body: JSON.stringify({ oid: obj.oid, parts: etags }),
      });
    } else {
      const headers = Object.fromEntries(Object.entries(hdr).filter(([k]) => k.toLowerCase() !== 'content-length'));
      await this.putBytes(`uploading ${file.label}`, upload.href, headers, file, 0, file.size, onBytes);
    }
    const verify = obj.actions?.verify;
    if (verify) {
      await this.json(`verifying the upload of ${file.label}`, {
        method: 'POST',
        url: verify.href,
        headers: { ...LFS_HEADERS, ...(verify.header ?? {}) },
        body: JSON.stringify({ oid: obj.oid, size: obj.size }),
      });
    }
  }

  /**
   * PUT a byte range of a file (storage URLs are presigned: the token is not sent). Progress is
   * reported as deltas and rolled back when an attempt fails. Returns the ETag header.
   */
  private async putBytes(what: string, url: string, headers: Record<string, string>, src: LfsSource, start: number, length: number, onBytes: (delta: number) => void): Promise<string | undefined> {
    return withRetry(what, this.retry, async () => {
      let reported = 0;
      try {
        const res = await send(
          this.request(
            {
              method: 'PUT',
              url,
              headers,
              body: { length, open: () => openRange(src, start, length) },
              onUploadProgress: (sent) => {
                onBytes(sent - reported);
                reported = sent;
              },
            },
            false,
          ),
        );
        if (res.status < 200 || res.status >= 300) throw await statusError('PUT', res);
        await readText(res, 1024 * 1024);
        return header(res.headers, 'etag');
      } catch (e) {
        onBytes(-reported);
        throw e;
      }
    });
  }

  /**
   * Commit `ops` to `revision` in one NDJSON request. The Hub applies a commit whole or not at
   * all. When the answer is lost (dropped connection, 5xx from a proxy), we look at the branch
   * before retrying: if it moved to a commit holding exactly our files, that commit was ours.
   */
  async commit(ref: RepoRef, revision: string, ops: CommitOp[], message: string, description: string, parent: string | undefined): Promise<{ commitOid: string; commitUrl: string | undefined }> {
    const lines = [JSON.stringify({ key: 'header', value: { summary: message, description, ...(parent ? { parentCommit: parent } : {}) } })];
    for (const op of ops) {
      lines.push(
        op.kind === 'regular'
          ? JSON.stringify({ key: 'file', value: { content: op.content.toString('base64'), path: op.path, encoding: 'base64' } })
          : JSON.stringify({ key: 'lfsFile', value: { path: op.path, algo: 'sha256', oid: op.sha256, size: op.size } }),
      );
    }
    const body = Buffer.from(lines.join('\n') + '\n');
    const url = `${apiRepoUrl(this.endpoint, ref)}/commit/${encodeURIComponent(revision)}`;
    for (let attempt = 1; ; attempt++) {
      try {
        // The Hub answers a commit only once it is applied, which can take minutes for big ones.
        const { value } = await requestJson<{ commitOid?: string; commitUrl?: string }>({
          ...this.request({ method: 'POST', url, headers: { 'content-type': 'application/x-ndjson' }, body }),
          timeoutMs: Math.max(this.timeoutMs, 300_000),
        });
        if (typeof value.commitOid !== 'string') throw new HubError(`the Hub's commit answer for ${ref.id} names no commit`, { fix: `check HF_ENDPOINT (${this.endpoint})` });
        return { commitOid: value.commitOid, commitUrl: value.commitUrl };
      } catch (e) {
        const unsure = e instanceof NetworkError || (e instanceof HttpStatusError && (e.status >= 500 || e.status === 409 || e.status === 412));
        if (unsure && parent) {
          const landed = await this.commitLanded(ref, revision, parent, ops).catch(() => undefined);
          if (landed) {
            log.info(`the commit reached ${ref.id} although its answer was lost (commit ${landed.slice(0, 12)})`);
            return { commitOid: landed, commitUrl: undefined };
          }
          if (e instanceof HttpStatusError && (e.status === 409 || e.status === 412)) {
            throw new HubError(`${ref.id}@${revision} changed while pushing (someone else committed to it); nothing was committed`, { fix: 'run the push again' });
          }
        }
        if (!isRetryable(e) || attempt >= this.retry.attempts) throw e;
        const wait = backoffDelay(attempt, this.retry, e instanceof HttpStatusError ? e.retryAfterMs : undefined);
        log.warn(`committing to ${ref.id}: ${e instanceof HttpStatusError ? `HTTP ${e.status}` : 'connection failed'}; retrying in ${Math.round(wait)} ms (attempt ${attempt + 1} of ${this.retry.attempts})`);
        await sleep(wait);
      }
    }
  }

  /** The new head commit when `revision` moved past `parent` to a tree holding all of `ops`. */
  private async commitLanded(ref: RepoRef, revision: string, parent: string, ops: CommitOp[]): Promise<string | undefined> {
    const { sha } = await this.revisionInfo(ref, revision);
    if (sha === parent) return undefined;
    const tree = new Map((await this.listTree(ref, sha)).map((e) => [e.path, e]));
    for (const op of ops) {
      const e = tree.get(op.path);
      if (!e) return undefined;
      if (op.kind === 'lfs' ? e.lfs?.sha256 !== op.sha256 : e.oid !== gitBlobOid(op.content)) return undefined;
    }
    return sha;
  }
}

/** Git's blob id: sha1 of "blob <size>\0" + content. */
export function gitBlobOid(content: Buffer): string {
  return createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
}
