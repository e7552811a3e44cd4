import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { TextEmbedder } from '../../src/models/text-embedder.js';
import { applyLora, mergeAdapterChain, saveLoraAdapter } from '../../src/models/peft/index.js';
import { loadTextDecoder } from '../../src/models/text/load.js';
import { Rng } from '../../src/runtime/rng.js';
import { tf } from '../../src/runtime/tf.js';
import { parseRecipe, runRecipe } from '../../src/recipes/index.js';
import { readTeacherCache, teacherShardName, TEACHER_INDEX } from '../../src/train/teacher-embed.js';
import { tempDir } from '../helpers.js';
import { makeTinyEmbedder } from '../models/embedder-fixture.js';

let dir: string;
let cleanup: () => Promise<void>;
let model: string;
let pairsFile: string;
const PAIRS = Array.from({ length: 12 }, (_, i) => ({
  sent0: `question number ${i} about the fox`,
  sent1: `answer ${i} the quick brown dog`,
  ...(i % 3 === 0 ? { hard_neg: `a wrong answer ${i}` } : {}),
}));
// sent0 of row 11 repeats row 0's: duplicates are embedded once
PAIRS[11]!.sent0 = PAIRS[0]!.sent0;
const DISTINCT = new Set(PAIRS.flatMap((p) => [p.sent0, p.sent1, ...(p.hard_neg ? [p.hard_neg] : [])]));

const quiet = () => ({ info: (_: string) => {}, warn: (_: string) => {} });

function recipeText(): string {
  return `name: teacher-test
output_dir: ${JSON.stringify(path.join(dir, 'run'))}
stages:
  - name: teacher
    kind: teacher-embed
    teacher: ${JSON.stringify(model)}
    pooling: mean
    instruction: "Instruct: find the answer\\nQuery: "
    data:
      path: ${JSON.stringify(pairsFile)}
    max_length: 32
    batch_size: 2
`;
}

before(async () => {
  ({ dir, cleanup } = await tempDir());
  model = await makeTinyEmbedder(path.join(dir, 'teacher'), { seed: 7 });
  pairsFile = path.join(dir, 'pairs.jsonl');
  await fsp.writeFile(pairsFile, PAIRS.map((p) => JSON.stringify(p)).join('\n') + '\n');
});
after(() => cleanup());

test('a teacher-embed stage caches every distinct text once; readTeacherCache matches TextEmbedder; reruns resume shard by shard', async () => {
  const loaded = parseRecipe(recipeText(), { file: 'teacher.yaml', env: {} });
  const out = path.join(dir, 'run', 'teacher');
  const first = await runRecipe(loaded, { log: quiet() });
  const st = first.stages[0]!;
  assert.equal(st.status, 'ran');
  const result = (st as { result?: Record<string, unknown> }).result!;
  const n = DISTINCT.size;
  assert.equal(result.rows, n);
  assert.equal(result.dim, 32);
  assert.equal(result.model, model);
  assert.equal(result.embedded, n);
  // batch_size 2 -> 16 rows a shard
  const nShards = Math.ceil(n / 16);
  assert.ok(nShards >= 2);
  assert.equal(result.shards, nShards);
  for (let i = 0; i < nShards; i++) assert.ok(existsSync(path.join(out, teacherShardName(i))));
  assert.ok(existsSync(path.join(out, TEACHER_INDEX)));

  const cache = await readTeacherCache(out);
  assert.equal(cache.rows, n);
  assert.equal(cache.dim, 32);
  const texts = [...DISTINCT];
  const emb = await TextEmbedder.load(model, { pooling: 'mean', instruction: 'Instruct: find the answer\nQuery: ' });
  let want: Float32Array;
  try {
    want = await emb.embed(texts, { batchSize: 5, maxLength: 32 });
  } finally {
    emb.dispose();
  }
  texts.forEach((t, i) => {
    const got = cache.get(t);
    assert.ok(got, t);
    for (let j = 0; j < 32; j++) assert.ok(Math.abs(got[j]! - want[i * 32 + j]!) < 1e-5, `${t}[${j}]`);
  });
  assert.equal(cache.get('never seen'), undefined);
  assert.equal(cache.has(texts[0]!), true);

  // a second run skips the completed stage
  const again = await runRecipe(loaded, { log: quiet() });
  assert.equal(again.stages[0]!.status, 'skipped');

  // a forced rerun after losing one shard recomputes only that shard
  const lost = path.join(out, teacherShardName(1));
  const keptBefore = await fsp.readFile(path.join(out, teacherShardName(0)));
  await fsp.rm(lost);
  const forced = await runRecipe(loaded, { log: quiet(), force: true });
  const fr = (forced.stages[0] as { result?: Record<string, unknown> }).result!;
  assert.equal(forced.stages[0]!.status, 'ran');
  assert.equal(fr.reused_shards, nShards - 1);
  const shard1Rows = Math.min(16, n - 16);
  assert.equal(fr.embedded, shard1Rows);
  assert.ok(existsSync(lost));
  assert.deepEqual(await fsp.readFile(path.join(out, teacherShardName(0))), keptBefore);
  const cache2 = await readTeacherCache(out);
  assert.deepEqual(Array.from(cache2.matrix), Array.from(cache.matrix));
});

test('readTeacherCache explains a missing cache', async () => {
  await assert.rejects(readTeacherCache(path.join(dir, 'nothing')), /run the teacher-embed stage first|no readable teacher cache/);
});

test('teacher-embed with init_from merges the adapter into the teacher, bidirectional switches attention; both are in the fingerprint', async () => {
  // an adapter that changes the model: lora_B set to random values
  const adapterDir = path.join(dir, 'adapter');
  const dec = await loadTextDecoder(model, { trainable: false });
  try {
    const adapter = applyLora(dec, { r: 2, alpha: 4, targetModules: 'all-linear', rng: new Rng(4) });
    const rng = new Rng(9);
    for (const l of adapter.layers) l.loraB.assign(tf.tensor(rng.fillNormal(new Float32Array(l.loraB.size), 0, 0.5), l.loraB.shape));
    await saveLoraAdapter(adapterDir, dec);
  } finally {
    dec.dispose();
  }
  const text = (bidirectional: boolean) => `name: teacher-init
output_dir: ${JSON.stringify(path.join(dir, 'run-init'))}
stages:
  - name: teacher
    kind: teacher-embed
    teacher: ${JSON.stringify(model)}
    init_from: ${JSON.stringify(adapterDir)}
    bidirectional: ${bidirectional}
    pooling: mean
    data:
      path: ${JSON.stringify(pairsFile)}
    max_length: 32
    batch_size: 4
`;
  const out = path.join(dir, 'run-init', 'teacher');
  const texts = [...DISTINCT];
  const expected = async (bidirectional: boolean) => {
    const emb = await TextEmbedder.load(model, { pooling: 'mean' });
    try {
      emb.decoder.bidirectional = bidirectional;
      await mergeAdapterChain(emb.decoder, [adapterDir]);
      return await emb.embed(texts, { batchSize: 3, maxLength: 32 });
    } finally {
      emb.dispose();
    }
  };
  const plain = await TextEmbedder.load(model, { pooling: 'mean' });
  let base: Float32Array;
  try {
    base = await plain.embed(texts, { batchSize: 3, maxLength: 32 });
  } finally {
    plain.dispose();
  }
  for (const bidirectional of [true, false]) {
    const run = await runRecipe(parseRecipe(text(bidirectional), { file: 'init.yaml', env: {} }), { log: quiet(), force: true });
    const r = (run.stages[0] as { result?: Record<string, unknown> }).result!;
    // switching the attention direction invalidates every shard
    assert.equal(r.embedded, texts.length, `bidirectional ${bidirectional}`);
    const cache = await readTeacherCache(out);
    assert.equal(cache.index.bidirectional, bidirectional);
    assert.deepEqual(cache.index.adapters, [adapterDir]);
    const want = await expected(bidirectional);
    let moved = 0;
    texts.forEach((t, i) => {
      const got = cache.get(t)!;
      for (let j = 0; j < 32; j++) {
        assert.ok(Math.abs(got[j]! - want[i * 32 + j]!) < 1e-4, `${t}[${j}]`);
        moved = Math.max(moved, Math.abs(got[j]! - base[i * 32 + j]!));
      }
    });
    assert.ok(moved > 1e-3, 'the adapter did not change the embeddings');
  }
  // an unchanged rerun reuses every shard; a changed adapter recomputes them
  const again = await runRecipe(parseRecipe(text(false), { file: 'init.yaml', env: {} }), { log: quiet(), force: true });
  assert.equal((again.stages[0] as { result?: Record<string, unknown> }).result!.embedded, 0);
  const w = path.join(adapterDir, 'adapter_model.safetensors');
  const bytes = await fsp.readFile(w);
  bytes[bytes.length - 1]! ^= 1;
  await fsp.writeFile(w, bytes);
  const changed = await runRecipe(parseRecipe(text(false), { file: 'init.yaml', env: {} }), { log: quiet(), force: true });
  assert.equal((changed.stages[0] as { result?: Record<string, unknown> }).result!.embedded, texts.length);
});
