/**
 * The smallest HTTP client the Hub needs, on node:http/https: streaming bodies both ways,
 * redirects followed by hand (so the token is only ever sent to the Hub's own origin, never to a
 * CDN or a presigned storage URL), an idle timeout, and retries with capped exponential backoff
 * and jitter on 5xx, 429, 408 and dropped connections. 401/403/404 and other 4xx are final.
 *
 * Low-level failures are `HttpStatusError` / `NetworkError`; `toUserError` turns them into one
 * UnimeError that says what failed and what to do, with the token redacted.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { UnimeError } from '../errors.js';
import { log } from '../runtime/log.js';
import type { Env } from './env.js';
import { type HubToken, redact } from './token.js';

export class HubError extends UnimeError {}

/** The server answered with a status we do not accept. */
export class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    readonly method: string,
    readonly url: string,
    /** X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo...) when sent. */
    readonly errorCode: string | undefined,
    /** The server's own explanation (X-Error-Message or the body's "error"), redacted and shortened. */
    readonly serverMessage: string | undefined,
    readonly retryAfterMs: number | undefined,
  ) {
    super(`${method} ${redact(url)}: HTTP ${status}${serverMessage ? ` (${serverMessage})` : ''}`);
    this.name = 'HttpStatusError';
  }
}

/** The connection failed, dropped, or went silent. */
export class NetworkError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(redact(message));
    this.name = 'NetworkError';
  }
}

export function isRetryable(e: unknown): boolean {
  if (e instanceof NetworkError) return true;
  if (e instanceof HttpStatusError) return e.status >= 500 || e.status === 429 || e.status === 408;
  return false;
}

export interface RetryOptions {
  /** Attempts in all, the first included (default 5). */
  attempts?: number;
  /** First delay; doubles each retry (default 1000 ms). */
  baseDelayMs?: number;
  /** Cap on one delay (default 30 s). */
  maxDelayMs?: number;
}

export interface ResolvedRetry {
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

/**
 * Retry settings: explicit options win, then UNIME_HUB_RETRY_ATTEMPTS / UNIME_HUB_RETRY_BASE_MS /
 * UNIME_HUB_RETRY_MAX_MS (for tests and flaky networks), then the defaults.
 */
export function resolveRetry(opts: RetryOptions | undefined, env: Env = process.env): ResolvedRetry {
  const num = (v: string | undefined) => (v !== undefined && v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : undefined);
  return {
    attempts: Math.max(1, Math.floor(opts?.attempts ?? num(env.UNIME_HUB_RETRY_ATTEMPTS) ?? 5)),
    baseDelayMs: Math.max(0, opts?.baseDelayMs ?? num(env.UNIME_HUB_RETRY_BASE_MS) ?? 1000),
    maxDelayMs: Math.max(0, opts?.maxDelayMs ?? num(env.UNIME_HUB_RETRY_MAX_MS) ?? 30_000),
  };
}

/** Delay before retry number `retry` (1-based): base * 2^(retry-1), capped, with "equal jitter". */
export function backoffDelay(retry: number, r: ResolvedRetry, retryAfterMs?: number): number {
  const exp = Math.min(r.maxDelayMs, r.baseDelayMs * 2 ** (retry - 1));
  const jittered = exp / 2 + Math.random() * (exp / 2);
  return retryAfterMs !== undefined ? Math.min(r.maxDelayMs, Math.max(jittered, retryAfterMs)) : jittered;
}

/** Run `fn` until it succeeds, retrying retryable failures. The last failure is rethrown. */
export async function withRetry<T>(what: string, retry: ResolvedRetry, fn: (attempt: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      if (!isRetryable(e) || attempt >= retry.attempts) throw attachAttempts(e, attempt);
      const wait = backoffDelay(attempt, retry, e instanceof HttpStatusError ? e.retryAfterMs : undefined);
      log.warn(`${what}: ${describeBriefly(e)}; retrying in ${formatMs(wait)} (attempt ${attempt + 1} of ${retry.attempts})`);
      await sleep(wait);
    }
  }
}

const ATTEMPTS = Symbol('attempts');
function attachAttempts(e: unknown, n: number): unknown {
  if (e && typeof e === 'object') (e as { [ATTEMPTS]?: number })[ATTEMPTS] = n;
  return e;
}
function attemptsOf(e: unknown): number | undefined {
  return e && typeof e === 'object' ? (e as { [ATTEMPTS]?: number })[ATTEMPTS] : undefined;
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export function describeBriefly(e: unknown): string {
  if (e instanceof HttpStatusError) return `HTTP ${e.status}${e.serverMessage ? ` (${e.serverMessage})` : ''}`;
  if (e instanceof NetworkError) return `connection failed (${e.code})`;
  return redact(e instanceof Error ? e.message : String(e));
}

// ---------------------------------------------------------------------------------------------

export interface StreamBody {
  length: number;
  /** A fresh stream of the body; called once per attempt. */
  open: () => Readable;
}

export interface HubRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT';
  url: string;
  headers?: Record<string, string>;
  /** Sent as a Bearer token, but only to `authOrigin` (the Hub endpoint), never across a redirect. */
  token?: HubToken | undefined;
  authOrigin?: string | undefined;
  body?: Buffer | string | StreamBody;
  /** Abort when no byte moves for this long (default 60 s). */
  timeoutMs?: number;
  /** Follow redirects for GET/HEAD (default true). */
  followRedirects?: boolean;
  /** Called with the number of body bytes written so far. */
  onUploadProgress?: (sent: number) => void;
}

export interface HubResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The URL that answered, after redirects. */
  url: string;
  body: http.IncomingMessage;
}

export const USER_AGENT = `unime; node/${process.versions.node}`;
const MAX_REDIRECTS = 5;

function originOf(url: string): string {
  return new URL(url).origin;
}

export function header(headers: http.IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

function sendOnce(r: HubRequest, url: string, method: string): Promise<HubResponse> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : undefined;
    if (!mod) {
      reject(new NetworkError('EPROTO', `unsupported URL scheme in ${url}`));
      return;
    }
    const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...(r.headers ?? {}) };
    if (r.token && r.authOrigin && u.origin === r.authOrigin) headers.authorization = `Bearer ${r.token.value}`;
    const body = r.body;
    if (typeof body === 'string' || Buffer.isBuffer(body)) headers['content-length'] = String(Buffer.byteLength(body));
    else if (body) headers['content-length'] = String(body.length);

    const req = mod.request(u, { method, headers }, (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, url, body: res }));
    req.on('error', (e: NodeJS.ErrnoException) => reject(new NetworkError(e.code ?? 'ECONNRESET', `${method} ${u.origin}${u.pathname}: ${e.message}`)));
    req.setTimeout(r.timeoutMs ?? 60_000, () => {
      req.destroy(Object.assign(new Error(`no data for ${formatMs(r.timeoutMs ?? 60_000)}`), { code: 'ETIMEDOUT' }));
    });
    if (body === undefined) {
      req.end();
    } else if (typeof body === 'string' || Buffer.isBuffer(body)) {
      req.end(body);
      r.onUploadProgress?.(Buffer.byteLength(body));
    } else {
      let sent = 0;
      const counter = new Transform({
        transform(chunk: Buffer, _enc, done) {
          sent += chunk.length;
          r.onUploadProgress?.(sent);
          done(null, chunk);
        },
      });
      pipeline(body.open(), counter, req).catch((e: Error) => req.destroy(e));
    }
  });
}

/** Send a request, following redirects for GET/HEAD. Never throws on an HTTP status. */
export async function send(r: HubRequest): Promise<HubResponse> {
  let url = r.url;
  let method: string = r.method;
  for (let hop = 0; ; hop++) {
    const res = await sendOnce(r, url, method);
    const follow = (r.followRedirects ?? true) && (method === 'GET' || method === 'HEAD');
    const location = header(res.headers, 'location');
    if (!follow || ![301, 302, 303, 307, 308].includes(res.status) || !location) return res;
    res.body.resume();
    if (hop >= MAX_REDIRECTS) throw new NetworkError('EREDIRECT', `too many redirects from ${r.url}`);
    const next = new URL(location, url).toString();
    if (originOf(next) !== originOf(url)) log.debug(`following redirect to ${originOf(next)} (without the token)`);
    url = next;
  }
}

/** Read a (small) body as text; bodies past `maxBytes` are an error. */
export async function readText(res: HubResponse, maxBytes = 64 * 1024 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of res.body as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > maxBytes) {
        res.body.destroy();
        throw new NetworkError('ETOOBIG', `response from ${res.url} is larger than ${maxBytes} bytes`);
      }
      chunks.push(c);
    }
  } catch (e) {
    if (e instanceof NetworkError) throw e;
    const err = e as NodeJS.ErrnoException;
    throw new NetworkError(err.code ?? 'ECONNRESET', `reading ${res.url}: ${err.message}`);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseRetryAfter(v: string | undefined): number | undefined {
  if (!v) return undefined;
  const s = Number(v);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

/** An HttpStatusError for a response we will not use; reads (a little of) its body for the reason. */
export async function statusError(method: string, res: HubResponse): Promise<HttpStatusError> {
  let serverMessage = header(res.headers, 'x-error-message');
  if (!serverMessage && method !== 'HEAD') {
    try {
      const text = await readText(res, 64 * 1024);
      try {
        const j = JSON.parse(text) as { error?: unknown; message?: unknown };
        const m = j.error ?? j.message;
        serverMessage = typeof m === 'string' ? m : text;
      } catch {
        serverMessage = text;
      }
    } catch {
      // The reason is a courtesy; the status says enough.
    }
  } else {
    res.body.resume();
  }
  const msg = serverMessage ? redact(serverMessage.replace(/\s+/g, ' ').trim()).slice(0, 300) : undefined;
  return new HttpStatusError(res.status, method, res.url, header(res.headers, 'x-error-code'), msg || undefined, parseRetryAfter(header(res.headers, 'retry-after')));
}

/** Send and parse a JSON answer; any non-2xx status is an HttpStatusError. */
export async function requestJson<T>(r: HubRequest): Promise<{ value: T; res: HubResponse }> {
  const res = await send(r);
  if (res.status < 200 || res.status >= 300) throw await statusError(r.method, res);
  const text = await readText(res);
  try {
    return { value: (text.trim() === '' ? {} : JSON.parse(text)) as T, res };
  } catch {
    throw new NetworkError('EBADJSON', `${r.method} ${res.url}: the answer was not JSON`);
  }
}

// ---------------------------------------------------------------------------------------------

export interface ErrorContext {
  /** What we were doing, as a verb phrase: "download me/model", "create the repo me/x". */
  action: string;
  endpoint: string;
  repoId?: string;
  repoType?: 'model' | 'dataset';
  revision?: string;
  token?: HubToken | undefined;
}

const LOGIN_FIX = 'set HF_TOKEN or run `huggingface-cli login`';

/** One clear, token-free UnimeError for any failure of a Hub call. UnimeErrors pass through. */
export function toUserError(e: unknown, ctx: ErrorContext): unknown {
  if (e instanceof UnimeError) return e;
  const attempts = attemptsOf(e);
  const after = attempts !== undefined && attempts > 1 ? ` after ${attempts} attempts` : '';
  const page = ctx.repoId ? `${ctx.endpoint}/${ctx.repoType === 'dataset' ? 'datasets/' : ''}${ctx.repoId}` : ctx.endpoint;
  if (e instanceof HttpStatusError) {
    const why = e.serverMessage ? ` (the Hub said: ${e.serverMessage})` : '';
    switch (e.status) {
      case 401:
        // The Hub answers 401 + RepoNotFound for repos it will not admit exist to this caller.
        if (ctx.token && e.errorCode === 'RepoNotFound') {
          return new HubError(`${ctx.repoId ?? 'the repository'} does not exist on ${ctx.endpoint}, or the token (from ${ctx.token.source}) cannot see it`, {
            fix: `check the spelling (owner/name); for a private repo use a token of an account with access (${LOGIN_FIX}); the token was not printed`,
          });
        }
        if (ctx.token) {
          return new HubError(`the Hub rejected the token (from ${ctx.token.source}) when trying to ${ctx.action}`, {
            fix: `${LOGIN_FIX} with a valid token; the token was not printed`,
          });
        }
        return new HubError(`the Hub requires a token to ${ctx.action} (the repository may be private or gated, or may not exist)`, {
          fix: LOGIN_FIX,
        });
      case 403:
        return new HubError(`the Hub refused to let ${ctx.token ? `the token (from ${ctx.token.source})` : 'an anonymous request'} ${ctx.action}${why}`, {
          fix: `for a gated model, accept its conditions at ${page}; to push, use a token with write access (${LOGIN_FIX}); the token was not printed`,
        });
      case 404: {
        if (e.errorCode === 'RevisionNotFound') {
          return new HubError(`revision '${ctx.revision ?? '?'}' does not exist in ${ctx.repoId ?? 'the repository'}`, {
            fix: `name an existing branch, tag or commit (see ${page}/tree)`,
          });
        }
        if (e.errorCode === 'EntryNotFound') {
          return new HubError(`a file was not found while trying to ${ctx.action}${why}`, { fix: `check the file list at ${page}` });
        }
        return new HubError(`${ctx.repoType === 'dataset' ? 'dataset' : 'repository'} ${ctx.repoId ?? ''} was not found on ${ctx.endpoint}`, {
          fix: ctx.token
            ? 'check the spelling (owner/name) and that the token has access to it'
            : `check the spelling (owner/name); if it is private or gated, ${LOGIN_FIX}`,
        });
      }
      default:
        if (isRetryable(e)) {
          return new HubError(`the Hub answered HTTP ${e.status} when trying to ${ctx.action}${after}${why}`, {
            fix: 'the Hub may be busy or down: try again later (nothing half-done was kept)',
          });
        }
        return new HubError(`the Hub refused to ${ctx.action}: HTTP ${e.status}${why}`);
    }
  }
  if (e instanceof NetworkError) {
    return new HubError(`could not ${ctx.action}: ${e.code === 'ETIMEDOUT' ? 'the connection went silent' : 'the connection to the Hub failed'}${after} (${e.message})`, {
      fix: `check the network and HF_ENDPOINT (${ctx.endpoint}); set HF_HUB_OFFLINE=1 to use only what is cached`,
    });
  }
  return e;
}
