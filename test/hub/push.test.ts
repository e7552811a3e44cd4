import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { HubError } from '../../src/hub/http.js';
import { planPush, push } from '../../src/hub/upload.js';
import { FakeHub, type FakeHubOptions, sha256 } from './fake-hub.js';
import { ADAPTER, EXPECTED_UPLOAD, frontMatter, makeCheckpoint } from './checkpoint-fixture.js';
import { BAD_TOKEN, TOKEN, assertSecretNowhere, hubTestEnv, withLogs } from './hub-helpers.js';

const FAST = { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 };
async function setup(opts: FakeHubOptions = {}) {
  const hub = await FakeHub.start({ tokens: [TOKEN], ...opts });
  const t = await hubTestEnv(hub);
  const ckpt = path.join(t.dir, 'runs', 'stage2', 'hardneg');
  await makeCheckpoint(ckpt);
  const base = { env: t.env, retry: FAST, progress: false } as const;
  return {
    hub,
    t,
    ckpt,
    base,
    async done() {
      await hub.stop();
      await t.cleanup();
    },
  };
}

test('push creates a private repo and uploads the adapter, tokenizer, recipe, logs, eval and model card in one commit', async () => {
  const s = await setup();
  try {
    const { value: res, lines, error } = await withLogs(() => push(s.ckpt, 'me/unime-phi35v', { ...s.base, private: true }));
    assert.equal(error, undefined, String(error));
    const repo = s.hub.repo('me/unime-phi35v');
    assert.ok(repo, 'repo created');
    assert.equal(repo.private, true);
    assert.ok(res!.created);
    const files = s.hub.files('me/unime-phi35v');
    assert.deepEqual([...files.keys()].sort(), ['.gitattributes', ...EXPECTED_UPLOAD].sort());
    for (const p of EXPECTED_UPLOAD.filter((p) => p !== 'README.md')) {
      assert.deepEqual(files.get(p)!.content, await fsp.readFile(path.join(s.ckpt, p)), p);
    }
    assert.equal(files.get('adapter_model.safetensors')!.lfs, true);
    assert.equal(files.get('config.json'), undefined);
    assert.equal(res!.commitOid, s.hub.head('me/unime-phi35v'));
    // Exactly two commits: the repo's initial one and ours.
    assert.equal(repo.commits.size, 2);
    assert.deepEqual(s.hub.cdnAuthLeaks, []);

    const meta = frontMatter(files.get('README.md')!.content.toString());
    assert.equal(meta.library_name, 'unime');
    assert.equal(meta.base_model, 'microsoft/Phi-3.5-vision-instruct');
    assert.equal(meta.pipeline_tag, 'feature-extraction');
    assert.ok((meta.tags as string[]).includes('unime') && (meta.tags as string[]).includes('multimodal-embedding'));
    assert.deepEqual((meta.datasets as string[]).sort(), ['TIGER-Lab/MMEB-eval', 'TIGER-Lab/MMEB-train']);
    const mi = meta['model-index'] as { name: string; results: { dataset: { config: string }; metrics: { type: string; value: number }[] }[] }[];
    assert.equal(mi[0]!.name, 'unime-phi35v');
    const inet = mi[0]!.results.find((r) => r.dataset.config === 'ImageNet-1K')!;
    assert.deepEqual(inet.metrics.map((m) => [m.type, m.value]), [['hit@1', 0.6], ['hit@5', 0.9]]);
    await assertSecretNowhere(TOKEN, [s.t.home, s.ckpt], [...lines, JSON.stringify(res)]);
  } finally {
    await s.done();
  }
});

test('planPush leaves out optimizer state, temp files, intermediate checkpoints and unknown files', async () => {
  const s = await setup();
  try {
    const plan = await planPush(s.ckpt, 'me/x');
    assert.equal(plan.kind, 'adapter');
    assert.deepEqual(plan.files.map((f) => f.path), EXPECTED_UPLOAD);
    const why = Object.fromEntries(plan.skipped.map((x) => [x.path, x.reason]));
    assert.match(why['optimizer.safetensors']!, /optimizer state/);
    assert.match(why['.stage.json.tmp-123']!, /hidden/);
    assert.match(why['adapter_model.safetensors.tmp-1-abcd']!, /temporary/);
    assert.match(why['checkpoint-10/']!, /intermediate/);
    assert.match(why['README.md']!, /generated model card/);
    assert.match(why['notes.bin']!, /--include/);
    const withOpt = await planPush(s.ckpt, 'me/x', { includeOptimizer: true, include: ['*.bin'], exclude: ['train.log'] });
    const names = withOpt.files.map((f) => f.path);
    assert.ok(names.includes('optimizer.safetensors') && names.includes('notes.bin') && !names.includes('train.log'));
    // A merged model: config.json + weights, the base model taken from config.json.
    const merged = path.join(s.t.dir, 'merged');
    await fsp.mkdir(merged);
    await fsp.writeFile(path.join(merged, 'config.json'), JSON.stringify({ _name_or_path: 'org/base-model' }));
    await fsp.writeFile(path.join(merged, 'model.safetensors'), ADAPTER);
    await fsp.writeFile(path.join(merged, 'optimizer.pt'), 'x');
    const m = await planPush(merged, 'me/merged');
    assert.equal(m.kind, 'merged');
    assert.deepEqual(m.files.map((f) => f.path), ['README.md', 'config.json', 'model.safetensors']);
    const meta = frontMatter(m.card);
    assert.equal(meta.base_model, 'org/base-model');
    assert.equal(meta.base_model_relation, 'finetune');
    await assert.rejects(planPush(path.join(s.t.dir, 'nope'), 'me/x'), /does not exist/);
    await assert.rejects(planPush(s.t.dir, 'me/x'), /holds no model to push/);
    await assert.rejects(planPush(s.ckpt, 'justaname'), /names no owner/);
  } finally {
    await s.done();
  }
});

test('a failing commit leaves the repo unchanged; the next push uploads nothing twice and succeeds', async () => {
  const s = await setup();
  try {
    s.hub.addRepo('me/existing', { 'old.txt': 'keep me' });
    const before = s.hub.head('me/existing');
    const beforeFiles = [...s.hub.files('me/existing').keys()];
    s.hub.fault({ path: /\/commit\//, kind: 'status', status: 500, times: 3 });
    const failed = await withLogs(() => push(s.ckpt, 'me/existing', s.base));
    assert.ok(failed.error instanceof HubError);
    assert.match(failed.error.message, /HTTP 500 .*after 3 attempts|HTTP 500/);
    assert.equal(s.hub.head('me/existing'), before);
    assert.deepEqual([...s.hub.files('me/existing').keys()], beforeFiles);
    assert.equal(s.hub.requests.filter((r) => r.url.includes('/commit/')).length, 3);

    s.hub.clearLog();
    const res = await push(s.ckpt, 'me/existing', s.base);
    assert.equal(res.created, false);
    assert.equal(res.uploadedBytes, 0, 'the adapter was already uploaded');
    assert.equal(s.hub.requests.filter((r) => r.server === 'cdn').length, 0);
    assert.deepEqual([...s.hub.files('me/existing').keys()].sort(), ['old.txt', ...EXPECTED_UPLOAD].sort());
  } finally {
    await s.done();
  }
});

test('a commit that fails once (500 or a dropped connection) is retried within the push', async () => {
  const s = await setup();
  try {
    s.hub.fault({ path: /\/commit\//, kind: 'status', status: 503 });
    s.hub.fault({ path: /\/commit\//, kind: 'drop' });
    const res = await push(s.ckpt, 'me/retry', s.base);
    assert.equal(s.hub.requests.filter((r) => r.url.includes('/commit/')).length, 3);
    assert.equal(s.hub.repo('me/retry')!.commits.size, 2);
    assert.equal(res.commitOid, s.hub.head('me/retry'));
  } finally {
    await s.done();
  }
});

test('when the commit lands but its answer is lost, the push notices instead of committing twice', async () => {
  const s = await setup();
  try {
    s.hub.fault({ path: /\/commit\//, kind: 'drop-after' });
    const { value: res, lines, error } = await withLogs(() => push(s.ckpt, 'me/lost-answer', s.base));
    assert.equal(error, undefined, String(error));
    assert.equal(s.hub.requests.filter((r) => r.url.includes('/commit/')).length, 1);
    assert.equal(s.hub.repo('me/lost-answer')!.commits.size, 2);
    assert.equal(res!.commitOid, s.hub.head('me/lost-answer'));
    assert.ok(lines.some((l) => /although its answer was lost/.test(l)));
  } finally {
    await s.done();
  }
});

test('an LFS upload that keeps failing stops the push before any commit', async () => {
  const s = await setup();
  try {
    s.hub.fault({ server: 'cdn', method: 'PUT', kind: 'drop', times: 5 });
    const { error } = await withLogs(() => push(s.ckpt, 'me/lfs-fail', s.base));
    assert.ok(error instanceof HubError);
    assert.match(error.message, /connection to the Hub failed after 3 attempts/);
    const repo = s.hub.repo('me/lfs-fail')!;
    assert.equal(repo.commits.size, 1, 'only the initial commit');
    assert.deepEqual([...s.hub.files('me/lfs-fail').keys()], ['.gitattributes']);
    assert.equal(s.hub.requests.filter((r) => r.url.includes('/commit/')).length, 0);
  } finally {
    await s.done();
  }
});

test('large LFS files go up in parts (multipart transfer) and are reassembled exactly', async () => {
  const s = await setup({ multipartThreshold: 1000, multipartChunk: 1024 });
  try {
    const oid = sha256(ADAPTER);
    s.hub.fault({ server: 'cdn', path: new RegExp(`${oid}/part/2$`), kind: 'status', status: 500 });
    const res = await push(s.ckpt, 'me/multipart', s.base);
    const parts = s.hub.requests.filter((r) => r.server === 'cdn' && r.url.includes(`${oid}/part/`));
    assert.deepEqual(parts.map((p) => p.url.split('/').pop()), ['1', '2', '2', '3']);
    const files = s.hub.files('me/multipart');
    assert.deepEqual(files.get('adapter_model.safetensors')!.content, ADAPTER);
    assert.equal(res.uploadedBytes, res.files.filter((f) => f.lfs).reduce((n, f) => n + f.size, 0));
    assert.ok(res.uploadedBytes >= ADAPTER.length);
  } finally {
    await s.done();
  }
});

test('push to a branch creates it and leaves main alone', async () => {
  const s = await setup();
  try {
    s.hub.addRepo('me/branchy', { 'a.txt': 'a' });
    const main = s.hub.head('me/branchy');
    const res = await push(s.ckpt, 'me/branchy', { ...s.base, revision: 'experiment' });
    assert.equal(res.revision, 'experiment');
    assert.equal(s.hub.head('me/branchy'), main);
    assert.ok(s.hub.files('me/branchy', 'experiment').has('adapter_model.safetensors'));
  } finally {
    await s.done();
  }
});

test('a rejected token gives a clear error without the token; no token at all fails before any request', async () => {
  const s = await setup({ echoAuthOn401: true });
  try {
    const bad = await withLogs(() => push(s.ckpt, 'me/denied', { ...s.base, env: { ...s.t.env, HF_TOKEN: BAD_TOKEN } }));
    assert.ok(bad.error instanceof HubError);
    assert.match(bad.error.message, /the Hub rejected the token \(from HF_TOKEN\) when trying to push to me\/denied/);
    assert.match(bad.error.message, /the token was not printed/);
    assert.equal(s.hub.requests.length, 1, 'a 401 is not retried');
    await assertSecretNowhere(BAD_TOKEN, [s.t.home], [bad.error.message, bad.error.stack ?? '', ...bad.lines]);

    s.hub.clearLog();
    const none = await withLogs(() => push(s.ckpt, 'me/denied', { ...s.base, env: { ...s.t.env, HF_TOKEN: '' } }));
    assert.match((none.error as Error).message, /needs a Hugging Face token with write access/);
    assert.deepEqual(s.hub.requests, []);

    // The token file is the fallback to HF_TOKEN.
    await fsp.writeFile(path.join(s.t.home, 'token'), `${TOKEN}\n`);
    const viaFile = await push(s.ckpt, 'me/from-file', { ...s.base, env: { ...s.t.env, HF_TOKEN: '' } });
    assert.ok(viaFile.commitOid);
  } finally {
    await s.done();
  }
});

test('dry run plans without a token and sends nothing', async () => {
  const s = await setup();
  try {
    const res = await push(s.ckpt, 'me/dry', { ...s.base, env: { ...s.t.env, HF_TOKEN: '' }, dryRun: true });
    assert.deepEqual(res.files.map((f) => f.path), EXPECTED_UPLOAD);
    assert.deepEqual(s.hub.requests, []);
    assert.equal(frontMatter(res.plan.card).library_name, 'unime');
  } finally {
    await s.done();
  }
});
