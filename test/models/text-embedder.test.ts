import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { TextEmbedder } from '../../src/models/text-embedder.js';
import { tf } from '../../src/runtime/tf.js';
import { textPrompt } from '../../src/tokenizers/templates.js';
import { fixture, tempDir } from '../helpers.js';
import { makeTinyEmbedder } from './embedder-fixture.js';

const TEXTS = ['hello world', 'the quick brown fox jumps over the lazy dog', 'a', 'embedding models pool hidden states', 'hello world'];

let dir: string;
let cleanup: () => Promise<void>;
before(async () => {
  ({ dir, cleanup } = await tempDir());
  await makeTinyEmbedder(path.join(dir, 'model'));
});
after(() => cleanup());

function rowOf(m: Float32Array, i: number, d: number): Float32Array {
  return m.subarray(i * d, (i + 1) * d);
}
function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

for (const pooling of ['last', 'mean'] as const) {
  test(`TextEmbedder (${pooling}) equals a manual decoder forward + pooling, row by row`, async () => {
    const emb = await TextEmbedder.load(path.join(dir, 'model'), { pooling, normalize: false });
    try {
      const d = emb.dim;
      assert.equal(d, 32);
      const out = await emb.embed(TEXTS, { batchSize: 3 });
      assert.equal(out.length, TEXTS.length * d);
      for (let i = 0; i < TEXTS.length; i++) {
        const ids = emb.tokenizer.encode(TEXTS[i]!);
        const manual = tf.tidy(() => {
          const h = emb.decoder.forward({ inputIds: [ids] }).lastHiddenState; // [1, L, d]
          return pooling === 'last' ? h.slice([0, ids.length - 1, 0], [1, 1, d]).reshape([d]) : h.mean(1).reshape([d]);
        });
        const want = manual.dataSync();
        manual.dispose();
        assert.ok(maxDiff(rowOf(out, i, d), want) < 1e-5, `row ${i}: ${maxDiff(rowOf(out, i, d), want)}`);
      }
    } finally {
      emb.dispose();
    }
  });
}

test('a left-padded batch gives the same embeddings as one row at a time; normalize gives unit norm; no leaks', async () => {
  const emb = await TextEmbedder.load(path.join(dir, 'model'), { pooling: 'last', normalize: true, template: 'phi3.5-v' });
  try {
    const d = emb.dim;
    assert.equal(emb.wrap('x'), textPrompt('phi3.5-v', 'x'));
    const before = tf.memory().numTensors;
    const progress: number[] = [];
    const batched = await emb.embed(TEXTS, { batchSize: 8, onProgress: (done) => progress.push(done) });
    assert.deepEqual(progress, [TEXTS.length]);
    assert.equal(tf.memory().numTensors, before, 'embed() leaks no tensors');
    for (let i = 0; i < TEXTS.length; i++) {
      const single = await emb.embed([TEXTS[i]!]);
      assert.ok(maxDiff(rowOf(batched, i, d), single) < 1e-5, `row ${i}`);
      let n = 0;
      for (const v of single) n += v * v;
      assert.ok(Math.abs(Math.sqrt(n) - 1) < 1e-5);
    }
    assert.ok(maxDiff(rowOf(batched, 0, d), rowOf(batched, 4, d)) < 1e-6, 'the same text twice');
    assert.ok(maxDiff(rowOf(batched, 0, d), rowOf(batched, 1, d)) > 1e-3, 'different texts differ');
  } finally {
    emb.dispose();
  }
});

test('an instruction prefix and truncation change the input; bad options fail clearly', async () => {
  const emb = await TextEmbedder.load(path.join(dir, 'model'), { pooling: 'mean', instruction: 'Instruct: retrieve\nQuery: ' });
  try {
    assert.equal(emb.wrap('abc'), 'Instruct: retrieve\nQuery: abc');
    const full = await emb.embed([TEXTS[1]!]);
    const cut = await emb.embed([TEXTS[1]!], { maxLength: 4 });
    assert.ok(maxDiff(full, cut) > 1e-4);
    await assert.rejects(emb.embed(['x'], { batchSize: 0 }), /batch size/);
  } finally {
    emb.dispose();
  }
  await assert.rejects(TextEmbedder.load(path.join(dir, 'model'), { template: 'no-such-template' }), /unknown prompt template/);
  await assert.rejects(TextEmbedder.load(path.join(dir, 'missing')), /neither an existing directory nor a Hub id/);
});

test('a tokenizer whose ids fall outside the decoder vocabulary is refused clearly', async () => {
  const bad = path.join(dir, 'mismatch');
  await fsp.mkdir(bad);
  for (const [src, names] of [[fixture('models', 'llama-tiny'), ['config.json', 'model.safetensors']], [fixture('tokenizers', 'spm-unigram'), null]] as const) {
    for (const f of names ?? (await fsp.readdir(src))) await fsp.copyFile(path.join(src, f), path.join(bad, f));
  }
  const emb = await TextEmbedder.load(bad);
  try {
    await assert.rejects(emb.embed(['the quick brown fox jumps over the lazy dog']), /outside the decoder's vocabulary \(100 entries\)/);
  } finally {
    emb.dispose();
  }
});
