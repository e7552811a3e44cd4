import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { TextEmbedder } from '../../src/models/text-embedder.js';
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
