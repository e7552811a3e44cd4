/** Scoring and data readers of the non-MMEB suites, on hand-made embeddings and files whose answers are known. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../helpers.js';
import { UnimeError } from '../../src/errors.js';
import { parseCsv } from '../../src/eval/annotations.js';
import { readRetrievalData, retrievalRanks, scoreRetrieval } from '../../src/eval/retrieval.js';
import { stackRows } from '../../src/eval/scoring.js';
import { readSugarcrepe, sugarcrepeAccuracy, SUGARCREPE_SUBSETS } from '../../src/eval/sugarcrepe.js';
import { classEmbeddings, readTemplates, readZeroshotData, scoreZeroshot, zeroshotRanks } from '../../src/eval/zeroshot.js';
import { textPrompted } from '../../src/eval/suite-eval.js';

const m = (rows: number[][]) => stackRows(rows);

test('retrieval: ranks both ways; an image counts its best caption, its other captions do not compete', () => {
  // Images along the axes; captions 0,1 belong to image 0, caption 2 to image 1, caption 3 to image 2.
  const images = m([
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
  ]);
  const captions = m([
    [0.9, 0.1, 0], // image 0, right
    [0.1, 0.9, 0], // image 0, but closer to image 1
    [0, 1, 0.2], // image 1, right
    [1, 0, 0.5], // image 2, but closest to image 0
  ]);
  const link = [0, 0, 1, 2];
  const { i2t, t2i } = retrievalRanks(images, captions, link);
  // image 0: best own caption (0: .99 cos) vs others: caption 3 (cos .894) and 2 (0): rank 1.
  // image 1: caption 2 (cos .98) vs caption 1 (cos .99): rank 2.
  // image 2: caption 3 (cos .447) vs caption 2 (cos .196): rank 1.
  assert.deepEqual([...i2t], [1, 2, 1]);
  // caption 0 -> image 0: 1; caption 1 -> image 0 (.11) but image 1 (.99): 2; caption 2 -> 1; caption 3 -> image 2 (.447) after image 0 (.894): 2.
  assert.deepEqual([...t2i], [1, 2, 1, 2]);
  const s = scoreRetrieval(images, captions, link);
  assert.ok(Math.abs(s.i2t_r1 - 200 / 3) < 1e-9);
  assert.equal(s.t2i_r1, 50);
  assert.equal(s.i2t_r5, 100);
  assert.equal(s.t2i_r10, 100);
  assert.ok(Math.abs(s.mean - (200 / 3 + 100 + 100 + 50 + 100 + 100) / 6) < 1e-9);
  assert.equal(s.images, 3);
  assert.equal(s.captions, 4);
});

test('retrieval: a collapsed model (every embedding equal) scores 0 at R@1, ties counting against it', () => {
  const same = [
    [1, 1],
    [1, 1],
  ];
  const s = scoreRetrieval(m(same), m(same), [0, 1]);
  assert.equal(s.i2t_r1, 0);
  assert.equal(s.t2i_r1, 0);
  assert.equal(s.t2i_r5, 100);
  assert.throws(() => scoreRetrieval(m(same), m([[1, 1]]), [5]), UnimeError);
  assert.throws(() => scoreRetrieval(m([[1, 0], [0, 1]]), m([[1, 0]]), [0]), /image 1 has no caption/);
});

test('sugarcrepe: accuracy is the share of images closer to the caption than to the negative; a tie is wrong', () => {
  const images = m([[1, 0], [0, 1], [1, 1], [1, 0]]);
  const pos = m([[1, 0.1], [1, 0], [1, 1], [1, 0]]);
  const neg = m([[0, 1], [0, 1], [2, 2], [1, 0.2]]);
  // right, wrong, tie (wrong), right
  assert.equal(sugarcrepeAccuracy(images, pos, neg), 50);
  assert.throws(() => sugarcrepeAccuracy(images, pos, m([[1, 0]])), UnimeError);
  assert.throws(() => sugarcrepeAccuracy(m([[NaN, 0]]), m([[1, 0]]), m([[1, 0]])), /non-finite|NaN/);
});

test('zeroshot: class embeddings are normalised template means; top-1/top-5 with pessimistic ties', () => {
  // Two classes x two templates.
  const t = m([
    [2, 0, 0],
    [0, 2, 0], // class 0 -> mean (1,1,0)/sqrt2
    [0, 0, 3],
    [0, 0, 1], // class 1 -> (0,0,1)
  ]);
  const cls = classEmbeddings(t, 2, 2);
  assert.deepEqual([...cls.data].map((x) => Math.round(x * 1e6) / 1e6), [0.707107, 0.707107, 0, 0, 0, 1]);
  const images = m([
    [1, 1, 0], // class 0, right
    [1, 0, 0.1], // labelled 1, but class 0 is closer
    [0, 0, 1], // class 1, right
    [0, 0, 0], // no direction: cos 0 with both classes, a tie that counts against
  ]);
  const labels = [0, 1, 1, 0];
  assert.deepEqual([...zeroshotRanks(images, cls, labels)], [1, 2, 1, 2]);
  const s = scoreZeroshot(images, cls, labels, ['cat', 'dog']);
  assert.equal(s.top1, 50);
  assert.equal(s.top5, 100);
  assert.deepEqual(s.per_class, { cat: 50, dog: 50 });
  assert.throws(() => classEmbeddings(t, 3, 2), UnimeError);
  assert.throws(() => zeroshotRanks(images, cls, [0, 1, 2, 0]), /outside the 2 classes/);
});

test('text prompts fill <sent>; csv parsing honours quotes', () => {
  assert.equal(textPrompted('<sent>\nSummary above sentence in one word:', 'a dog'), 'a dog\nSummary above sentence in one word:');
  const rows = parseCsv('image,caption\na.png,"a dog, running"\r\nb.png,"say ""hi"""\n', 'x.csv');
  assert.deepEqual(rows, [
    { image: 'a.png', caption: 'a dog, running' },
    { image: 'b.png', caption: 'say "hi"' },
  ]);
  assert.throws(() => parseCsv('image,caption\na.png\n', 'x.csv'), /1 fields on line 2/);
});

test('readers: canonical jsonl/csv, Karpathy JSON, SugarCrepe folder, ImageFolder and table; errors name file and field', async () => {
  const { dir, cleanup } = await tempDir('unime-suites-');
  try {
    const touch = async (p: string) => {
      await fsp.mkdir(path.dirname(p), { recursive: true });
      await fsp.writeFile(p, 'x');
    };
    for (const f of ['img/a.png', 'img/b.png', 'coco/val2017/c.jpg', 'if/cat/1.png', 'if/cat/2.png', 'if/dog/3.png']) await touch(path.join(dir, f));
    // jsonl with caption / captions
    const jl = path.join(dir, 'ret.jsonl');
    await fsp.writeFile(jl, [JSON.stringify({ image: 'img/a.png', caption: 'one' }), JSON.stringify({ image: 'img/b.png', captions: ['two', 'three'] }), JSON.stringify({ image: 'img/a.png', caption: 'four' })].join('\n'));
    const r = await readRetrievalData(jl);
    assert.deepEqual(r.images, [path.join(dir, 'img/a.png'), path.join(dir, 'img/b.png')]);
    assert.deepEqual(r.captions, ['one', 'two', 'three', 'four']);
    assert.deepEqual([...r.captionImage], [0, 1, 1, 0]);
    // csv
    const csv = path.join(dir, 'ret.csv');
    await fsp.writeFile(csv, 'image,caption\nimg/a.png,one\nimg/b.png,two\n');
    assert.deepEqual((await readRetrievalData(csv)).captions, ['one', 'two']);
    // Karpathy: only the test split, filepath joined
    const kp = path.join(dir, 'dataset_coco.json');
    await fsp.writeFile(
      kp,
      JSON.stringify({
        images: [
          { filename: 'c.jpg', filepath: 'coco/val2017', split: 'test', sentences: [{ raw: 'A cat. ' }, { raw: 'A pet.' }] },
          { filename: 'zzz.jpg', filepath: 'coco/val2017', split: 'train', sentences: [{ raw: 'unused' }] },
        ],
      }),
    );
    const k = await readRetrievalData(kp);
    assert.equal(k.format, 'karpathy');
    assert.deepEqual(k.images, [path.join(dir, 'coco/val2017/c.jpg')]);
    assert.deepEqual(k.captions, ['A cat.', 'A pet.']);
    // errors
    const bad = path.join(dir, 'bad.jsonl');
    await fsp.writeFile(bad, JSON.stringify({ image: 'img/a.png', text: 'no caption field' }));
    await assert.rejects(readRetrievalData(bad), (e: UnimeError) => e.file === bad && e.field === 'caption');
    const missing = path.join(dir, 'missing.jsonl');
    await fsp.writeFile(missing, JSON.stringify({ image: 'img/nope.png', caption: 'x' }));
    await assert.rejects(readRetrievalData(missing), /1 of 1 images do not exist, e\.g\. .*nope\.png/);
    await assert.rejects(readRetrievalData(path.join(dir, 'nowhere')), /no such file or folder/);

    // SugarCrepe: two subsets present, the rest listed missing
    const sc = path.join(dir, 'coco');
    await fsp.writeFile(path.join(sc, 'add_att.json'), JSON.stringify({ '1': { filename: 'c.jpg', caption: 'a cat', negative_caption: 'a red cat' } }));
    await fsp.writeFile(path.join(sc, 'swap_obj.json'), JSON.stringify({ '7': { filename: 'c.jpg', caption: 'cat on mat', negative_caption: 'mat on cat' } }));
    const s = await readSugarcrepe(sc);
    assert.equal(s.imageDir, path.join(sc, 'val2017'));
    assert.deepEqual(s.subsets.map((x) => x.name), ['add_att', 'swap_obj']);
    assert.deepEqual(s.missing, SUGARCREPE_SUBSETS.filter((x) => x !== 'add_att' && x !== 'swap_obj'));
    await fsp.writeFile(path.join(sc, 'add_obj.json'), JSON.stringify({ '2': { filename: 'c.jpg', caption: 'a cat' } }));
    await assert.rejects(readSugarcrepe(sc), (e: UnimeError) => e.file === path.join(sc, 'add_obj.json') && e.field === '2.negative_caption');
    await assert.rejects(readSugarcrepe(path.join(dir, 'img')), /holds none of the SugarCrepe subset files|no image folder/);

    // ImageFolder, with a class-names file in folder order
    const z = await readZeroshotData(path.join(dir, 'if'));
    assert.deepEqual(z.classNames, ['cat', 'dog']);
    assert.deepEqual([...z.labels], [0, 0, 1]);
    const names = path.join(dir, 'names.txt');
    await fsp.writeFile(names, 'tabby cat\ngood dog\n');
    assert.deepEqual((await readZeroshotData(path.join(dir, 'if'), { classNames: names })).classNames, ['tabby cat', 'good dog']);
    // table with integer labels indexing the names
    const zt = path.join(dir, 'zs.csv');
    await fsp.writeFile(zt, 'image,label\nimg/a.png,1\nimg/b.png,0\n');
    const zz = await readZeroshotData(zt, { classNames: names });
    assert.deepEqual([...zz.labels], [1, 0]);
    assert.deepEqual(zz.classNames, ['tabby cat', 'good dog']);
    // templates
    const tf = path.join(dir, 't.txt');
    await fsp.writeFile(tf, 'a photo of a {}.\n# comment\na {}\n');
    assert.deepEqual(await readTemplates(tf), ['a photo of a {}.', 'a {}']);
    await fsp.writeFile(tf, 'no slot\n');
    await assert.rejects(readTemplates(tf), /has no \{\} for the class name/);
  } finally {
    await cleanup();
  }
});

test('retrieval and zeroshot score block by block exactly as the whole similarity matrix does (more images than one block)', async () => {
  const { Rng } = await import('../../src/runtime/rng.js');
  const { cosineMatrix, rankOfCorrect } = await import('../../src/eval/scoring.js');
  const rng = new Rng(7);
  // Coarse values make exact ties common, so the tie rule is exercised too.
  const rand = (rows: number, dim: number) => stackRows(Array.from({ length: rows }, () => Array.from({ length: dim }, () => Math.round(rng.normal()))));
  const nI = 300;
  const images = rand(nI, 3);
  const link = Array.from({ length: 2 * nI }, (_, c) => c % nI);
  const captions = rand(2 * nI, 3);
  const { i2t, t2i } = retrievalRanks(images, captions, link);
  const sim = cosineMatrix(images, captions);
  const nT = captions.rows;
  for (let i = 0; i < nI; i++) {
    const mine = [i, i + nI];
    const others = [...sim.subarray(i * nT, (i + 1) * nT)].filter((_, c) => !mine.includes(c));
    assert.equal(i2t[i], rankOfCorrect([Math.max(...mine.map((c) => sim[i * nT + c]!)), ...others]), `i2t ${i}`);
  }
  for (let c = 0; c < nT; c++) {
    const col = Array.from({ length: nI }, (_, i) => sim[i * nT + c]!);
    const g = link[c]!;
    assert.equal(t2i[c], rankOfCorrect([col[g]!, ...col.filter((_, i) => i !== g)]), `t2i ${c}`);
  }
  const classes = rand(5, 3);
  const labels = Array.from({ length: nI }, (_, i) => i % 5);
  const zr = zeroshotRanks(images, classes, labels);
  const zs = cosineMatrix(images, classes);
  for (let i = 0; i < nI; i++) {
    const row = [...zs.subarray(i * 5, (i + 1) * 5)];
    assert.equal(zr[i], rankOfCorrect([row[labels[i]!]!, ...row.filter((_, c) => c !== labels[i])]), `zeroshot ${i}`);
  }
});
