/**
 * `push`: a checkpoint directory to a Hub repo in one commit. The repo is created if needed
 * (private on request), LFS files go up first through the LFS batch API, then one NDJSON commit
 * adds everything at once; the Hub applies a commit whole or not at all, so a push that fails
 * anywhere leaves the repo as it was. Rerunning a failed push skips LFS objects already uploaded.
 *
 * What goes up: the adapter (adapter_config.json + adapter_model.safetensors) or the merged model
 * (config.json + *.safetensors and their index), tokenizer and processor files, recipe*.yaml,
 * metrics/train logs, eval results, and a generated README.md model card. Optimizer state,
 * intermediate checkpoints, hidden and temporary files stay home.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { log } from '../runtime/log.js';
import { type CommitOp, HubClient } from './api.js';
import { type Env, hubEndpoint } from './env.js';
import { HubError, type RetryOptions, resolveRetry, toUserError } from './http.js';
import { type ModelCardInput, buildModelCard, modelCardInputFromCheckpoint } from './model-card.js';
import { matchesAny } from './patterns.js';
import { createProgress, formatBytes } from './progress.js';
import { type RepoRef, parseRepoId, repoPageUrl } from './repo.js';
import { type HubToken, explicitToken, readToken } from './token.js';

export interface PushOptions {
  private?: boolean;
  /** Branch to commit to (default main; created from main when missing). */
  revision?: string;
  /** Also upload optimizer/scheduler state. */
  includeOptimizer?: boolean;
  /** Extra patterns to upload / to leave out (fnmatch, relative to the checkpoint dir). */
  include?: readonly string[] | undefined;
  exclude?: readonly string[] | undefined;
  /** Commit title (default "Upload <dir name> with unime"). */
  message?: string;
  /** Model card fields that the directory does not tell (license, extra tags, base model). */
  card?: Partial<Pick<ModelCardInput, 'license' | 'tags' | 'datasets' | 'baseModel' | 'pipelineTag'>>;
  /** Plan only: no token needed, nothing sent. */
  dryRun?: boolean;
  endpoint?: string;
  token?: string;
  env?: Env;
  retry?: RetryOptions;
  timeoutMs?: number;
  progress?: boolean;
}

export interface PlannedFile {
  /** Path in the repo (posix). */
  path: string;
  size: number;
  /** Absolute source path; undefined for generated files (the model card). */
  abs?: string | undefined;
  content?: Buffer | undefined;
}

export interface PushPlan {
  checkpointDir: string;
  repo: RepoRef;
  kind: 'adapter' | 'merged';
  files: PlannedFile[];
  skipped: { path: string; reason: string }[];
  card: string;
}

export interface PushResult {
  repo: RepoRef;
  revision: string;
  url: string;
  commitOid: string;
  commitUrl?: string | undefined;
  created: boolean;
  files: { path: string; size: number; lfs: boolean }[];
  /** LFS bytes actually sent (objects the Hub already had are skipped). */
  uploadedBytes: number;
  plan: PushPlan;
}

/** Uploadable kinds of files; anything else in a checkpoint dir is left out (and listed as skipped). */
const ALLOWED = [
  '*.safetensors',
  '*.json',
  '*.jsonl',
  '*.yaml',
  '*.yml',
  '*.log',
  '*.txt',
  '*.md',
  '*.csv',
  '*.model',
  '*.tiktoken',
  '*.jinja',
  '*tokenizer*',
  '*vocab*',
];
const TEMP = ['*.tmp', '*.tmp-*', '*.incomplete', '*.lock', '*.partial', '*~', '*.swp', '*.part'];
const OPTIMIZER = /^(optimizer|scheduler|scaler|rng_state|training_state|optim)([._-]|$)/i;
const INTERMEDIATE = /^(checkpoint|ckpt|step|global_step)[-_]?\d+$/i;

async function walk(dir: string, rel = '', depth = 0): Promise<string[]> {
  if (depth > 8) return [];
  const out: string[] = [];
  for (const d of await fsp.readdir(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${d.name}` : d.name;
    if (d.isDirectory()) out.push(`${r}/`, ...(await walk(dir, r, depth + 1)));
    else if (d.isFile() || d.isSymbolicLink()) out.push(r);
  }
  return out;
}

function skipReason(rel: string, opts: PushOptions): string | undefined {
  const parts = rel.split('/');
  const base = parts[parts.length - 1]!;
  if (opts.exclude && matchesAny(rel, opts.exclude)) return 'excluded by --exclude';
  if (parts.some((p) => p.startsWith('.'))) return 'hidden';
  if (matchesAny(base, TEMP)) return 'temporary file';
  if (parts.length > 1 && INTERMEDIATE.test(parts[0]!)) return 'intermediate checkpoint';
  if (parts.some((p) => OPTIMIZER.test(p)) && !opts.includeOptimizer) return 'optimizer state (--include-optimizer uploads it)';
  if (rel === 'README.md') return 'replaced by the generated model card';
  if (opts.include && matchesAny(rel, opts.include)) return undefined;
  if (parts.some((p) => OPTIMIZER.test(p))) return undefined;
  if (!matchesAny(rel, ALLOWED)) return 'not a weight, config, tokenizer, recipe, log or eval file (--include uploads it)';
  return undefined;
}

/** What a push would upload from `dir`, and the model card it would write. Reads, sends nothing. */
export async function planPush(dir: string, repoId: string, opts: PushOptions = {}): Promise<PushPlan> {
  const repo = parseRepoId(repoId, { requireOwner: true });
  const checkpointDir = path.resolve(dir);
  let st;
  try {
    st = await fsp.stat(checkpointDir);
  } catch {
    throw new UnimeError(`checkpoint directory ${dir} does not exist`, { fix: 'name the directory a training stage wrote (its output_dir)' });
  }
  if (!st.isDirectory()) throw new UnimeError(`${dir} is not a directory`, { fix: 'name the checkpoint directory, not a file in it' });

  const files: PlannedFile[] = [];
  const skipped: { path: string; reason: string }[] = [];
  const all = await walk(checkpointDir);
  const skippedDirs: string[] = [];
  for (const rel of all) {
    if (skippedDirs.some((d) => rel.startsWith(d))) continue;
    if (rel.endsWith('/')) {
      const name = rel.slice(0, -1);
      const parts = name.split('/');
      const reason = parts.some((p) => p.startsWith('.'))
        ? 'hidden'
        : parts.length === 1 && INTERMEDIATE.test(name)
          ? 'intermediate checkpoint'
          : undefined;
      if (reason) {
        skipped.push({ path: rel, reason });
        skippedDirs.push(rel);
      }
      continue;
    }
    const reason = skipReason(rel, opts);
    if (reason) {
      skipped.push({ path: rel, reason });
      continue;
    }
    const abs = path.join(checkpointDir, ...rel.split('/'));
    const s = await fsp.stat(abs);
    if (!s.isFile()) {
      skipped.push({ path: rel, reason: 'not a regular file' });
      continue;
    }
    files.push({ path: rel, size: s.size, abs });
  }

  const names = new Set(files.map((f) => f.path));
  let kind: 'adapter' | 'merged';
  if (names.has('adapter_config.json') && names.has('adapter_model.safetensors')) kind = 'adapter';
  else if (names.has('config.json') && files.some((f) => !f.path.includes('/') && f.path.endsWith('.safetensors'))) kind = 'merged';
  else {
    throw new UnimeError(`${dir} holds no model to push: expected adapter_config.json + adapter_model.safetensors (an adapter) or config.json + *.safetensors (a merged model)`, {
      fix: 'point push at a checkpoint directory a training stage wrote',
    });
  }

  const input = await modelCardInputFromCheckpoint(checkpointDir, repo.id, [...names], opts.card ?? {});
  const card = buildModelCard(input);
  const content = Buffer.from(card);
  files.push({ path: 'README.md', size: content.length, content });
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { checkpointDir, repo, kind, files, skipped, card };
}

async function hashAndSample(f: PlannedFile): Promise<{ sha256: string; sample: Buffer }> {
  if (f.content) return { sha256: createHash('sha256').update(f.content).digest('hex'), sample: f.content.subarray(0, 512) };
  const h = createHash('sha256');
  const head: Buffer[] = [];
  let headLen = 0;
  for await (const c of createReadStream(f.abs!) as AsyncIterable<Buffer>) {
    h.update(c);
    if (headLen < 512) {
      head.push(c.subarray(0, 512 - headLen));
      headLen += Math.min(c.length, 512 - headLen);
    }
  }
  return { sha256: h.digest('hex'), sample: Buffer.concat(head) };
}

/** Upload a checkpoint directory to `repoId` as one commit. */
export async function push(dir: string, repoId: string, opts: PushOptions = {}): Promise<PushResult> {
  const plan = await planPush(dir, repoId, opts);
  const env = opts.env ?? process.env;
  const endpoint = (opts.endpoint ?? hubEndpoint(env)).replace(/\/+$/, '');
  const revision = opts.revision ?? 'main';
  const repo = plan.repo;
  const url = repoPageUrl(endpoint, repo);
  if (opts.dryRun) {
    return { repo, revision, url, commitOid: '', created: false, files: plan.files.map((f) => ({ path: f.path, size: f.size, lfs: false })), uploadedBytes: 0, plan };
  }
  const token: HubToken | undefined = opts.token !== undefined ? explicitToken(opts.token) : readToken(env);
  if (!token) {
    throw new HubError(`pushing to ${repo.id} needs a Hugging Face token with write access, and none is set`, {
      fix: 'set HF_TOKEN or run `huggingface-cli login`',
    });
  }
  const client = new HubClient({ endpoint, token, retry: resolveRetry(opts.retry, env), timeoutMs: opts.timeoutMs });
  const errCtx = { action: `push to ${repo.id}`, endpoint, repoId: repo.id, repoType: repo.type, revision, token };
  try {
    const created = await client.createRepo(repo, { private: opts.private ?? false });
    if (created) log.info(`created ${opts.private ? 'private ' : ''}repo ${url}`);
    else if (opts.private) log.warn(`${repo.id} already exists; its visibility was left as it is (--private only applies to new repos)`);
    if (revision !== 'main' && (await client.createBranch(repo, revision))) log.info(`created branch ${revision}`);
    const parent = (await client.revisionInfo(repo, revision)).sha;

    log.info(`hashing ${plan.files.length} files (${formatBytes(plan.files.reduce((s, f) => s + f.size, 0))}) from ${plan.checkpointDir}`);
    const infos = [];
    for (const f of plan.files) infos.push({ ...f, ...(await hashAndSample(f)) });
    const modes = await client.preupload(repo, revision, infos.map((f) => ({ path: f.path, size: f.size, sample: f.sample })));
    const kept = infos.filter((f) => {
      const ignore = modes.get(f.path)!.ignore;
      if (ignore) log.warn(`${f.path} is ignored by the repo's .gitignore and was not uploaded`);
      return !ignore;
    });
    const lfsFiles = kept.filter((f) => modes.get(f.path)!.lfs);

    let uploadedBytes = 0;
    if (lfsFiles.length > 0) {
      const unique = [...new Map(lfsFiles.map((f) => [f.sha256, f])).values()];
      const batch = await client.lfsBatch(repo, revision, unique.map((f) => ({ oid: f.sha256, size: f.size })));
      const byOid = new Map(unique.map((f) => [f.sha256, f]));
      const errors = batch.filter((o) => o.error);
      if (errors.length > 0) {
        throw new HubError(`the Hub refused ${errors.length} LFS upload(s): ${errors.map((o) => `${byOid.get(o.oid)?.path ?? o.oid}: ${o.error!.message}`).join('; ')}`);
      }
      const toSend = batch.filter((o) => o.actions?.upload);
      const total = toSend.reduce((s, o) => s + o.size, 0);
      if (toSend.length < unique.length) log.info(`${unique.length - toSend.length} large file(s) already on the Hub, not sent again`);
      if (toSend.length > 0) {
        log.info(`uploading ${toSend.length} large file(s) (${formatBytes(total)})`);
        const progress = createProgress({ label: `push ${repo.id}`, total, unit: 'bytes', ...(opts.progress !== undefined ? { enabled: opts.progress } : {}) });
        try {
          for (const o of toSend) {
            const f = byOid.get(o.oid);
            if (!f) throw new HubError(`the Hub asked for an LFS object this push did not offer (${o.oid.slice(0, 12)})`);
            await client.uploadLfs(o, { abs: f.abs, content: f.content, size: f.size, label: f.path }, (d) => {
              uploadedBytes += d;
              progress.add(d);
            });
          }
        } finally {
          progress.done();
        }
      }
    }

    const ops: CommitOp[] = [];
    for (const f of kept) {
      if (modes.get(f.path)!.lfs) ops.push({ kind: 'lfs', path: f.path, sha256: f.sha256, size: f.size });
      else ops.push({ kind: 'regular', path: f.path, content: f.content ?? (await fsp.readFile(f.abs!)) });
    }
    const message = opts.message ?? `Upload ${path.basename(plan.checkpointDir)} with unime`;
    const description = `Pushed by \`unime push\`: ${plan.kind === 'adapter' ? 'LoRA adapter' : 'merged model'}, ${ops.length} files.`;
    const { commitOid, commitUrl } = await client.commit(repo, revision, ops, message, description, parent);
    return {
      repo,
      revision,
      url,
      commitOid,
      commitUrl,
      created,
      files: kept.map((f) => ({ path: f.path, size: f.size, lfs: modes.get(f.path)!.lfs })),
      uploadedBytes,
      plan,
    };
  } catch (e) {
    throw toUserError(e, errCtx);
  }
}
