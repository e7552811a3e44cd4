/**
 * Hub repository ids and the URLs and cache folder names built from them, following the Hub's
 * own rules (huggingface_hub's validate_repo_id): `name` or `owner/name`, letters, digits, `-`,
 * `_` and `.`, at most 96 characters a part, no `--` or `..`, not ending in `.git`.
 */
import { UnimeError } from '../errors.js';

export type RepoType = 'model' | 'dataset';

export interface RepoRef {
  id: string;
  type: RepoType;
}

const PART = /^[A-Za-z0-9_.-]{1,96}$/;

/** Why `id` is not a valid repo id, or undefined when it is. */
export function repoIdProblem(id: string): string | undefined {
  const parts = id.split('/');
  if (parts.length > 2) return 'a repo id has at most one "/" (owner/name)';
  if (parts.some((p) => !PART.test(p))) return 'a repo id is owner/name made of letters, digits, "-", "_" and "." (at most 96 each)';
  if (parts.some((p) => /^[-.]|[-.]$/.test(p))) return 'the owner and the name must start and end with a letter or digit';
  if (id.includes('--') || id.includes('..')) return 'a repo id may not contain "--" or ".."';
  if (id.endsWith('.git')) return 'a repo id may not end in ".git"';
  return undefined;
}

export function looksLikeRepoId(s: string): boolean {
  return repoIdProblem(s) === undefined;
}

/**
 * Parse `owner/name` (or `datasets/owner/name`, the Hub's URL form for datasets) into a RepoRef.
 * `requireOwner` rejects a bare name (pushes need to know the namespace).
 */
export function parseRepoId(s: string, opts: { type?: RepoType | undefined; requireOwner?: boolean } = {}): RepoRef {
  let id = s.trim();
  let type: RepoType = opts.type ?? 'model';
  if (id.startsWith('datasets/') && id.split('/').length === 3) {
    id = id.slice('datasets/'.length);
    type = 'dataset';
  } else if (id.startsWith('models/') && id.split('/').length === 3) {
    id = id.slice('models/'.length);
  }
  const problem = repoIdProblem(id);
  if (problem) throw new UnimeError(`'${s}' is not a Hub repo id: ${problem}`, { fix: 'name the repository as owner/name, e.g. TIGER-Lab/VLM2Vec-Full' });
  if (opts.requireOwner && !id.includes('/')) {
    throw new UnimeError(`'${s}' names no owner`, { fix: `name the repository as owner/name, e.g. your-user/${id}` });
  }
  return { id, type };
}

/** `models--org--name` / `datasets--org--name`, the cache folder huggingface_hub uses. */
export function repoFolderName(ref: RepoRef): string {
  return [`${ref.type}s`, ...ref.id.split('/')].join('--');
}

/** `<endpoint>/api/models/<id>` */
export function apiRepoUrl(endpoint: string, ref: RepoRef): string {
  return `${endpoint}/api/${ref.type}s/${ref.id}`;
}

export function encodePath(p: string): string {
  return p.split('/').map(encodeURIComponent).join('/');
}

/** The download URL of one file at one revision. */
export function resolveUrl(endpoint: string, ref: RepoRef, revision: string, path: string): string {
  return `${endpoint}/${ref.type === 'dataset' ? 'datasets/' : ''}${ref.id}/resolve/${encodeURIComponent(revision)}/${encodePath(path)}`;
}

/** The repo's web page, for messages. */
export function repoPageUrl(endpoint: string, ref: RepoRef): string {
  return `${endpoint}/${ref.type === 'dataset' ? 'datasets/' : ''}${ref.id}`;
}

export const COMMIT_SHA = /^[0-9a-f]{40}$/;
