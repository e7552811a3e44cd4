import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { pull, resolveModelPath } from '../../src/hub/download.js';
import { HubError } from '../../src/hub/http.js';
import { FakeHub, type FakeHubOptions, gitOid, sha256 } from './fake-hub.js';
import { BAD_TOKEN, DEFAULT_PULLED, SHARD1, SHARD2, TOKEN, assertSecretNowhere, blob, hubTestEnv, listFiles, modelRepoFiles, withLogs } from './hub-helpers.js';

const REPO = 'acme/tiny-mllm';
const FAST = { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 };

async function setup(opts: FakeHubOptions = {}) {
  const hub = await FakeHub.start({ tokens: [TOKEN], treePageSize: 4, ...opts });
  const main = hub.addRepo(REPO, modelRepoFiles());
  const t = await hubTestEnv(hub);
  const base = { env: t.env, retry: FAST, progress: false } as const;
  return {
    hub,
    t,
    main,
    base,
    async done() {
      await hub.stop();
      await t.cleanup();
    },
  };
}

const fileGets = (hub: FakeHub) => hub.requests.filter((r) => r.url.includes('/resolve/') || r.server === 'cdn');

test('pull fetches weights, configs, tokenizer and processor files into the huggingface_hub cache layout', async () => {
  const s = await setup();
  try {
    const { value: res, lines, error } = await withLogs(() => pull(REPO, s.base));
    assert.equal(error, undefined);
    assert.ok(res);
    assert.equal(res.commit, s.main);
    assert.deepEqual(res.files.map((f) => f.path), DEFAULT_PULLED);
    assert.ok(res.files.every((f) => f.status === 'downloaded'));

    const repoDir = path.join(s.t.cache, 'models--acme--tiny-mllm');
    assert.equal(res.snapshotDir, path.join(repoDir, 'snapshots', s.main));
    assert.equal(await fsp.readFile(path.join(repoDir, 'refs', 'main'), 'utf8'), s.main);
    // Pointers are relative symlinks into blobs/, named by sha256 (LFS) or the git blob id.
    const stored = s.hub.files(REPO);
    for (const p of DEFAULT_PULLED) {
      const pointer = path.join(res.snapshotDir, ...p.split('/'));
      const st = await fsp.lstat(pointer);
      assert.ok(st.isSymbolicLink(), `${p} is a symlink`);
      const f = stored.get(p)!;
      const key = f.lfs ? f.sha256 : f.oid;
      const depth = p.split('/').length + 1;
      assert.equal(await fsp.readlink(pointer), path.join(...Array(depth).fill('..'), 'blobs', key));
      assert.deepEqual(await fsp.readFile(pointer), f.content);
    }
    assert.equal(stored.get('model-00001-of-00002.safetensors')!.sha256, sha256(SHARD1));
    assert.ok(existsSync(path.join(repoDir, 'blobs', sha256(SHARD2))));
    assert.ok(existsSync(path.join(repoDir, 'blobs', gitOid(Buffer.from(JSON.stringify({ model_type: 'tiny', hidden_size: 8 }))))));
    const blobs = await fsp.readdir(path.join(repoDir, 'blobs'));
    // generation_config.json and special_tokens_map.json are both "{}": one blob, two pointers.
    assert.equal(blobs.length, DEFAULT_PULLED.length - 1);
    assert.equal(await fsp.readlink(path.join(res.snapshotDir, 'generation_config.json')), await fsp.readlink(path.join(res.snapshotDir, 'special_tokens_map.json')));
    assert.ok(!blobs.some((b) => b.endsWith('.incomplete')));
    // Not matched by the default patterns.
    assert.ok(!existsSync(path.join(res.snapshotDir, 'README.md')));
    assert.ok(!existsSync(path.join(res.snapshotDir, 'onnx')));
    // huggingface_hub's tree cache, so offline mode knows the whole listing.
    const tree = JSON.parse(await fsp.readFile(path.join(repoDir, 'trees', `${s.main}.json`), 'utf8')) as { format_version: number; files: Record<string, { size: number; blob_id: string; lfs_sha256?: string }> };
    assert.equal(tree.format_version, 1);
    assert.equal(Object.keys(tree.files).length, Object.keys(modelRepoFiles()).length);
    assert.equal(tree.files['model-00001-of-00002.safetensors']!.lfs_sha256, sha256(SHARD1));
    // The tree listing was paginated (page size 4), and the CDN never saw the token.
    assert.ok(s.hub.requests.filter((r) => r.url.includes('/tree/')).length > 1);
    assert.deepEqual(s.hub.cdnAuthLeaks, []);
    assert.ok(s.hub.requests.filter((r) => r.server === 'hub' && r.url.includes('/resolve/')).every((r) => r.hasAuth));
    await assertSecretNowhere(TOKEN, [s.t.home], lines);
  } finally {
    await s.done();
  }
});

test('a second pull is served from the cache without downloading any file', async () => {
  const s = await setup();
  try {
    await pull(REPO, s.base);
    s.hub.clearLog();
    const res = await pull(REPO, s.base);
    assert.ok(res.files.every((f) => f.status === 'cached'));
    assert.equal(res.downloadedBytes, 0);
    assert.deepEqual(fileGets(s.hub), []);
    // The branch is re-resolved (it may have moved), the listing comes from trees/<sha>.json.
    assert.deepEqual(s.hub.requests.map((r) => r.url.split('?')[0]), [`/api/models/${REPO}/revision/main`]);
  } finally {
    await s.done();
  }
});

test('revisions pin by branch, tag and commit sha', async () => {
  const s = await setup();
  try {
    const dev = s.hub.addCommit(REPO, { 'config.json': JSON.stringify({ model_type: 'tiny', hidden_size: 16 }) }, { branch: 'dev' });
    s.hub.tag(REPO, 'v1.0', s.main);
    const byBranch = await pull(REPO, { ...s.base, revision: 'dev' });
    assert.equal(byBranch.commit, dev);
    assert.match(await fsp.readFile(path.join(byBranch.snapshotDir, 'config.json'), 'utf8'), /16/);
    const repoDir = path.join(s.t.cache, 'models--acme--tiny-mllm');
    assert.equal(await fsp.readFile(path.join(repoDir, 'refs', 'dev'), 'utf8'), dev);
    // Unchanged files of the two commits share their blobs.
    const byTag = await pull(REPO, { ...s.base, revision: 'v1.0' });
    assert.equal(byTag.commit, s.main);
    assert.match(await fsp.readFile(path.join(byTag.snapshotDir, 'config.json'), 'utf8'), /"hidden_size":8/);
    assert.equal(byTag.files.find((f) => f.path === 'model-00001-of-00002.safetensors')!.status, 'cached');
    assert.equal(await fsp.readFile(path.join(repoDir, 'refs', 'v1.0'), 'utf8'), s.main);
    // A full sha needs no ref, and with its listing cached no request at all.
    s.hub.clearLog();
    const bySha = await pull(REPO, { ...s.base, revision: s.main });
    assert.equal(bySha.snapshotDir, byTag.snapshotDir);
    assert.deepEqual(s.hub.requests, []);
    assert.ok(!existsSync(path.join(repoDir, 'refs', s.main)));
    const bad = await withLogs(() => pull(REPO, { ...s.base, revision: 'nope' }));
    assert.ok(bad.error instanceof HubError);
    assert.match((bad.error as Error).message, /revision 'nope' does not exist/);
  } finally {
    await s.done();
  }
});

test('--include / --exclude patterns choose the files; a literal include that is absent is an error', async () => {
  const s = await setup();
  try {
    const res = await pull(REPO, { ...s.base, include: ['*.json'], exclude: ['processor/*', '*.index.json'] });
    assert.deepEqual(res.files.map((f) => f.path), ['config.json', 'generation_config.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
    const onnx = await pull(REPO, { ...s.base, include: ['onnx/'] });
    assert.deepEqual(onnx.files.map((f) => f.path), ['onnx/model.onnx']);
    const missing = await withLogs(() => pull(REPO, { ...s.base, include: ['config.json', 'pytorch_model.bin'] }));
    assert.match((missing.error as Error).message, /has no file 'pytorch_model\.bin'/);
    const none = await withLogs(() => pull(REPO, { ...s.base, include: ['*.gguf'] }));
    assert.match((none.error as Error).message, /no file of acme\/tiny-mllm@main matches \*\.gguf/);
  } finally {
    await s.done();
  }
});

test('a download dropped midway resumes from the .incomplete file with a Range request, in a later run', async () => {
  const s = await setup();
  try {
    const key = sha256(SHARD1);
    s.hub.fault({ server: 'cdn', path: new RegExp(key), kind: 'drop-mid-body', afterBytes: 70_000 });
    const first = await withLogs(() => pull(REPO, { ...s.base, retry: { attempts: 1 }, concurrency: 1 }));
    assert.ok(first.error instanceof HubError, String(first.error));
    assert.match((first.error as Error).message, /connection/);
    const repoDir = path.join(s.t.cache, 'models--acme--tiny-mllm');
    const inc = path.join(repoDir, 'blobs', `${key}.incomplete`);
    const partial = (await fsp.stat(inc)).size;
    assert.ok(partial > 0 && partial < SHARD1.length, `partial size ${partial}`);
    assert.ok(!existsSync(path.join(repoDir, 'blobs', key)), 'no blob installed');
    assert.ok(!existsSync(path.join(repoDir, 'snapshots', s.main, 'model-00001-of-00002.safetensors')), 'no pointer');

    s.hub.clearLog();
    const res = await pull(REPO, s.base);
    const gets = s.hub.requests.filter((r) => r.server === 'cdn' && r.url.includes(key));
    assert.equal(gets.length, 1);
    assert.equal(gets[0]!.range, `bytes=${partial}-`);
    assert.equal(gets[0]!.status, 206);
    assert.deepEqual(await fsp.readFile(path.join(repoDir, 'blobs', key)), SHARD1);
    assert.deepEqual(await fsp.readFile(path.join(res.snapshotDir, 'model-00001-of-00002.safetensors')), SHARD1);
    assert.ok(!existsSync(inc));
    assert.equal(res.files.find((f) => f.path === 'model-00001-of-00002.safetensors')!.status, 'downloaded');
  } finally {
    await s.done();
  }
});

test('within one run a dropped or stalled connection is retried and resumed', async () => {
  const s = await setup();
  try {
    const key = sha256(SHARD2);
    s.hub.fault({ server: 'cdn', path: new RegExp(key), kind: 'drop-mid-body', afterBytes: 40_000 });
    s.hub.fault({ server: 'cdn', path: new RegExp(key), kind: 'stall', afterBytes: 20_000 });
    const { value: res, lines, error } = await withLogs(() => pull(REPO, { ...s.base, timeoutMs: 300 }));
    assert.equal(error, undefined, String(error));
    const gets = s.hub.requests.filter((r) => r.server === 'cdn' && r.url.includes(key));
    assert.deepEqual(gets.map((g) => g.range), [undefined, 'bytes=40000-', 'bytes=60000-']);
    assert.deepEqual(await fsp.readFile(path.join(res!.snapshotDir, 'model-00002-of-00002.safetensors')), SHARD2);
    assert.ok(lines.some((l) => /resuming at/.test(l)));
  } finally {
    await s.done();
  }
});

test('a corrupt partial download is discarded and fetched again, never installed', async () => {
  const s = await setup();
  try {
    const key = sha256(SHARD1);
    const repoDir = path.join(s.t.cache, 'models--acme--tiny-mllm');
    await fsp.mkdir(path.join(repoDir, 'blobs'), { recursive: true });
    await fsp.writeFile(path.join(repoDir, 'blobs', `${key}.incomplete`), blob(100_000, 99)); // wrong bytes
    const { value: res, lines, error } = await withLogs(() => pull(REPO, s.base));
    assert.equal(error, undefined, String(error));
    const gets = s.hub.requests.filter((r) => r.server === 'cdn' && r.url.includes(key));
    assert.deepEqual(gets.map((g) => g.range), ['bytes=100000-', undefined]);
    assert.ok(lines.some((l) => /discarded it, downloading it again/.test(l)));
    assert.deepEqual(await fsp.readFile(path.join(res!.snapshotDir, 'model-00001-of-00002.safetensors')), SHARD1);
  } finally {
    await s.done();
  }
});

test('a file that arrives corrupted fails the pull with a clear error and leaves nothing behind', async () => {
  const s = await setup();
  try {
    const key = sha256(SHARD1);
    s.hub.fault({ server: 'cdn', path: new RegExp(key), kind: 'corrupt' });
    const { error } = await withLogs(() => pull(REPO, { ...s.base, concurrency: 1 }));
    assert.ok(error instanceof HubError);
    assert.match(error.message, /model-00001-of-00002\.safetensors .* has sha256 [0-9a-f]{64}, expected [0-9a-f]{64}; it was discarded/);
    const repoDir = path.join(s.t.cache, 'models--acme--tiny-mllm');
    const blobs = await fsp.readdir(path.join(repoDir, 'blobs'));
    assert.ok(!blobs.includes(key) && !blobs.includes(`${key}.incomplete`));
    // The next pull repairs it.
    const res = await pull(REPO, s.base);
    assert.deepEqual(await fsp.readFile(path.join(res.snapshotDir, 'model-00001-of-00002.safetensors')), SHARD1);
  } finally {
    await s.done();
  }
});

test('500 and 429 answers are retried with backoff; 404 is not', async () => {
  const s = await setup();
  try {
    s.hub.fault({ path: /\/revision\//, kind: 'status', status: 500, times: 2 });
    s.hub.fault({ path: /\/tree\//, kind: 'status', status: 429 });
    s.hub.fault({ path: /config\.json$/, kind: 'status', status: 503 });
    const { value: res, error, lines } = await withLogs(() => pull(REPO, s.base));
    assert.equal(error, undefined, String(error));
    assert.equal(res!.files.length, DEFAULT_PULLED.length);
    assert.equal(s.hub.requests.filter((r) => r.url.includes('/revision/')).length, 3);
    assert.ok(lines.filter((l) => /retrying in/.test(l)).length >= 3);

    s.hub.clearLog();
    const missing = await withLogs(() => pull('acme/nope', s.base));
    assert.match((missing.error as Error).message, /repository acme\/nope was not found/);
    assert.equal(s.hub.requests.length, 1);
    // Persistent 5xx: a clear error after the attempts run out.
    s.hub.fault({ path: /\/revision\//, kind: 'status', status: 502, times: 10 });
    const down = await withLogs(() => pull('acme/other', { ...s.base, cacheDir: path.join(s.t.dir, 'other') }));
    assert.match((down.error as Error).message, /HTTP 502 .*after 3 attempts/);
  } finally {
    await s.done();
  }
});

test('401 names the problem and the fix without printing the token, and is not retried', async () => {
  const hub = await FakeHub.start({ tokens: [TOKEN], echoAuthOn401: true });
  hub.addRepo(REPO, modelRepoFiles());
  hub.addRepo('acme/private', { 'config.json': '{}' }, { private: true });
  const t = await hubTestEnv(hub, { HF_TOKEN: BAD_TOKEN });
  try {
    const bad = await withLogs(() => pull(REPO, { env: t.env, retry: FAST, progress: false }));
    assert.ok(bad.error instanceof HubError);
    assert.match(bad.error.message, /the Hub rejected the token \(from HF_TOKEN\)/);
    assert.match(bad.error.message, /set HF_TOKEN or run `huggingface-cli login`.*the token was not printed/);
    assert.equal(hub.requests.length, 1);
    await assertSecretNowhere(BAD_TOKEN, [t.home], [bad.error.message, bad.error.stack ?? '', ...bad.lines]);

    const anon = await withLogs(() => pull('acme/private', { env: { ...t.env, HF_TOKEN: '' }, retry: FAST, progress: false }));
    assert.match((anon.error as Error).message, /requires a token/);
    hub.fault({ path: /\/revision\//, kind: 'status', status: 401, errorCode: 'RepoNotFound' });
    const hidden = await withLogs(() => pull('acme/hidden', { env: { ...t.env, HF_TOKEN: TOKEN }, retry: FAST, progress: false }));
    assert.match((hidden.error as Error).message, /acme\/hidden does not exist on .*, or the token \(from HF_TOKEN\) cannot see it/);
    const ok = await pull('acme/private', { env: { ...t.env, HF_TOKEN: TOKEN }, retry: FAST, progress: false, include: ['config.json'] });
    assert.equal(ok.files.length, 1);
  } finally {
    await hub.stop();
    await t.cleanup();
  }
});

test('offline mode uses the cache and lists exactly the files that are missing', async () => {
  const s = await setup();
  try {
    await pull(REPO, { ...s.base, include: ['config.json', 'tokenizer*'] });
    s.hub.clearLog();
    const off = await withLogs(() => pull(REPO, { ...s.base, env: { ...s.t.env, HF_HUB_OFFLINE: '1' } }));
    assert.ok(off.error instanceof HubError);
    const msg = off.error.message;
    assert.match(msg, /offline mode is on/);
    const listed = msg
      .split('\n')
      .filter((l) => l.startsWith('    '))
      .map((l) => l.trim().replace(/ \(.*\)$/, ''));
    assert.deepEqual(listed, ['generation_config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'processor/preprocessor_config.json', 'special_tokens_map.json']);
    assert.match(msg, /fix: run `unime pull acme\/tiny-mllm` with network access/);
    assert.deepEqual(s.hub.requests, [], 'offline mode sends nothing');

    const partial = await pull(REPO, { ...s.base, offline: true, include: ['tokenizer*'] });
    assert.deepEqual(partial.files.map((f) => f.path), ['tokenizer.json', 'tokenizer_config.json']);
    assert.ok(partial.fromCacheOnly);

    await pull(REPO, s.base);
    s.hub.clearLog();
    const full = await pull(REPO, { ...s.base, offline: true });
    assert.equal(full.files.length, DEFAULT_PULLED.length);
    assert.deepEqual(s.hub.requests, []);
    const dev = await withLogs(() => pull(REPO, { ...s.base, offline: true, revision: 'dev' }));
    assert.match((dev.error as Error).message, /acme\/tiny-mllm@dev is not in the cache/);
  } finally {
    await s.done();
  }
});

test('offline mode without a saved listing checks config.json and the shards named by the index', async () => {
  const s = await setup();
  try {
    const res = await pull(REPO, s.base);
    const repoDir = path.join(s.t.cache, 'models--acme--tiny-mllm');
    await fsp.rm(path.join(repoDir, 'trees'), { recursive: true });
    await fsp.rm(path.join(res.snapshotDir, 'model-00002-of-00002.safetensors'));
    const off = await withLogs(() => pull(REPO, { ...s.base, offline: true }));
    assert.match((off.error as Error).message, /missing:\n {4}model-00002-of-00002\.safetensors\n/);
  } finally {
    await s.done();
  }
});

test('when the Hub cannot be reached, a complete cached snapshot is used with a warning', async () => {
  const s = await setup();
  try {
    await pull(REPO, s.base);
    const endpoint = s.hub.endpoint;
    await s.hub.stop();
    const { value, lines, error } = await withLogs(() => pull(REPO, { ...s.base, endpoint }));
    assert.equal(error, undefined, String(error));
    assert.ok(value!.fromCacheOnly);
    assert.ok(lines.some((l) => /could not reach .* using the cached snapshot/.test(l)));
    const none = await withLogs(() => pull('acme/never', { ...s.base, endpoint }));
    assert.match((none.error as Error).message, /could not download acme\/never@main: the connection to the Hub failed after 3 attempts/);
  } finally {
    await s.done();
  }
});

test('datasets go to datasets--org--name and pull whole by default', async () => {
  const s = await setup();
  try {
    s.hub.addRepo('acme/mmeb-mini', { 'data/train.jsonl': '{"q":"a"}\n', 'images/cat.png': { content: blob(5000, 7), lfs: true }, 'README.md': '# data' }, { type: 'dataset' });
    const res = await pull('acme/mmeb-mini', { ...s.base, repoType: 'dataset' });
    assert.deepEqual(res.files.map((f) => f.path), ['README.md', 'data/train.jsonl', 'images/cat.png']);
    assert.ok(res.snapshotDir.includes(`${path.sep}datasets--acme--mmeb-mini${path.sep}`));
    assert.ok(s.hub.requests.some((r) => r.url.startsWith('/datasets/acme/mmeb-mini/resolve/')));
    const viaPrefix = await pull('datasets/acme/mmeb-mini', { ...s.base, include: ['data/'] });
    assert.deepEqual(viaPrefix.files.map((f) => f.path), ['data/train.jsonl']);
  } finally {
    await s.done();
  }
});

test('resolveModelPath passes local directories through and pulls Hub ids', async () => {
  const s = await setup();
  try {
    const local = path.join(s.t.dir, 'my-model');
    await fsp.mkdir(local);
    assert.equal(await resolveModelPath(local, s.base), local);
    assert.equal(await resolveModelPath('my-model', { ...s.base, cwd: s.t.dir }), local);
    const snap = await resolveModelPath(REPO, s.base);
    assert.equal(snap, path.join(s.t.cache, 'models--acme--tiny-mllm', 'snapshots', s.main));
    assert.ok((await listFiles(snap)).some((f) => f.endsWith('config.json')));
    await assert.rejects(resolveModelPath('./missing/dir', s.base), /neither an existing directory nor a Hub id/);
    await assert.rejects(resolveModelPath('a/b/c', s.base), /neither an existing directory nor a Hub id/);
  } finally {
    await s.done();
  }
});
