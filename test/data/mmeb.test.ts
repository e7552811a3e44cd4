import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { tempDir } from '../helpers.js';
import { encodeEvalParquet, encodeTrainParquet } from '../../tools/synth/generate.js';
import { buildStoredZip, encodePng } from '../../tools/synth/encode.js';
import {
  DataFormatError, listMmebEvalDatasets, listMmebTrainSubsets, parseCsv, readMmebEvalDataset, readMmebTrainSubset, readParquetTable, readTextPairs,
} from '../../src/data/mmeb.js';

let tmp: { dir: string; cleanup: () => Promise<void> };
before(async () => {
  tmp = await tempDir('unime-data-');
});
after(() => tmp.cleanup());

const png = encodePng(2, 1, new Uint8Array([255, 0, 0, 0, 0, 255]));
const png2 = encodePng(1, 1, new Uint8Array([0, 255, 0]));

async function put(rel: string, data: string | Uint8Array): Promise<string> {
  const p = path.join(tmp.dir, rel);
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await fsp.writeFile(p, data);
  return p;
}

function stringParquet(columns: Record<string, unknown[]>): Uint8Array {
  return new Uint8Array(parquetWriteBuffer({ columnData: Object.entries(columns).map(([name, data]) => ({ name, data: data as string[] })) }));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}

async function rejects(p: Promise<unknown>, ...parts: string[]): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof DataFormatError, `expected a DataFormatError, got ${String(e)}`);
    for (const s of parts) assert.ok(e.message.includes(s), `message lacks "${s}": ${e.message}`);
    return true;
  });
}

test('MMEB-eval: the reader returns what the writer wrote; images from a folder and from images.zip', async () => {
  const rows = [
    { qry_text: '<|image_1|>\nRepresent the given image for classification', qry_img_path: 'DsA/q0.png', tgt_text: ['red circle', 'blue circle'], tgt_img_path: ['', ''] },
    { qry_text: 'Find me an everyday image that matches the given caption: x', qry_img_path: '', tgt_text: ['<|image_1|>\nRepresent the given image.', '<|image_1|>\nRepresent the given image.'], tgt_img_path: ['DsA/c0.png', 'DsA/c1.png'] },
  ];
  await put('eval/DsA/test-00000-of-00001.parquet', encodeEvalParquet(rows));
  await put('eval/DsA/q0.png', png); // as a file beside the parquet's folder root
  await put('eval/images.zip', buildStoredZip([{ name: 'DsA/c0.png', data: png }, { name: 'DsA/c1.png', data: png2 }]));
  const root = path.join(tmp.dir, 'eval');
  assert.deepEqual(await listMmebEvalDatasets(root), ['DsA']);
  const ds = await readMmebEvalDataset(root, 'DsA');
  assert.deepEqual(ds.rows, rows);
  assert.equal(await ds.images.locate('DsA/q0.png'), path.join(root, 'DsA/q0.png'));
  const loc = await ds.images.locate('DsA/c1.png');
  assert.ok(typeof loc !== 'string' && loc.member === 'DsA/c1.png');
  assert.ok(sameBytes(await ds.images.read('DsA/c0.png'), png));
  assert.ok(sameBytes(await ds.images.read('DsA/c1.png'), png2));
  await rejects(ds.images.locate('DsA/nope.png'), 'DsA/nope.png', 'test-00000-of-00001.parquet');
  await ds.images.close();
});

test('MMEB-train: round trip, cap, negatives optional, split chosen by file name', async () => {
  const rows = [
    { qry: '<|image_1|>\nq', qry_image_path: 'images/S/0.png', pos_text: 'red circle', pos_image_path: '', neg_text: 'blue circle', neg_image_path: '' },
    { qry: 'caption', qry_image_path: '', pos_text: '<|image_1|>\nRepresent the given image.', pos_image_path: 'images/S/1.png', neg_text: '<|image_1|>\nRepresent the given image.', neg_image_path: 'images/S/2.png' },
  ];
  await put('train/S/original-00000-of-00001.parquet', encodeTrainParquet(rows));
  await put('train/T/original-00000-of-00001.parquet', stringParquet({ qry: ['a'], qry_image_path: [''], pos_text: ['b'], pos_image_path: [''] }));
  await put('train/images/S/1.png', png);
  const root = path.join(tmp.dir, 'train');
  assert.deepEqual(await listMmebTrainSubsets(root), ['S', 'T']);
  // A root assembled from links: linked subset folders count, a dangling link and a linked file do not.
  const linked = path.join(tmp.dir, 'linked');
  await fsp.mkdir(linked);
  await fsp.symlink(path.join(root, 'S'), path.join(linked, 'S'));
  await fsp.symlink(path.join(root, 'gone'), path.join(linked, 'Dangling'));
  await fsp.symlink(path.join(root, 'T', 'original-00000-of-00001.parquet'), path.join(linked, 'file.parquet'));
  assert.deepEqual(await listMmebTrainSubsets(linked), ['S']);
  const s = await readMmebTrainSubset(root, 'S');
  assert.deepEqual(s.rows, rows);
  assert.ok(sameBytes(await s.images.read('images/S/1.png'), png));
  assert.equal((await readMmebTrainSubset(root, 'S', { cap: 1 })).rows.length, 1);
  const t = await readMmebTrainSubset(root, 'T');
  assert.deepEqual(t.rows, [{ qry: 'a', qry_image_path: '', pos_text: 'b', pos_image_path: '', neg_text: '', neg_image_path: '' }]);
  await rejects(readMmebTrainSubset(root, 'S', { split: 'diverse_instruction' }), 'no "diverse_instruction" parquet file', 'original-00000-of-00001.parquet');
  await rejects(readMmebTrainSubset(root, 'Missing'), 'subset "Missing" not found');
});

test('bad files: a missing column, a wrong type, a broken parquet, a missing file', async () => {
  await put('bad1/D/test-00000-of-00001.parquet', stringParquet({ qry_text: ['q'], qry_img_path: [''], tgt_text: ['a'] }));
  await rejects(readMmebEvalDataset(path.join(tmp.dir, 'bad1'), 'D'), 'missing column "tgt_img_path"', path.join('bad1', 'D', 'test-00000-of-00001.parquet'));
  // tgt_text as a plain string instead of a list
  await put('bad2/D/test-00000-of-00001.parquet', stringParquet({ qry_text: ['q'], qry_img_path: [''], tgt_text: ['a'], tgt_img_path: [''] }));
  await rejects(readMmebEvalDataset(path.join(tmp.dir, 'bad2'), 'D'), 'tgt_text', 'expected a list of strings');
  await put('bad3/D/test-00000-of-00001.parquet', 'not a parquet file at all');
  await rejects(readMmebEvalDataset(path.join(tmp.dir, 'bad3'), 'D'), 'not a readable parquet file', 'bad3');
  await rejects(readParquetTable(path.join(tmp.dir, 'none.parquet')), 'parquet file not found', 'none.parquet');
  await put('bad4/S/original-00000-of-00001.parquet', stringParquet({ qry: ['a'], pos_text: ['b'] }));
  await rejects(readMmebTrainSubset(path.join(tmp.dir, 'bad4'), 'S'), 'missing columns "qry_image_path", "pos_image_path"');
  // mismatched candidate lists
  await put('bad5/D/test-00000-of-00001.parquet', encodeEvalParquet([{ qry_text: 'q', qry_img_path: '', tgt_text: ['a', 'b'], tgt_img_path: ['x'] }]));
  await rejects(readMmebEvalDataset(path.join(tmp.dir, 'bad5'), 'D'), '1 image paths for 2 candidates');
});

test('text pairs: jsonl, csv and parquet, hard_neg optional, a folder of shards', async () => {
  const expected = [
    { sent0: 'a red circle', sent1: 'a circle, red', hard_neg: 'a blue circle' },
    { sent0: 'two "quoted", words', sent1: 'line\nbreak' },
  ];
  const jsonl = await put('tp/a.jsonl', expected.map((r) => JSON.stringify({ ...r, group: 0 })).join('\n') + '\n\n');
  assert.deepEqual(await readTextPairs(jsonl), expected);
  const csv = await put('tp/b.csv', 'sent0,sent1,hard_neg\r\na red circle,"a circle, red",a blue circle\r\n"two ""quoted"", words","line\nbreak",\r\n');
  assert.deepEqual(await readTextPairs(csv), expected);
  const pq = await put('tp/c.parquet', stringParquet({ sent0: expected.map((r) => r.sent0), sent1: expected.map((r) => r.sent1), hard_neg: ['a blue circle', null] }));
  assert.deepEqual(await readTextPairs(pq), expected);
  assert.deepEqual(await readTextPairs(path.join(tmp.dir, 'tp')), [...expected, ...expected, ...expected]);
  assert.deepEqual(parseCsv('a,b\n1,2'), [['a', 'b'], ['1', '2']]);
});

test('text pairs: errors name the file, line and field', async () => {
  const noSent1 = await put('tpbad/a.jsonl', '{"sent0":"x","sent1":"y"}\n{"sent0":"x"}\n');
  await rejects(readTextPairs(noSent1), 'a.jsonl:2', 'missing "sent1"');
  const badJson = await put('tpbad/b.jsonl', '{"sent0":"x","sent1":"y"}\n{oops\n');
  await rejects(readTextPairs(badJson), 'b.jsonl:2', 'invalid JSON');
  const badType = await put('tpbad/c.jsonl', '{"sent0":1,"sent1":"y"}\n');
  await rejects(readTextPairs(badType), 'c.jsonl:1', '"sent0" must be a string');
  const csv = await put('tpbad/d.csv', 'sentence,other\nx,y\n');
  await rejects(readTextPairs(csv), 'missing column "sent0"');
  const ext = await put('tpbad/e.txt', 'x');
  await rejects(readTextPairs(ext), 'cannot tell the format');
  await rejects(readTextPairs(path.join(tmp.dir, 'nope.jsonl')), 'text-pair file not found');
});
