/**
 * Where the Hub is and where its cache lives, read from the same environment variables
 * huggingface_hub reads, so that Python tools and unime share one cache and one login.
 *
 *   HF_ENDPOINT      https://huggingface.co
 *   HF_HOME          $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface
 *   HF_HUB_CACHE     $HF_HOME/hub (HUGGINGFACE_HUB_CACHE is the legacy name)
 *   HF_TOKEN_PATH    $HF_HOME/token
 *   HF_HUB_OFFLINE   1/true/yes/on: never touch the network (TRANSFORMERS_OFFLINE too)
 *
 * Everything takes an `env` argument (default process.env) so tests can pass their own.
 */
import * as os from 'node:os';
import * as path from 'node:path';

export type Env = Readonly<Record<string, string | undefined>>;

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

function expandHome(p: string): string {
  if (p === '~') return os.homedir();
  if (p.startsWith('~/')) return path.join(os.homedir(), p.slice(2));
  return p;
}

function nonEmpty(v: string | undefined): string | undefined {
  return v !== undefined && v.trim() !== '' ? v.trim() : undefined;
}

/** The Hub's base URL, without a trailing slash. */
export function hubEndpoint(env: Env = process.env): string {
  return (nonEmpty(env.HF_ENDPOINT) ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
}

export function hfHome(env: Env = process.env): string {
  const home = nonEmpty(env.HF_HOME);
  if (home) return path.resolve(expandHome(home));
  const xdg = nonEmpty(env.XDG_CACHE_HOME);
  return path.join(xdg ? path.resolve(expandHome(xdg)) : path.join(os.homedir(), '.cache'), 'huggingface');
}

/** The hub cache: `models--org--name` folders live here. */
export function hubCacheDir(env: Env = process.env): string {
  const dir = nonEmpty(env.HF_HUB_CACHE) ?? nonEmpty(env.HUGGINGFACE_HUB_CACHE);
  return dir ? path.resolve(expandHome(dir)) : path.join(hfHome(env), 'hub');
}

/** The file `huggingface-cli login` writes the token to. */
export function tokenPath(env: Env = process.env): string {
  const p = nonEmpty(env.HF_TOKEN_PATH);
  return p ? path.resolve(expandHome(p)) : path.join(hfHome(env), 'token');
}

export function isTruthy(v: string | undefined): boolean {
  return v !== undefined && ['1', 'true', 'yes', 'on'].includes(v.trim().toLowerCase());
}

export function isOfflineMode(env: Env = process.env): boolean {
  return isTruthy(env.HF_HUB_OFFLINE) || isTruthy(env.TRANSFORMERS_OFFLINE);
}
