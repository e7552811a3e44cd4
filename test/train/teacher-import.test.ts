import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { encodeNpy } from '../../src/cli/embed.js';
import { parseRecipe, runRecipe } from '../../src/recipes/index.js';
import { Rng } from '../../src/runtime/rng.js';
import { readTeacherCache } from '../../src/train/teacher-embed.js';
import { decodeNpy, importTeacherCache } from '../../src/train/teacher-import.js';
import { tempDir } from '../helpers.js';
import { makeTinyEmbedder } from '../models/embedder-fixture.js';
import '../../src/train/unime-distill.js';

let dir: string;
let cleanup: () => Promise<void>;
let student: string;
let pairsFile: string;
const DIM = 16;
const PAIRS = Array.from({ length: 10 }, (_, i) => ({
  sent0: `question ${i} about the fox number ${i % 4}`,
  sent1: `answer ${i} the quick brown dog ${i * 3}`,
}));
/** Every text of the data, then two texts the data does not use. */
const TEXTS = [...PAIRS.flatMap((p) => [p.sent0, p.sent1]), 'an unused text', 'another unused text'];

function vectors(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n * DIM }, () => rng.normal());
}
const row = (m: Float32Array, i: number) => Array.from(m.subarray(i * DIM, (i + 1) * DIM));

const FLOAT_LIST = (name: string) =>
  [
    { name, repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    { name: 'element', type: 'FLOAT', repetition_type: 'OPTIONAL' },
  ] as const;

/** LIFT's layout: key (text) + embedding (list<float>). */
async function writeCacheParquet(file: string, keys: string[], rows: number[][]): Promise<void> {
  const buf = parquetWriteBuffer({
    columnData: [
      { name: 'key', data: keys },
      { name: 'embedding', data: rows },
    ],
    schema: [{ name: 'schema', num_children: 2 }, { name: 'key', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' }, ...FLOAT_LIST('embedding')],
  } as Parameters<typeof parquetWriteBuffer>[0]);
  await fsp.writeFile(file, new Uint8Array(buf));
}

const quiet = () => ({ info: (_: string) => {}, warn: (_: string) => {} });

function recipe(name: string, importBlock: string, withDistill: boolean): string {
  return `name: ${name}
seed: 5
output_dir: ${JSON.stringify(path.join(dir, name))}
stages:
  - name: teacher
    kind: teacher-embed
    data:
      path: ${JSON.stringify(pairsFile)}
    batch_size: 1
${importBlock}
${
  withDistill
    ? `  - name: distill
    kind: unime-distill
    model: ${JSON.stringify(student)}
    data:
      path: ${JSON.stringify(pairsFile)}
    prompt_template: "Summarize: <sent> in one word:"
    max_length: 32
    quantization: none
    teacher_cache: \${stages.teacher.output_dir}
    lora: {rank: 4, alpha: 8, dropout: 0, target_modules: all-linear}
    loss: {student_temperature: 0.1, teacher_temperature: 0.1}
    train: {lr: 0.01, epochs: null, max_steps: 2, batch_size: 8, gradcache_chunk_size: 4, warmup_ratio: 0, schedule: constant, log_every: 1, save_every: null}
`
    : ''
}`;
}

async function runTeacher(name: string, importBlock: string, withDistill = false) {
  return runRecipe(parseRecipe(recipe(name, importBlock, withDistill), { file: `${name}.yaml`, env: {} }), { log: quiet() });
}

before(async () => {
  ({ dir, cleanup } = await tempDir());
  student = await makeTinyEmbedder(path.join(dir, 'student'), { seed: 3 });
  pairsFile = path.join(dir, 'pairs.jsonl');
  await fsp.writeFile(pairsFile, PAIRS.map((p) => JSON.stringify(p)).join('\n') + '\n');
});
after(() => cleanup());

test('a LIFT-layout parquet imports into the teacher cache and unime-distill trains on it', async () => {
  const m = vectors(TEXTS.length, 1);
  const file = path.join(dir, 'lift.parquet');
  // reversed order: the cache follows the data's order, not the source's
  const order = TEXTS.map((_, i) => TEXTS.length - 1 - i);
  await writeCacheParquet(file, order.map((i) => TEXTS[i]!), order.map((i) => row(m, i)));
  const run = await runTeacher('from-parquet', `    import: {path: ${JSON.stringify(file)}}`, true);
  assert.deepEqual(run.stages.map((s) => s.status), ['ran', 'ran']);
  const r = (run.stages[0] as { result?: Record<string, unknown> }).result!;
  assert.equal(r.rows, 20);
  assert.equal(r.dim, DIM);
  assert.equal(r.unused_rows, 2);
  assert.equal(r.shards, 3); // batch_size 1 -> 8 rows a shard

  const cache = await readTeacherCache(path.join(dir, 'from-parquet', 'teacher'));
  assert.equal(cache.rows, 20);
  assert.equal(cache.index.shards.length, 3);
  assert.equal(cache.has('an unused text'), false);
  for (let i = 0; i < 20; i++) {
    const v = row(m, i);
    const norm = Math.hypot(...v);
    const got = cache.get(TEXTS[i]!)!;
    for (let j = 0; j < DIM; j++) assert.ok(Math.abs(got[j]! - v[j]! / norm) < 1e-6);
  }
  const d = (run.stages[1] as { result?: Record<string, unknown> }).result!;
  assert.equal(d.steps, 2);
  for (const l of d.losses as number[]) assert.ok(Number.isFinite(l));

  // an id column indexing a key list instead of a key column
  const byId = path.join(dir, 'by-id.parquet');
  const buf = parquetWriteBuffer({
    columnData: [
      { name: 'id', data: order },
      { name: 'embedding', data: order.map((i) => row(m, i)) },
    ],
    schema: [{ name: 'schema', num_children: 2 }, { name: 'id', type: 'INT32', repetition_type: 'REQUIRED' }, ...FLOAT_LIST('embedding')],
  } as Parameters<typeof parquetWriteBuffer>[0]);
  await fsp.writeFile(byId, new Uint8Array(buf));
  const keys = path.join(dir, 'by-id.json');
  await fsp.writeFile(keys, JSON.stringify(TEXTS));
  const out = path.join(dir, 'by-id-cache');
  const r2 = await importTeacherCache({ source: { path: byId, format: 'parquet', keys, normalize: true }, outDir: out, texts: [TEXTS[3]!, TEXTS[0]!], shardRows: 8 });
  assert.equal(r2.unused_rows, TEXTS.length - 2);
  const c2 = await readTeacherCache(out);
  assert.equal(c2.rowOf(TEXTS[3]!), 0);
  const v = row(m, 0);
  const norm = Math.hypot(...v);
  c2.get(TEXTS[0]!)!.forEach((x, j) => assert.ok(Math.abs(x - v[j]! / norm) < 1e-6));
});

test('a float32 .npy with a .txt key list imports as is (normalize: false); float64 and the default key list too', async () => {
  const m = vectors(TEXTS.length, 2);
  const npy = path.join(dir, 'cache.npy');
  await fsp.writeFile(npy, encodeNpy(m, [TEXTS.length, DIM]));
  const keys = path.join(dir, 'texts.txt');
  await fsp.writeFile(keys, TEXTS.join('\n') + '\n');
  const run = await runTeacher('from-npy', `    import: {path: ${JSON.stringify(npy)}, keys: ${JSON.stringify(keys)}, normalize: false}`, true);
  assert.deepEqual(run.stages.map((s) => s.status), ['ran', 'ran']);
  const cache = await readTeacherCache(path.join(dir, 'from-npy', 'teacher'));
  assert.equal(cache.dim, DIM);
  for (let i = 0; i < 20; i++) assert.deepEqual(Array.from(cache.get(TEXTS[i]!)!), row(m, i));

  // a float64 v2.0 .npy whose key list (.jsonl) sits beside it, through the exported function
  const f64 = path.join(dir, 'wide.npy');
  let header = `{'descr': '<f8', 'fortran_order': False, 'shape': (${TEXTS.length}, ${DIM}), }`;
  header += ' '.repeat((64 - ((12 + header.length + 1) % 64)) % 64) + '\n';
  const bytes = new Uint8Array(12 + header.length + m.length * 8);
  bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 2, 0]);
  const view = new DataView(bytes.buffer);
  view.setUint32(8, header.length, true);
  for (let i = 0; i < header.length; i++) bytes[12 + i] = header.charCodeAt(i);
  m.forEach((x, i) => view.setFloat64(12 + header.length + 8 * i, x, true));
  await fsp.writeFile(f64, bytes);
  await fsp.writeFile(path.join(dir, 'wide.jsonl'), TEXTS.map((t) => JSON.stringify(t)).join('\n') + '\n');
  const out = path.join(dir, 'wide-cache');
  const r = await importTeacherCache({ source: { path: f64, format: 'auto', keys: null, normalize: false }, outDir: out, texts: null, shardRows: 5 });
  assert.equal(r.rows, TEXTS.length);
  assert.equal(r.shards, 5);
  const c2 = await readTeacherCache(out);
  assert.deepEqual(Array.from(c2.get('an unused text')!), row(m, 20));
});

test('import errors name the file and field: missing texts, dim mismatch, NaN row, bad .npy header', async () => {
  const m = vectors(TEXTS.length, 3);
  // missing texts: the parquet lacks two of the data's texts
  const short = path.join(dir, 'short.parquet');
  await writeCacheParquet(short, TEXTS.slice(2), TEXTS.slice(2).map((_, i) => row(m, i + 2)));
  await assert.rejects(runTeacher('missing', `    import: {path: ${JSON.stringify(short)}}`), (e: Error & { file?: string; field?: string }) => {
    assert.match(e.message, /2 of the 20 texts of .*pairs\.jsonl \(data\.text_columns\) have no vector in the imported cache/);
    assert.ok(e.message.includes(JSON.stringify(TEXTS[0])), e.message);
    assert.equal(e.file, short);
    assert.equal(e.field, 'key');
    return true;
  });

  // one row of another dimension
  const ragged = path.join(dir, 'ragged.parquet');
  const rows = TEXTS.map((_, i) => row(m, i));
  rows[5] = rows[5]!.slice(0, DIM - 1);
  await writeCacheParquet(ragged, TEXTS, rows);
  await assert.rejects(runTeacher('ragged', `    import: {path: ${JSON.stringify(ragged)}}`), (e: Error & { file?: string; field?: string }) => {
    assert.match(e.message, /row 5 .* has 15 values, row 0 has 16/);
    assert.equal(e.file, ragged);
    assert.equal(e.field, 'embedding');
    return true;
  });

  // a NaN in row 7 of a .npy
  const nan = Float32Array.from(m);
  nan[7 * DIM + 3] = NaN;
  const nanFile = path.join(dir, 'nan.npy');
  await fsp.writeFile(nanFile, encodeNpy(nan, [TEXTS.length, DIM]));
  await fsp.writeFile(path.join(dir, 'nan.txt'), TEXTS.join('\n') + '\n');
  await assert.rejects(runTeacher('nan', `    import: {path: ${JSON.stringify(nanFile)}}`), (e: Error & { file?: string; field?: string }) => {
    assert.match(e.message, /row 7 \(key .*\) holds a non-finite value \(NaN\) at position 3/);
    assert.equal(e.file, nanFile);
    assert.equal(e.field, 'embedding');
    return true;
  });

  // .npy headers: big-endian, Fortran order, not a .npy, truncated data
  const good = encodeNpy(m, [TEXTS.length, DIM]);
  const text = new TextDecoder('latin1').decode(good.subarray(0, 128));
  const patched = (from: string, to: string) => {
    const b = Uint8Array.from(good);
    const at = text.indexOf(from);
    for (let i = 0; i < to.length; i++) b[at + i] = to.charCodeAt(i);
    return b;
  };
  const cases: [Uint8Array, string, RegExp][] = [
    [patched("'<f4'", "'>f4'"), 'descr', /dtype >f4 is not supported/],
    [patched('False', 'True '), 'fortran_order', /Fortran order/],
    [Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]), 'magic', /not a \.npy file/],
    [good.subarray(0, good.length - 4), 'shape', /truncated/],
  ];
  for (const [bytes, field, re] of cases) {
    assert.throws(() => decodeNpy(bytes, 'x.npy'), (e: Error & { file?: string; field?: string }) => {
      assert.match(e.message, re);
      assert.equal(e.file, 'x.npy');
      assert.equal(e.field, field);
      return true;
    });
  }
  // through the stage: the file is named
  const badNpy = path.join(dir, 'bad.npy');
  await fsp.writeFile(badNpy, cases[0]![0]);
  await fsp.writeFile(path.join(dir, 'bad.txt'), TEXTS.join('\n') + '\n');
  await assert.rejects(runTeacher('bad-npy', `    import: {path: ${JSON.stringify(badNpy)}}`), (e: Error & { file?: string; field?: string }) => {
    assert.equal(e.file, badNpy);
    assert.equal(e.field, 'descr');
    return true;
  });
});
