/**
 * `pull`: a model or dataset from the Hub into the shared Hugging Face cache, and
 * `resolveModelPath`, which the rest of unime calls with whatever the user wrote for a model: a
 * local directory passes through, a Hub id comes back as its snapshot directory.
 *
 * A file is downloaded into blobs/<etag>.incomplete. A dropped connection keeps what arrived and
 * the next attempt (in this run or a later one) asks for the rest with an HTTP Range request. The
 * blob is renamed into place only after its size and hash check out (sha256 for LFS files, the
 * git blob id for the others), so the cache never holds a wrong file under a right name. A
 * resumed download that fails the check is thrown away and fetched once more from the start.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, promises as fsp, statSync } from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { UnimeError } from '../errors.js';
import { log } from '../runtime/log.js';
import { HubClient } from './api.js';
import { RepoCache, type TreeEntry, blobKey } from './cache.js';
import { type Env, hubCacheDir, hubEndpoint, isOfflineMode } from './env.js';
import {
  HubError,
  HttpStatusError,
  NetworkError,
  type ResolvedRetry,
  type RetryOptions,
  backoffDelay,
  describeBriefly,
  header,
  isRetryable,
  resolveRetry,
  send,
  statusError,
  toUserError,
} from './http.js';
import { DEFAULT_DATASET_PATTERNS, DEFAULT_MODEL_PATTERNS, isLiteralPattern, keepPath, matchesAny } from './patterns.js';
import { type Progress, createProgress, formatBytes } from './progress.js';
import { COMMIT_SHA, type RepoRef, type RepoType, looksLikeRepoId, parseRepoId, repoPageUrl, resolveUrl } from './repo.js';
import { type HubToken, explicitToken, readToken } from './token.js';

export interface PullOptions {
  repoType?: RepoType;
  /** Branch, tag or commit sha (default main). */
  revision?: string;
  /** Glob patterns of files to fetch; default DEFAULT_MODEL_PATTERNS for models, everything for datasets. */
  include?: readonly string[] | undefined;
  exclude?: readonly string[] | undefined;
  /** The hub cache (default $HF_HUB_CACHE, i.e. $HF_HOME/hub). */
  cacheDir?: string;
  /** Default $HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Default HF_TOKEN / HUGGING_FACE_HUB_TOKEN / the token file. */
  token?: string;
  /** Use only the cache (default from HF_HUB_OFFLINE). */
  offline?: boolean;
  env?: Env;
  retry?: RetryOptions;
  /** Idle timeout per request in ms (default 60 s). */
  timeoutMs?: number;
  /** Parallel file downloads (default 4). */
  concurrency?: number;
  /** Show progress (default: on unless quiet). */
  progress?: boolean;
}

export interface PulledFile {
  path: string;
  size: number;
  /** Blob name in the cache (sha256 for LFS files, git blob id otherwise). */
  blob: string;
  status: 'downloaded' | 'cached';
}

export interface PullResult {
  repo: RepoRef;
  revision: string;
  commit: string;
  /** $HF_HUB_CACHE/<type>s--org--name/snapshots/<commit>: the directory to load from. */
  snapshotDir: string;
  files: PulledFile[];
  downloadedBytes: number;
  /** True when the result came from the cache alone (offline mode or the Hub unreachable). */
  fromCacheOnly: boolean;
}

interface PullContext {
  ref: RepoRef;
  revision: string;
  cache: RepoCache;
  filter: { include: readonly string[]; exclude: readonly string[] | undefined };
  endpoint: string;
  token: HubToken | undefined;
  retry: ResolvedRetry;
  timeoutMs: number;
}

function setup(repoId: string, opts: PullOptions): PullContext {
  const env = opts.env ?? process.env;
  const ref = parseRepoId(repoId, { type: opts.repoType });
  const revision = opts.revision ?? 'main';
  if (revision.trim() === '' || revision.split('/').some((s) => s === '..' || s === '.' || s === '')) {
    throw new UnimeError(`'${revision}' is not a usable revision`, { fix: 'name a branch, a tag or a commit sha' });
  }
  const include = opts.include && opts.include.length > 0 ? opts.include : ref.type === 'dataset' ? DEFAULT_DATASET_PATTERNS : DEFAULT_MODEL_PATTERNS;
  return {
    ref,
    revision,
    cache: new RepoCache(opts.cacheDir ?? hubCacheDir(env), ref),
    filter: { include, exclude: opts.exclude && opts.exclude.length > 0 ? opts.exclude : undefined },
    endpoint: (opts.endpoint ?? hubEndpoint(env)).replace(/\/+$/, ''),
    token: opts.token !== undefined ? explicitToken(opts.token) : readToken(env),
    retry: resolveRetry(opts.retry, env),
    timeoutMs: opts.timeoutMs ?? 60_000,
  };
}

function describe(ctx: PullContext): string {
  return `${ctx.ref.type === 'dataset' ? 'dataset ' : ''}${ctx.ref.id}@${ctx.revision}`;
}

/** Download (or find in the cache) the files of a repo that match the patterns. */
export async function pull(repoId: string, opts: PullOptions = {}): Promise<PullResult> {
  const ctx = setup(repoId, opts);
  const env = opts.env ?? process.env;
  if (opts.offline ?? isOfflineMode(env)) return fromCache(ctx, 'offline mode is on (HF_HUB_OFFLINE or --offline)');

  const client = new HubClient({ endpoint: ctx.endpoint, token: ctx.token, retry: ctx.retry, timeoutMs: ctx.timeoutMs });
  const errCtx = { action: `download ${describe(ctx)}`, endpoint: ctx.endpoint, repoId: ctx.ref.id, repoType: ctx.ref.type, revision: ctx.revision, token: ctx.token };

  let commit: string;
  let tree: TreeEntry[] | undefined;
  try {
    // A full sha whose listing we already have needs no network at all.
    if (COMMIT_SHA.test(ctx.revision) && (tree = await ctx.cache.readTree(ctx.revision))) {
      commit = ctx.revision;
    } else {
      commit = (await client.revisionInfo(ctx.ref, ctx.revision)).sha;
    }
  } catch (e) {
    // Like huggingface_hub: when the Hub cannot be reached, a complete cached snapshot will do.
    if (e instanceof NetworkError || (e instanceof HttpStatusError && e.status >= 500)) {
      const cached = await fromCache(ctx, '').catch(() => undefined);
      if (cached) {
        log.warn(`could not reach ${ctx.endpoint} (${describeBriefly(e)}); using the cached snapshot ${cached.commit.slice(0, 12)} of ${describe(ctx)}`);
        return cached;
      }
    }
    throw toUserError(e, errCtx);
  }

  try {
    await ctx.cache.writeRef(ctx.revision, commit);
    if (!tree) {
      tree = await ctx.cache.readTree(commit);
      if (!tree) {
        tree = await client.listTree(ctx.ref, commit);
        await ctx.cache.writeTree(commit, tree);
      }
    }
  } catch (e) {
    throw toUserError(e, errCtx);
  }

  const selected = selectFiles(ctx, tree, commit);
  // Files with the same content share one blob: fetch it once, link every path to it.
  const todo = new Map<string, TreeEntry[]>();
  const files: PulledFile[] = [];
  for (const e of selected) {
    const key = blobKey(e);
    if (todo.has(key)) todo.get(key)!.push(e);
    else if (await ctx.cache.hasBlob(key, e.size)) {
      await ctx.cache.linkPointer(commit, e.path, key);
      files.push({ path: e.path, size: e.size, blob: key, status: 'cached' });
    } else {
      todo.set(key, [e]);
    }
  }

  let downloadedBytes = 0;
  if (todo.size > 0) {
    const groups = [...todo.values()];
    const total = groups.reduce((s, g) => s + g[0]!.size, 0);
    log.info(`downloading ${groups.length} file${groups.length === 1 ? '' : 's'} (${formatBytes(total)}) of ${describe(ctx)} at ${commit.slice(0, 12)}`);
    const progress = createProgress({ label: `pull ${ctx.ref.id}`, total, unit: 'bytes', ...(opts.progress !== undefined ? { enabled: opts.progress } : {}) });
    const queue = [...groups];
    const failures: unknown[] = [];
    const worker = async () => {
      for (let g = queue.shift(); g !== undefined && failures.length === 0; g = queue.shift()) {
        try {
          downloadedBytes += await downloadFile(ctx, commit, g[0]!, progress);
          for (const e of g) {
            await ctx.cache.linkPointer(commit, e.path, blobKey(e));
            files.push({ path: e.path, size: e.size, blob: blobKey(e), status: 'downloaded' });
          }
        } catch (err) {
          failures.push(err);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.concurrency ?? 4, groups.length)) }, worker));
    progress.done();
    if (failures.length > 0) throw toUserError(failures[0], errCtx);
  }
  files.sort((a, b) => (a.path < b.path ? -1 : 1));
  return { repo: ctx.ref, revision: ctx.revision, commit, snapshotDir: ctx.cache.snapshotDir(commit), files, downloadedBytes, fromCacheOnly: false };
}

function selectFiles(ctx: PullContext, tree: readonly TreeEntry[], commit: string): TreeEntry[] {
  const selected = tree.filter((e) => keepPath(e.path, ctx.filter));
  const unmatched = ctx.filter.include.filter((p) => isLiteralPattern(p) && !tree.some((e) => e.path === p));
  if (unmatched.length > 0) {
    throw new HubError(`${describe(ctx)} (commit ${commit.slice(0, 12)}) has no file ${unmatched.map((p) => `'${p}'`).join(', ')}`, {
      fix: `see the files at ${repoPageUrl(ctx.endpoint, ctx.ref)}/tree/${encodeURIComponent(ctx.revision)}`,
    });
  }
  if (selected.length === 0) {
    throw new HubError(`no file of ${describe(ctx)} matches ${ctx.filter.include.join(' ')}${ctx.filter.exclude ? ` (excluding ${ctx.filter.exclude.join(' ')})` : ''}`, {
      fix: 'adjust --include/--exclude',
    });
  }
  return selected;
}

// ---------------------------------------------------------------------------------------------
// Offline: everything from the cache, or a list of exactly what is missing.

async function walkFiles(dir: string, prefix = ''): Promise<string[]> {
  let entries;
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const d of entries) {
    const rel = prefix ? `${prefix}/${d.name}` : d.name;
    const full = path.join(dir, d.name);
    if (d.isDirectory()) out.push(...(await walkFiles(full, rel)));
    else out.push(rel);
  }
  return out;
}

async function fromCache(ctx: PullContext, why: string): Promise<PullResult> {
  const commit = await ctx.cache.commitFor(ctx.revision);
  const snapshot = commit ? ctx.cache.snapshotDir(commit) : undefined;
  if (!commit || !snapshot || !existsSync(snapshot)) {
    throw new HubError(`${describe(ctx)} is not in the cache (${ctx.cache.dir})${why ? ` and ${why}` : ''}`, {
      fix: `run \`unime pull ${ctx.ref.type === 'dataset' ? '--dataset ' : ''}${ctx.ref.id}${ctx.revision === 'main' ? '' : ` --revision ${ctx.revision}`}\` with network access first`,
    });
  }
  const tree = await ctx.cache.readTree(commit);
  const missing: string[] = [];
  const files: PulledFile[] = [];
  if (tree) {
    // The listing saved at pull time says exactly which files belong to this commit.
    for (const e of tree.filter((t) => keepPath(t.path, ctx.filter))) {
      if (await ctx.cache.hasPointer(commit, e.path, e.size)) files.push({ path: e.path, size: e.size, blob: blobKey(e), status: 'cached' });
      else missing.push(`${e.path} (${formatBytes(e.size)})`);
    }
    for (const p of ctx.filter.include.filter((p) => isLiteralPattern(p) && !tree.some((e) => e.path === p))) missing.push(`${p} (not in the repo at this commit)`);
  } else {
    // A snapshot some other tool made: check what can be known without the listing.
    const present = (await walkFiles(snapshot)).filter((p) => keepPath(p, ctx.filter));
    const presentSet = new Set(present);
    for (const p of present) {
      const full = path.join(snapshot, ...p.split('/'));
      try {
        const st = statSync(full);
        files.push({ path: p, size: st.size, blob: path.basename(await fsp.realpath(full)), status: 'cached' });
      } catch {
        missing.push(`${p} (dangling link: its blob is gone)`);
      }
    }
    const expected = new Set(ctx.filter.include.filter(isLiteralPattern));
    if (ctx.ref.type === 'model' && ctx.filter.include === DEFAULT_MODEL_PATTERNS && !presentSet.has('adapter_config.json')) expected.add('config.json');
    for (const p of present.filter((p) => p.endsWith('.safetensors.index.json'))) {
      try {
        const idx = JSON.parse(await fsp.readFile(path.join(snapshot, ...p.split('/')), 'utf8')) as { weight_map?: Record<string, string> };
        const dir = p.includes('/') ? p.slice(0, p.lastIndexOf('/') + 1) : '';
        for (const shard of new Set(Object.values(idx.weight_map ?? {}))) if (keepPath(dir + shard, ctx.filter)) expected.add(dir + shard);
      } catch {
        missing.push(`${p} (unreadable)`);
      }
    }
    for (const p of expected) if (!presentSet.has(p)) missing.push(p);
    if (present.length === 0 && expected.size === 0) missing.push(`any file matching ${ctx.filter.include.join(' ')}`);
  }
  if (missing.length > 0) {
    throw new HubError(`${describe(ctx)} (commit ${commit.slice(0, 12)}) is only partly in the cache${why ? ` and ${why}` : ''}; missing:\n    ${missing.join('\n    ')}`, {
      fix: `run \`unime pull ${ctx.ref.type === 'dataset' ? '--dataset ' : ''}${ctx.ref.id}${ctx.revision === 'main' ? '' : ` --revision ${ctx.revision}`}\` with network access to fetch them`,
    });
  }
  files.sort((a, b) => (a.path < b.path ? -1 : 1));
  return { repo: ctx.ref, revision: ctx.revision, commit, snapshotDir: snapshot, files, downloadedBytes: 0, fromCacheOnly: true };
}

// ---------------------------------------------------------------------------------------------
// One file: resumable download into blobs/<key>.incomplete, checked, then renamed into place.

async function fileSize(p: string): Promise<number> {
  try {
    return (await fsp.stat(p)).size;
  } catch {
    return 0;
  }
}

async function hashFile(p: string, algo: 'sha256' | 'git-sha1', size: number): Promise<string> {
  const h = createHash(algo === 'sha256' ? 'sha256' : 'sha1');
  if (algo === 'git-sha1') h.update(`blob ${size}\0`);
  for await (const c of createReadStream(p)) h.update(c as Buffer);
  return h.digest('hex');
}

/** Download one entry into its blob; returns the bytes fetched over the network. */
async function downloadFile(ctx: PullContext, commit: string, e: TreeEntry, progress: Progress): Promise<number> {
  const key = blobKey(e);
  const inc = ctx.cache.incompletePath(key);
  await fsp.mkdir(path.dirname(inc), { recursive: true });
  const check: { algo: 'sha256' | 'git-sha1'; want: string } | undefined = e.lfs
    ? { algo: 'sha256', want: e.lfs.sha256.toLowerCase() }
    : /^[0-9a-f]{40}$/.test(e.oid)
      ? { algo: 'git-sha1', want: e.oid }
      : undefined;
  let fetched = 0;
  let restarted = false;
  for (;;) {
    const { bytes, resumed } = await fetchIntoIncomplete(ctx, commit, e, inc, progress);
    fetched += bytes;
    const size = await fileSize(inc);
    const got = check && size === e.size ? await hashFile(inc, check.algo, size) : undefined;
    if (size === e.size && (!check || got === check.want)) {
      await fsp.rename(inc, ctx.cache.blobPath(key));
      return fetched;
    }
    await fsp.rm(inc, { force: true });
    const what = size !== e.size ? `has ${size} bytes, expected ${e.size}` : `has ${check!.algo} ${got}, expected ${check!.want}`;
    if (resumed && !restarted) {
      log.warn(`the resumed download of ${e.path} ${what}; discarded it, downloading it again from the start`);
      restarted = true;
      progress.add(-size);
      continue;
    }
    throw new HubError(`the download of ${e.path} from ${describe(ctx)} ${what}; it was discarded and nothing was installed`, {
      fix: 'run the pull again; if it fails the same way, a proxy or the server is altering the file',
    });
  }
}

/**
 * Fill `inc` up to the entry's size, resuming from what is there. Retries dropped connections
 * and 5xx; the count of attempts restarts whenever an attempt made progress.
 */
async function fetchIntoIncomplete(ctx: PullContext, commit: string, e: TreeEntry, inc: string, progress: Progress): Promise<{ bytes: number; resumed: boolean }> {
  const url = resolveUrl(ctx.endpoint, ctx.ref, commit, e.path);
  let fetched = 0;
  let resumed = false;
  let reported = 0; // bytes of this file counted in the progress bar
  const report = (n: number) => {
    progress.add(n - reported);
    reported = n;
  };
  let fruitless = 0;
  for (;;) {
    let have = await fileSize(inc);
    if (have > e.size) {
      await fsp.truncate(inc, 0);
      have = 0;
    }
    report(have);
    if (have === e.size) return { bytes: fetched, resumed };
    const before = have;
    try {
      const res = await send({ method: 'GET', url, headers: have > 0 ? { range: `bytes=${have}-` } : {}, token: ctx.token, authOrigin: new URL(ctx.endpoint).origin, timeoutMs: ctx.timeoutMs });
      let start: number;
      if (res.status === 206 && have > 0) {
        const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(header(res.headers, 'content-range') ?? '');
        if (!m || Number(m[1]) !== have) {
          res.body.resume();
          throw new NetworkError('EBADRANGE', `the server answered a range request for ${e.path} with the wrong range`);
        }
        start = have;
        resumed = true;
        log.debug(`resuming ${e.path} at byte ${have}`);
      } else if (res.status === 200) {
        start = 0; // no partial file, or the server ignored the Range header
      } else if (res.status === 416) {
        res.body.resume();
        await fsp.truncate(inc, 0);
        throw new NetworkError('EBADRANGE', `the server refused to resume ${e.path}`);
      } else {
        throw await statusError('GET', res);
      }
      const fh = await fsp.open(inc, start === 0 ? 'w' : 'a');
      let written = start;
      try {
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          await fh.write(chunk);
          written += chunk.length;
          fetched += chunk.length;
          report(written);
        }
      } catch (err) {
        const x = err as NodeJS.ErrnoException;
        throw x instanceof NetworkError ? x : new NetworkError(x.code ?? 'ECONNRESET', `download of ${e.path} interrupted: ${x.message}`);
      } finally {
        await fh.close();
      }
      if (written < e.size) throw new NetworkError('ESHORT', `the connection closed ${e.size - written} bytes before the end of ${e.path}`);
      return { bytes: fetched, resumed };
    } catch (err) {
      const now = await fileSize(inc);
      if (now > before) fruitless = 0;
      fruitless++;
      if (!isRetryable(err) || fruitless >= ctx.retry.attempts) throw err;
      const wait = backoffDelay(fruitless, ctx.retry, err instanceof HttpStatusError ? err.retryAfterMs : undefined);
      log.warn(`downloading ${e.path}: ${describeBriefly(err)}; ${now > 0 ? `resuming at ${formatBytes(now)}` : 'retrying'} in ${Math.round(wait)} ms`);
      await sleep(wait);
    }
  }
}

// ---------------------------------------------------------------------------------------------

export interface ResolveModelOptions extends PullOptions {
  /** Base for relative local paths (default process.cwd()). */
  cwd?: string;
}

/**
 * What recipes and `--model` flags call: a local directory (or file) is returned as an absolute
 * path untouched; a Hub id is pulled (or found in the cache) and its snapshot directory returned.
 */
export async function resolveModelPath(idOrPath: string, opts: ResolveModelOptions = {}): Promise<string> {
  const s = idOrPath.trim();
  const local = path.resolve(opts.cwd ?? process.cwd(), s.startsWith('~/') ? path.join(process.env.HOME ?? '', s.slice(2)) : s);
  if (existsSync(local)) return local;
  const pathLike = s.startsWith('/') || s.startsWith('./') || s.startsWith('../') || s.startsWith('~') || s.includes('\\') || s.split('/').length > 2;
  if (pathLike || !looksLikeRepoId(s)) {
    throw new UnimeError(`model '${s}' is neither an existing directory nor a Hub id`, {
      fix: `check the path (looked for ${local}), or name a Hub repo as owner/name`,
    });
  }
  const res = await pull(s, opts);
  return res.snapshotDir;
}

/** Files of a pull result that match extra patterns (handy for callers that want only the weights). */
export function filesMatching(res: PullResult, patterns: readonly string[]): string[] {
  return res.files.filter((f) => matchesAny(f.path, patterns)).map((f) => path.join(res.snapshotDir, ...f.path.split('/')));
}
