/** Shared pieces of the hub tests: a token, fixture repos, temp HF_HOMEs, log capture, token scans. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { setLogSink } from '../../src/runtime/log.js';
import { tempDir } from '../helpers.js';
import type { FakeHub } from './fake-hub.js';

/** Shaped like a real user token so the shape-based redaction is exercised too. */
export const TOKEN = 'hf_TestTokenQwertyAsdfgZxcvb1234567';
export const BAD_TOKEN = 'hf_WrongTokenPoiuyLkjhgMnbvc7654321';

/** Deterministic pseudo-random bytes (a safetensors-like binary blob). */
export function blob(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  b.writeUInt32LE(0, 4); // a NUL early on, as in a real safetensors header
  return b;
}

export const SHARD1 = blob(200_000, 1);
export const SHARD2 = blob(150_000, 2);
export const ONNX = blob(50_000, 3);

export function modelRepoFiles(): Record<string, string | Buffer | { content: Buffer; lfs: boolean }> {
  return {
    '.gitattributes': '*.safetensors filter=lfs diff=lfs merge=lfs -text\n',
    'README.md': '# tiny model\n',
    'config.json': JSON.stringify({ model_type: 'tiny', hidden_size: 8 }),
    'generation_config.json': '{}',
    'model.safetensors.index.json': JSON.stringify({
      metadata: { total_size: SHARD1.length + SHARD2.length },
      weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' },
    }),
    'model-00001-of-00002.safetensors': { content: SHARD1, lfs: true },
    'model-00002-of-00002.safetensors': { content: SHARD2, lfs: true },
    'tokenizer.json': JSON.stringify({ model: { type: 'BPE' } }),
    'tokenizer_config.json': JSON.stringify({ chat_template: '{{ x }}' }),
    'special_tokens_map.json': '{}',
    'processor/preprocessor_config.json': JSON.stringify({ image_size: 32 }),
    'onnx/model.onnx': { content: ONNX, lfs: true },
    'train.py': 'print(1)\n',
  };
}

/** The files a default model pull fetches from modelRepoFiles(). */
export const DEFAULT_PULLED = [
  'config.json',
  'generation_config.json',
  'model-00001-of-00002.safetensors',
  'model-00002-of-00002.safetensors',
  'model.safetensors.index.json',
  'processor/preprocessor_config.json',
  'special_tokens_map.json',
  'tokenizer.json',
  'tokenizer_config.json',
];

export interface HubTestEnv {
  dir: string;
  home: string;
  cache: string;
  env: Record<string, string>;
  cleanup: () => Promise<void>;
}

/** A temp HF_HOME and the environment pointing unime at the fake hub. */
export async function hubTestEnv(hub: FakeHub, extra: Record<string, string> = {}): Promise<HubTestEnv> {
  const { dir, cleanup } = await tempDir('unime-hub-');
  const home = path.join(dir, 'hf-home');
  await fsp.mkdir(home, { recursive: true });
  return {
    dir,
    home,
    cache: path.join(home, 'hub'),
    env: { HF_HOME: home, HF_ENDPOINT: hub.endpoint, HF_TOKEN: TOKEN, HF_HUB_OFFLINE: '', UNIME_HUB_RETRY_BASE_MS: '1', UNIME_HUB_RETRY_MAX_MS: '5', ...extra },
    cleanup,
  };
}

/** Capture log lines while `fn` runs. */
export async function withLogs<T>(fn: () => Promise<T>): Promise<{ value?: T; error?: unknown; lines: string[] }> {
  const lines: string[] = [];
  const restore = setLogSink((l) => lines.push(l));
  try {
    return { value: await fn(), lines };
  } catch (error) {
    return { error, lines };
  } finally {
    restore();
  }
}

export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function rec(d: string) {
    let entries;
    try {
      entries = await fsp.readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await rec(p);
      else out.push(p);
    }
  }
  await rec(dir);
  return out.sort();
}

/** No file under `dir` (other than `except`) and none of `texts` contains `secret`. */
export async function assertSecretNowhere(secret: string, dirs: string[], texts: string[], except: string[] = []): Promise<void> {
  for (const t of texts) assert.ok(!t.includes(secret), `the token leaked into output: ${t.slice(0, 200)}`);
  for (const d of dirs) {
    for (const f of await listFiles(d)) {
      if (except.includes(f)) continue;
      let content: Buffer;
      try {
        content = await fsp.readFile(f);
      } catch {
        continue; // dangling link
      }
      assert.ok(!content.includes(secret), `the token leaked into ${f}`);
    }
  }
}

export function randomName(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString('hex')}`;
}
