import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as os from 'node:os';
import * as path from 'node:path';
import { UnimeError } from '../../src/errors.js';
import { checkRepoPath } from '../../src/hub/cache.js';
import { hfHome, hubCacheDir, hubEndpoint, isOfflineMode, tokenPath } from '../../src/hub/env.js';
import { backoffDelay, resolveRetry } from '../../src/hub/http.js';
import { buildModelCard, modelCardMetadata, parseEvalResults, summarizeRecipe } from '../../src/hub/model-card.js';
import { DEFAULT_MODEL_PATTERNS, keepPath, matchesGlob } from '../../src/hub/patterns.js';
import { createProgress, formatBytes } from '../../src/hub/progress.js';
import { parseRepoId, repoFolderName, resolveUrl } from '../../src/hub/repo.js';
import { readToken, redact, redactError } from '../../src/hub/token.js';
import { setLogLevel } from '../../src/runtime/log.js';
import { EVAL, RECIPE, frontMatter } from './checkpoint-fixture.js';
import { TOKEN, withLogs } from './hub-helpers.js';

test('glob patterns follow fnmatch: * crosses folders, trailing / means a folder', () => {
  assert.ok(matchesGlob('config.json', '*.json'));
  assert.ok(matchesGlob('processor/preprocessor_config.json', '*.json'));
  assert.ok(matchesGlob('onnx/model.onnx', 'onnx/'));
  assert.ok(matchesGlob('model-00001-of-00002.safetensors', 'model-0000?-of-*.safetensors'));
  assert.ok(matchesGlob('a.txt', '[abc].txt') && !matchesGlob('d.txt', '[abc].txt') && matchesGlob('d.txt', '[!abc].txt'));
  assert.ok(!matchesGlob('config.json.bak', '*.json'));
  assert.ok(matchesGlob('a+b(c).json', 'a+b(c).json'));
  const keep = (p: string) => keepPath(p, { include: DEFAULT_MODEL_PATTERNS });
  for (const p of ['model.safetensors', 'tokenizer.model', 'tokenizer.json', 'vocab.txt', 'merges.txt', 'qwen.tiktoken', 'chat_template.jinja', 'preprocessor_config.json', 'spiece.model']) assert.ok(keep(p), p);
  for (const p of ['pytorch_model.bin', 'README.md', 'model.onnx', 'train.py', '.gitattributes']) assert.ok(!keep(p), p);
  assert.ok(!keepPath('a.json', { include: ['*.json'], exclude: ['a*'] }));
});

test('repo ids are validated like the Hub does and map to cache folders and URLs', () => {
  assert.deepEqual(parseRepoId('TIGER-Lab/VLM2Vec-Full'), { id: 'TIGER-Lab/VLM2Vec-Full', type: 'model' });
  assert.deepEqual(parseRepoId('datasets/TIGER-Lab/MMEB-eval'), { id: 'TIGER-Lab/MMEB-eval', type: 'dataset' });
  assert.deepEqual(parseRepoId('gpt2'), { id: 'gpt2', type: 'model' });
  for (const bad of ['a/b/c', 'a--b/c', 'a/b..c', '/abs', 'a/b.git', 'a b/c', '', '-a/b']) assert.throws(() => parseRepoId(bad), UnimeError, bad);
  assert.throws(() => parseRepoId('gpt2', { requireOwner: true }), /names no owner/);
  assert.equal(repoFolderName({ id: 'org/name', type: 'model' }), 'models--org--name');
  assert.equal(repoFolderName({ id: 'org/data', type: 'dataset' }), 'datasets--org--data');
  assert.equal(resolveUrl('https://h', { id: 'o/n', type: 'dataset' }, 'refs/pr/1', 'a b/c#.json'), 'https://h/datasets/o/n/resolve/refs%2Fpr%2F1/a%20b/c%23.json');
});

test('paths from the server cannot escape the snapshot folder', () => {
  for (const bad of ['../x', 'a/../../x', '/etc/passwd', 'a//b', 'a\\b', '.', '']) assert.throws(() => checkRepoPath(bad), /unsafe path/, bad);
  assert.equal(checkRepoPath('processor/preprocessor_config.json'), 'processor/preprocessor_config.json');
});

test('environment: HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, offline flags, token sources', () => {
  assert.equal(hfHome({ HOME: '/x' }), path.join(os.homedir(), '.cache', 'huggingface'));
  assert.equal(hfHome({ XDG_CACHE_HOME: '/xdg' }), '/xdg/huggingface');
  assert.equal(hubCacheDir({ HF_HOME: '/h' }), '/h/hub');
  assert.equal(hubCacheDir({ HF_HOME: '/h', HF_HUB_CACHE: '/c' }), '/c');
  assert.equal(hubCacheDir({ HUGGINGFACE_HUB_CACHE: '/legacy' }), '/legacy');
  assert.equal(tokenPath({ HF_HOME: '/h' }), '/h/token');
  assert.equal(hubEndpoint({}), 'https://huggingface.co');
  assert.equal(hubEndpoint({ HF_ENDPOINT: 'http://127.0.0.1:9/' }), 'http://127.0.0.1:9');
  assert.ok(isOfflineMode({ HF_HUB_OFFLINE: '1' }) && isOfflineMode({ TRANSFORMERS_OFFLINE: 'true' }) && !isOfflineMode({ HF_HUB_OFFLINE: '0' }));
  assert.deepEqual(readToken({ HF_TOKEN: ` ${TOKEN} `, HF_HOME: '/nonexistent' }), { value: TOKEN, source: 'HF_TOKEN' });
  assert.equal(readToken({ HUGGING_FACE_HUB_TOKEN: 'hf_legacyTokenValue1234567890abc', HF_HOME: '/nonexistent' })!.source, 'HUGGING_FACE_HUB_TOKEN');
  assert.equal(readToken({ HF_HOME: '/nonexistent' }), undefined);
});

test('redaction removes registered tokens and token-shaped strings, in messages and errors', () => {
  readToken({ HF_TOKEN: 'secret-not-hf-shaped-123', HF_HOME: '/nonexistent' });
  assert.equal(redact('Bearer secret-not-hf-shaped-123 and hf_abcdefghijklmnopqrstuvwxyz12'), 'Bearer <redacted> and <redacted>');
  const e = new UnimeError('server said secret-not-hf-shaped-123', { fix: 'not hf_abcdefghijklmnopqrstuvwxyz12' });
  const clean = redactError(e) as UnimeError;
  assert.ok(clean instanceof UnimeError);
  assert.ok(!clean.message.includes('secret-not') && !clean.stack!.includes('secret-not'));
  assert.match(clean.message, /<redacted>/);
  const plain = redactError(new Error('x secret-not-hf-shaped-123')) as Error;
  assert.equal(plain.message, 'x <redacted>');
  const untouched = new UnimeError('fine');
  assert.equal(redactError(untouched), untouched);
});

test('backoff grows exponentially with jitter, is capped, and honors Retry-After within the cap', () => {
  const r = resolveRetry({ attempts: 5, baseDelayMs: 100, maxDelayMs: 1000 }, {});
  for (let i = 0; i < 50; i++) {
    const d1 = backoffDelay(1, r);
    const d3 = backoffDelay(3, r);
    const d9 = backoffDelay(9, r);
    assert.ok(d1 >= 50 && d1 <= 100, String(d1));
    assert.ok(d3 >= 200 && d3 <= 400, String(d3));
    assert.ok(d9 >= 500 && d9 <= 1000, String(d9));
  }
  assert.equal(backoffDelay(1, r, 5000), 1000);
  assert.deepEqual(resolveRetry(undefined, {}), { attempts: 5, baseDelayMs: 1000, maxDelayMs: 30000 });
  assert.deepEqual(resolveRetry(undefined, { UNIME_HUB_RETRY_ATTEMPTS: '2', UNIME_HUB_RETRY_BASE_MS: '1', UNIME_HUB_RETRY_MAX_MS: '3' }), { attempts: 2, baseDelayMs: 1, maxDelayMs: 3 });
});

test('model card: front matter fields, eval table and recipe summary', () => {
  const recipe = summarizeRecipe(RECIPE, 'recipe.yaml')!;
  assert.deepEqual(recipe.models, ['microsoft/Phi-3.5-vision-instruct']);
  assert.deepEqual(recipe.datasets, ['TIGER-Lab/MMEB-train', 'TIGER-Lab/MMEB-eval']);
  assert.match(recipe.stages[0]!.details, /lr 0\.0001, 1000 steps, batch 1024, LoRA r16\/a64, loss hardneg, temperature 0\.02, 8 hard negatives/);
  const ev = parseEvalResults(EVAL)!;
  assert.equal(parseEvalResults({ nothing: 1 }), undefined);
  assert.equal(parseEvalResults({ metrics: { image: { x: { 'hit@1': 'high' } } } }), undefined);
  const card = buildModelCard({ repoId: 'me/m', adapter: false, baseModel: 'org/base', license: 'apache-2.0', recipe, eval: ev, evalFile: 'eval_results.json' });
  const meta = frontMatter(card);
  assert.equal(meta.license, 'apache-2.0');
  assert.equal(meta.base_model, 'org/base');
  assert.equal(meta.base_model_relation, 'finetune');
  assert.ok(!(meta.tags as string[]).includes('peft'));
  assert.match(card, /unime embed --model me\/m --text/);
  assert.match(card, /\| ImageNet-1K \| 60\.0 \| 90\.0 \|/);
  assert.match(card, /\| \*\*mean\*\* \| \*\*65\.0\*\* \| \*\*90\.0\*\* \|/);
  assert.match(card, /\| hardneg \| unime-hardneg \|/);
  const bare = modelCardMetadata({ repoId: 'me/m', adapter: true });
  assert.deepEqual(Object.keys(bare), ['library_name', 'pipeline_tag', 'tags']);
  // Local paths never become base_model or datasets.
  const local = summarizeRecipe('name: x\nstages:\n  - name: a\n    kind: unime-distill\n    model: ./models/mine\n    data:\n      path: data/x.jsonl\n', 'r.yaml')!;
  assert.deepEqual([local.models, local.datasets], [[], []]);
  assert.equal(summarizeRecipe(': : not yaml [', 'r.yaml'), undefined);
});

test('progress: plain log lines off a TTY, a redrawn bar on one, nothing when quiet', async () => {
  assert.equal(formatBytes(999), '999 B');
  assert.equal(formatBytes(1_500_000), '1.50 MB');
  const { lines } = await withLogs(async () => {
    const p = createProgress({ label: 'pull x', total: 100, stream: { isTTY: false, write: () => true }, logIntervalMs: 0 });
    p.add(50);
    p.add(50);
    p.done();
  });
  assert.ok(lines.some((l) => /^pull x: 50% /.test(l)) && lines.some((l) => /^pull x: 100% /.test(l)));
  const out: string[] = [];
  const bar = createProgress({ label: 'push y', total: 1000, stream: { isTTY: true, columns: 80, write: (s: string) => out.push(s) } });
  bar.add(1000);
  bar.done();
  assert.match(out.join(''), /\rpush y \[#+\] 100% 1.00 kB\/1.00 kB/);
  assert.ok(out.join('').endsWith('\n'));
  setLogLevel('warn');
  try {
    const quiet: string[] = [];
    const q = createProgress({ label: 'q', total: 1, stream: { isTTY: true, write: (s: string) => quiet.push(s) } });
    q.add(1);
    q.done();
    assert.deepEqual(quiet, []);
  } finally {
    setLogLevel('info');
  }
});
