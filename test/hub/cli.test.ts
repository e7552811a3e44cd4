import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import YAML from 'yaml';
import { runCli } from '../cli/run-cli.js';
import { makeCheckpoint } from './checkpoint-fixture.js';
import { FakeHub } from './fake-hub.js';
import { BAD_TOKEN, DEFAULT_PULLED, TOKEN, assertSecretNowhere, hubTestEnv, modelRepoFiles } from './hub-helpers.js';


test('unime push uploads a checkpoint to the Hub at HF_ENDPOINT and never prints the token', async () => {
  const hub = await FakeHub.start({ tokens: [TOKEN] });
  const t = await hubTestEnv(hub);
  try {
    const ckpt = path.join(t.dir, 'ckpt');
    await makeCheckpoint(ckpt);
    hub.fault({ path: /\/preupload\//, kind: 'status', status: 500 });
    const r = await runCli(['push', ckpt, 'me/cli-model', '--private', '--license', 'apache-2.0'], { env: t.env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /adapter_model\.safetensors\s+3\.00 kB\s+lfs/);
    assert.match(r.stdout, /pushed to http:\/\/127\.0\.0\.1:\d+\/me\/cli-model, commit [0-9a-f]{40}/);
    assert.match(r.stderr, /HTTP 500 .*retrying/);
    assert.equal(hub.repo('me/cli-model')!.private, true);
    const card = hub.files('me/cli-model').get('README.md')!.content.toString();
    const meta = YAML.parse(card.slice(4, card.indexOf('\n---\n', 4))) as Record<string, unknown>;
    assert.equal(meta.license, 'apache-2.0');
    assert.equal(meta.library_name, 'unime');
    await assertSecretNowhere(TOKEN, [t.dir], [r.stdout, r.stderr]);
  } finally {
    await hub.stop();
    await t.cleanup();
  }
});

test('unime push with a rejected token exits 2 with the fix, token redacted even when the server echoes it', async () => {
  const hub = await FakeHub.start({ tokens: [TOKEN], echoAuthOn401: true });
  const t = await hubTestEnv(hub, { HF_TOKEN: BAD_TOKEN });
  try {
    const ckpt = path.join(t.dir, 'ckpt');
    await makeCheckpoint(ckpt);
    const r = await runCli(['push', ckpt, 'me/cli-model'], { env: t.env });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /error: the Hub rejected the token \(from HF_TOKEN\) when trying to push to me\/cli-model/);
    assert.match(r.stderr, /fix: set HF_TOKEN or run `huggingface-cli login` with a valid token; the token was not printed/);
    assert.equal(r.stdout, '');
    assert.equal(hub.requests.length, 1);
    await assertSecretNowhere(BAD_TOKEN, [t.dir], [r.stdout, r.stderr]);

    const dry = await runCli(['push', ckpt, 'me/cli-model', '--dry-run'], { env: t.env });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would push an adapter to/);
    assert.match(dry.stdout, /optimizer\.safetensors\s+optimizer state/);
    assert.match(dry.stdout, /library_name: unime/);
    assert.equal(hub.requests.length, 1, 'a dry run sends nothing');
    const missing = await runCli(['push', path.join(t.dir, 'nope'), 'me/cli-model'], { env: t.env });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /checkpoint directory .*nope does not exist/);
  } finally {
    await hub.stop();
    await t.cleanup();
  }
});

test('unime pull prints the files and the snapshot path; offline it names what is missing', async () => {
  const hub = await FakeHub.start({ tokens: [TOKEN] });
  const sha = hub.addRepo('acme/tiny', modelRepoFiles());
  const t = await hubTestEnv(hub);
  try {
    const part = await runCli(['pull', 'acme/tiny', '--include', 'config.json', 'tokenizer*'], { env: t.env });
    assert.equal(part.code, 0, part.stderr);
    const snapshot = path.join(t.cache, 'models--acme--tiny', 'snapshots', sha);
    assert.equal(part.stdout.trim().split('\n').pop(), snapshot);
    assert.match(part.stdout, /config\.json\s+\d+ B\s+downloaded/);

    const off = await runCli(['pull', 'acme/tiny'], { env: { ...t.env, HF_HUB_OFFLINE: '1' } });
    assert.equal(off.code, 2);
    assert.match(off.stderr, /is only partly in the cache and offline mode is on/);
    assert.match(off.stderr, /\n {4}model-00001-of-00002\.safetensors \(200 kB\)\n/);
    assert.ok(!/\n {4}config\.json/.test(off.stderr));

    hub.fault({ path: /\/revision\//, kind: 'status', status: 503 });
    const full = await runCli(['pull', 'acme/tiny', '--json'], { env: t.env });
    assert.equal(full.code, 0, full.stderr);
    const res = JSON.parse(full.stdout) as { commit: string; snapshotDir: string; files: { path: string; status: string }[] };
    assert.equal(res.commit, sha);
    assert.deepEqual(res.files.map((f) => f.path), DEFAULT_PULLED);
    assert.equal(res.files.filter((f) => f.status === 'cached').length, 3);

    const offOk = await runCli(['pull', 'acme/tiny', '--offline'], { env: t.env });
    assert.equal(offOk.code, 0, offOk.stderr);
    const bad = await runCli(['pull', 'not a repo'], { env: t.env });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /is not a Hub repo id/);
    await assertSecretNowhere(TOKEN, [t.dir], [part.stdout, part.stderr, off.stderr, full.stdout, full.stderr]);
    // The snapshot is usable by path, as Python tools would use it.
    assert.deepEqual(JSON.parse(await fsp.readFile(path.join(snapshot, 'config.json'), 'utf8')), { model_type: 'tiny', hidden_size: 8 });
  } finally {
    await hub.stop();
    await t.cleanup();
  }
});
