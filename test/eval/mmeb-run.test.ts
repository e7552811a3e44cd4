import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UnimeError } from '../../src/errors.js';
import { type EmbedFn, type EmbedRequest, type MmebEvalRow, evaluateMmebDataset } from '../../src/eval/mmeb-run.js';

const isErr = (re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof UnimeError, `not a UnimeError: ${e}`);
  assert.match(e.message, re);
  return true;
};

const CLASSES = ['cat', 'dog', 'bird', 'fish'];

/** A toy model: a candidate is the one-hot of its class; a query mixes the classes its text names. */
function toyEmbed(calls: EmbedRequest[][]): EmbedFn {
  return async (batch) => {
    calls.push([...batch]);
    return batch.map((r) => {
      const v = new Float32Array(CLASSES.length);
      if (r.role === 'candidate') v[CLASSES.indexOf(r.text)] = 1;
      else {
        // "fish+0.5bird" -> fish 1, bird 0.5
        for (const part of r.text.split('+')) {
          const w = /^([0-9.]+)?([a-z]+)$/.exec(part)!;
          const c = CLASSES.indexOf(w[2]!);
          v[c] = v[c]! + (w[1] ? Number(w[1]) : 1);
        }
      }
      return v;
    });
  };
}

const row = (qry: string, img: string, correct: string, others = CLASSES.filter((c) => c !== correct)): MmebEvalRow => ({
  qry_text: qry,
  qry_img_path: img,
  tgt_text: [correct, ...others],
  tgt_img_path: [],
});

test('evaluates a dataset through a plugged-in embed function, embedding each unique input once', async () => {
  const rows = [
    row('cat', 'a.jpg', 'cat'), // rank 1
    row('dog', 'b.jpg', 'dog'), // rank 1
    row('fish+0.5bird', 'c.jpg', 'bird'), // fish wins, bird second: rank 2
    row('cat', 'a.jpg', 'cat'), // same query as row 0: embedded once
    row('dog+0.5fish', 'd.jpg', 'fish', ['cat', 'dog']), // three candidates only; dog wins: rank 2 of 3
  ];
  const calls: EmbedRequest[][] = [];
  const progress: number[] = [];
  const out = await evaluateMmebDataset('Toy', rows, toyEmbed(calls), { batchSize: 3, onProgress: (d) => progress.push(d) });
  assert.deepEqual([...out.ranks], [1, 1, 2, 1, 2]);
  assert.deepEqual(out.embedded, { queries: 4, candidates: 4 });
  assert.equal(out.metrics['hit@1'], 0.6);
  assert.equal(out.metrics['hit@5'], 1);
  assert.equal(out.metrics.num_pred, 5);
  assert.equal(out.metrics.num_data, 5);
  const all = calls.flat();
  assert.equal(all.length, 8);
  assert.ok(calls.every((c) => c.length <= 3));
  assert.deepEqual(all.filter((r) => r.role === 'query').map((r) => [r.text, r.imagePath]), [
    ['cat', 'a.jpg'], ['dog', 'b.jpg'], ['fish+0.5bird', 'c.jpg'], ['dog+0.5fish', 'd.jpg'],
  ]);
  assert.deepEqual(all.filter((r) => r.role === 'candidate').map((r) => [r.text, r.imagePath]), CLASSES.map((c) => [c, '']));
  assert.equal(progress.at(-1), 8);
});

test('an embed function returning a matrix works the same', async () => {
  const rows = [row('cat', 'a.jpg', 'cat'), row('fish+0.5bird', 'c.jpg', 'bird')];
  const lists = toyEmbed([]);
  const asMatrix: EmbedFn = async (batch) => {
    const vs = (await lists(batch)) as Float32Array[];
    const data = new Float32Array(vs.length * 4);
    vs.forEach((v, i) => data.set(v, i * 4));
    return { data, rows: vs.length, dim: 4 };
  };
  const a = await evaluateMmebDataset('Toy', rows, lists);
  const b = await evaluateMmebDataset('Toy', rows, asMatrix);
  assert.deepEqual(a.metrics, b.metrics);
});

test('malformed rows and misbehaving embed functions fail with the dataset and row named', async () => {
  const good = toyEmbed([]);
  await assert.rejects(
    evaluateMmebDataset('GQA', [{ ...row('cat', '', 'cat'), tgt_img_path: ['x.jpg'] }], good),
    isErr(/GQA: rows\[0\]\.tgt_img_path: tgt_img_path has 1 entries for 4 tgt_text entries/),
  );
  await assert.rejects(
    evaluateMmebDataset('GQA', [row('cat', '', 'cat'), { ...row('cat', '', 'cat'), tgt_text: [] }], good),
    isErr(/GQA: rows\[1\]\.tgt_text/),
  );
  await assert.rejects(evaluateMmebDataset('GQA', [], good), isErr(/no rows/));
  await assert.rejects(
    evaluateMmebDataset('GQA', [row('cat', '', 'cat')], async (batch) => batch.slice(1).map(() => new Float32Array(4))),
    isErr(/embed returned 0 embeddings for 1 inputs/),
  );
  let n = 0;
  await assert.rejects(
    evaluateMmebDataset('GQA', [row('cat', '', 'cat'), row('dog', '', 'dog')], async (batch) => batch.map(() => new Float32Array(++n > 1 ? 3 : 4).fill(1)), {
      batchSize: 1,
    }),
    isErr(/dimension 3 after 4/),
  );
  await assert.rejects(evaluateMmebDataset('GQA', [row('cat', '', 'cat')], good, { batchSize: 0 }), isErr(/batch size 0/));
});
