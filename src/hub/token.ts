/**
 * The Hub token: where it comes from, and the guarantee that it never leaves this process except
 * in the Authorization header of a request to the Hub itself.
 *
 * Every token we read is registered as a secret; `redact` replaces registered secrets (and
 * anything shaped like a Hub token, `hf_...`) in text before it reaches a message, a log line or
 * a file. Errors thrown out of src/hub are passed through `redactError` by the CLI commands.
 */
import { readFileSync } from 'node:fs';
import { isUnimeError, UnimeError } from '../errors.js';
import { type Env, tokenPath } from './env.js';

export interface HubToken {
  value: string;
  /** Where it came from, for messages ("HF_TOKEN", "the token file ~/.cache/huggingface/token"). */
  source: string;
}

const secrets = new Set<string>();

/** Remember a secret so that `redact` removes it from any text. Very short strings are ignored. */
export function registerSecret(secret: string): void {
  if (secret.length >= 4) secrets.add(secret);
}

const REDACTED = '<redacted>';
/** User access tokens look like hf_ followed by 30+ letters; catch them even if never registered. */
const TOKEN_SHAPE = /\bhf_[A-Za-z0-9]{20,}\b/g;

/** `text` with every registered secret and every token-shaped string replaced. */
export function redact(text: string): string {
  let out = text;
  for (const s of secrets) if (out.includes(s)) out = out.split(s).join(REDACTED);
  return out.replace(TOKEN_SHAPE, REDACTED);
}

function containsSecret(text: string | undefined): boolean {
  if (text === undefined) return false;
  return redact(text) !== text;
}

/**
 * An error safe to print: the same error when it holds no secret, otherwise a copy whose message,
 * fields and stack are redacted (UnimeErrors stay UnimeErrors of the same class).
 */
export function redactError(e: unknown): unknown {
  if (isUnimeError(e)) {
    const dirty = [e.message, e.problem, e.fix, e.file, e.field, e.stack].some(containsSecret);
    if (!dirty) return e;
    const Ctor = e.constructor as new (problem: string, details: ConstructorParameters<typeof UnimeError>[1]) => UnimeError;
    const clean = new Ctor(redact(e.problem), {
      file: e.file === undefined ? undefined : redact(e.file),
      field: e.field === undefined ? undefined : redact(e.field),
      line: e.line,
      column: e.column,
      fix: e.fix === undefined ? undefined : redact(e.fix),
    });
    clean.stack = redact(e.stack ?? '');
    return clean;
  }
  if (e instanceof Error) {
    if (!containsSecret(e.message) && !containsSecret(e.stack)) return e;
    const clean = new Error(redact(e.message));
    clean.name = e.name;
    clean.stack = redact(e.stack ?? '');
    return clean;
  }
  return typeof e === 'string' ? redact(e) : e;
}

/**
 * The token, from HF_TOKEN, then HUGGING_FACE_HUB_TOKEN (the older name), then the token file
 * (`$HF_TOKEN_PATH`, default `$HF_HOME/token`). Undefined when none is set.
 */
export function readToken(env: Env = process.env): HubToken | undefined {
  for (const name of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN'] as const) {
    const v = env[name]?.trim();
    if (v) {
      registerSecret(v);
      return { value: v, source: name };
    }
  }
  const file = tokenPath(env);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const v = text.trim();
  if (!v) return undefined;
  registerSecret(v);
  return { value: v, source: `the token file ${file}` };
}

/** Use an explicitly given token (an API option), registering it as a secret. */
export function explicitToken(value: string | undefined, source = 'the token option'): HubToken | undefined {
  const v = value?.trim();
  if (!v) return undefined;
  registerSecret(v);
  return { value: v, source };
}
