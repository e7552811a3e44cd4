import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { tempDir } from '../helpers.js';
import { generateSynthetic, META_FILE, TRAIN_PARQUET, EVAL_PARQUET } from '../../tools/synth/generate.js';
import { TASKS, TASK_INFO, VQA_QUERY_KINDS, captionHolds, type CandidateMeta } from '../../tools/synth/tasks.js';
import { HELD_OUT_COMBOS, inverseRelation, isHeldOut, looseRelationHolds, relation, sceneDiff, type Scene, type SceneObject } from '../../tools/synth/scene.js';
import { pairCaption } from '../../tools/synth/captions.js';
import { cropCell, renderScene, type Image } from '../../tools/synth/render.js';
import { crc32, encodePng } from '../../tools/synth/encode.js';
import { inflateSync } from 'node:zlib';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { repoRoot } from '../helpers.js';
import {
  listMmebEvalDatasets, listMmebTrainSubsets, readMmebEvalDataset, readMmebTrainSubset, readParquetTable, readTextPairs,
} from '../../src/data/mmeb.js';
import { readRetrievalData } from '../../src/eval/retrieval.js';
import { readTemplates, readZeroshotData } from '../../src/eval/zeroshot.js';
import { readSugarcrepe, SUGARCREPE_SUBSETS } from '../../src/eval/sugarcrepe.js';
import { CLIP_SIZES, IMAGE_TEXT_COLUMNS, ZEROSHOT_TEMPLATES, sugarcrepePair } from '../../tools/synth/clip.js';
import { longCaption } from '../../tools/synth/captions.js';
import { randomSceneAny } from '../../tools/synth/scene.js';
import { splitWords, tinyVocabulary } from '../../tools/synth/models.js';
import { Rng } from '../../src/runtime/rng.js';

let tmp: { dir: string; cleanup: () => Promise<void> };
let out: string;

before(async () => {
  tmp = await tempDir('unime-synth-');
  out = path.join(tmp.dir, 'a');
  // (how long it takes is the data stage's log line, not a test: timed unit tests fail on a busy machine)
  await generateSynthetic({ out, seed: 0, size: 'small', models: false });
});
after(() => tmp.cleanup());

async function listFiles(dir: string, base = dir): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p, base)));
    else out.push(path.relative(base, p));
  }
  return out.sort();
}

interface MetaRow {
  row: number;
  group: number;
  template: number | null;
  query_kind?: string;
  query_scene: Scene;
  candidates: CandidateMeta[];
}

async function readMeta(file: string): Promise<MetaRow[]> {
  return (await fsp.readFile(file, 'utf8'))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as MetaRow);
}

function pngOf(img: Image): Buffer {
  return Buffer.from(encodePng(img.width, img.height, img.data));
}

const heldOutWords = HELD_OUT_COMBOS.map(([c, s]) => `${c} ${s}`);

test('same seed gives byte-identical files; another seed differs', async () => {
  const b = path.join(tmp.dir, 'b');
  await generateSynthetic({ out: b, seed: 0, size: 'small', models: false });
  const fa = await listFiles(out);
  const fb = await listFiles(b);
  assert.deepEqual(fa, fb);
  // the CLIP-side outputs are among the byte-identical files
  for (const f of ['image-text/train.parquet', 'image-text/test.parquet', 'image-text/images/train/00000.png', 'image-text/images/test/00000.png', 'suites/retrieval/test.jsonl', 'suites/zeroshot/classnames.txt', 'suites/zeroshot/templates.txt', 'suites/zeroshot/red_circle/00000.png', 'suites/sugarcrepe/swap_att.json', 'suites/sugarcrepe/images/00000.png']) {
    assert.ok(fa.includes(path.join(...f.split('/'))), f);
  }
  for (const f of fa) {
    const [x, y] = await Promise.all([fsp.readFile(path.join(out, f)), fsp.readFile(path.join(b, f))]);
    assert.ok(x.equals(y), `${f} differs between two runs`);
  }
  const c = path.join(tmp.dir, 'c');
  await generateSynthetic({ out: c, seed: 1, size: 'tiny', models: false });
  const t0 = await fsp.readFile(path.join(out, 'text-pairs.jsonl'), 'utf8');
  const t1 = await fsp.readFile(path.join(c, 'text-pairs.jsonl'), 'utf8');
  assert.notEqual(t0.split('\n')[0], t1.split('\n')[0]);
  assert.ok(!fa.some((f) => f.includes('.tmp-')), 'no temp files left behind');
});

test('the folder layout is the one recipes/quickstart.yaml reads', async () => {
  const files = await listFiles(out);
  assert.ok(files.includes('text-pairs.jsonl'));
  assert.ok(files.includes('manifest.json'));
  assert.ok(files.includes(path.join('mmeb-eval', 'images.zip')));
  for (const t of TASKS) {
    assert.ok(files.includes(path.join('mmeb-train', t, TRAIN_PARQUET)), t);
    assert.ok(files.includes(path.join('mmeb-eval', t, EVAL_PARQUET)), t);
    assert.ok(files.includes(path.join('mmeb-eval', `${t}-OOD`, EVAL_PARQUET)), t);
  }
  assert.deepEqual(await listMmebTrainSubsets(path.join(out, 'mmeb-train')), [...TASKS].sort());
});

test('every meta-task is present, IND and OOD, as the manifest says', async () => {
  const m = JSON.parse(await fsp.readFile(path.join(out, 'manifest.json'), 'utf8')) as { eval: { dataset: string; meta_task: string; distribution: string }[] };
  const names = await listMmebEvalDatasets(path.join(out, 'mmeb-eval'));
  assert.deepEqual(names, m.eval.map((d) => d.dataset).sort());
  for (const mt of ['Classification', 'VQA', 'Retrieval', 'Grounding']) {
    for (const dist of ['IND', 'OOD']) assert.ok(m.eval.some((d) => d.meta_task === mt && d.distribution === dist), `${mt} ${dist}`);
  }
  const ret = m.eval.filter((d) => d.meta_task === 'Retrieval').map((d) => d.dataset);
  assert.ok(ret.includes('SynRet-t2i') && ret.includes('SynRet-i2t'), 'retrieval both ways');
  assert.equal(TASK_INFO.SynGrd.metaTask, 'Grounding');
});

test('eval parquet: MMEB columns and types, correct candidate first, images resolvable', async () => {
  const root = path.join(out, 'mmeb-eval');
  for (const name of await listMmebEvalDatasets(root)) {
    const table = await readParquetTable(path.join(root, name, EVAL_PARQUET));
    assert.deepEqual(table.columns, ['qry_text', 'qry_img_path', 'tgt_text', 'tgt_img_path'], name);
    for (const r of table.rows) {
      assert.equal(typeof r.qry_text, 'string');
      assert.equal(typeof r.qry_img_path, 'string');
      assert.ok(Array.isArray(r.tgt_text) && Array.isArray(r.tgt_img_path), `${name}: lists`);
      assert.equal((r.tgt_text as unknown[]).length, (r.tgt_img_path as unknown[]).length);
    }
    const ds = await readMmebEvalDataset(root, name);
    const meta = await readMeta(path.join(root, name, META_FILE));
    assert.equal(meta.length, ds.rows.length);
    for (const [i, row] of ds.rows.entries()) {
      const m = meta[i]!;
      assert.equal(m.candidates[0]!.kind, 'positive', `${name} row ${i}: positive first`);
      assert.ok(m.candidates.slice(1).every((c) => c.kind !== 'positive'));
      assert.equal(new Set(row.tgt_text.map((t, k) => `${t}\u0000${row.tgt_img_path[k]}`)).size, row.tgt_text.length, `${name} row ${i}: candidates distinct`);
      if (row.qry_img_path) await ds.images.locate(row.qry_img_path);
      for (const p of row.tgt_img_path) if (p) await ds.images.locate(p);
      if (name.startsWith('SynCls')) {
        const o = m.query_scene.objects[0]!;
        assert.equal(row.tgt_text[0], `${o.colour} ${o.shape}`);
      }
      if (name.startsWith('SynRet-i2t')) assert.equal(row.tgt_text[0], pairCaption(m.query_scene, m.template!));
      if (name.startsWith('SynRet-t2i')) assert.ok(row.qry_text.endsWith(pairCaption(m.query_scene, m.template!)));
      if (row.qry_img_path) assert.ok(row.qry_text.startsWith('<|image_1|>\n'), 'image token in the query');
      // The images are the scenes the metadata says: query image, t2i positive, grounding target crop.
      if (row.qry_img_path) assert.ok(Buffer.from(await ds.images.read(row.qry_img_path)).equals(pngOf(renderScene(m.query_scene))), `${name} row ${i}: query image`);
      if (name.startsWith('SynRet-t2i')) assert.ok(Buffer.from(await ds.images.read(row.tgt_img_path[0]!)).equals(pngOf(renderScene(m.query_scene))));
      if (name.startsWith('SynGrd')) {
        const crop = cropCell(renderScene(m.query_scene), m.candidates[0]!.cell!);
        assert.ok(Buffer.from(await ds.images.read(row.tgt_img_path[0]!)).equals(pngOf(crop)), `${name} row ${i}: target crop`);
        const expr = /labeled as "the (\w+) (\w+)/.exec(row.qry_text);
        const target = m.query_scene.objects.find((o) => o.cell === m.candidates[0]!.cell)!;
        assert.deepEqual([expr?.[1], expr?.[2]], [target.colour, target.shape], 'the expression names the target');
      }
    }
    await ds.images.close();
  }
});

test('train parquet: MMEB columns, strings, <|image_1|> in image queries, image files exist', async () => {
  const root = path.join(out, 'mmeb-train');
  for (const t of TASKS) {
    const table = await readParquetTable(path.join(root, t, TRAIN_PARQUET));
    assert.deepEqual(table.columns, ['qry', 'qry_image_path', 'pos_text', 'pos_image_path', 'neg_text', 'neg_image_path']);
    const sub = await readMmebTrainSubset(root, t);
    assert.equal(sub.rows.length, table.rows.length);
    for (const r of sub.rows) {
      for (const v of Object.values(r)) assert.equal(typeof v, 'string');
      if (r.qry_image_path) {
        assert.ok(r.qry.includes('<|image_1|>'));
        await fsp.access(path.join(root, r.qry_image_path));
      }
      for (const p of [r.pos_image_path, r.neg_image_path]) if (p) await fsp.access(path.join(root, p));
      assert.ok(r.pos_text !== r.neg_text || r.pos_image_path !== r.neg_image_path, 'negative differs from positive');
    }
    assert.equal((await readMmebTrainSubset(root, t, { cap: 5 })).rows.length, 5);
  }
});

function objectsOf(s: Scene): SceneObject[] {
  return s.objects;
}

test('held-out colour-shape combinations never appear in training or IND data, and every OOD row has one', async () => {
  const texts: string[] = [];
  const scenes: Scene[] = [];
  for (const t of TASKS) {
    const sub = await readMmebTrainSubset(path.join(out, 'mmeb-train'), t);
    for (const r of sub.rows) texts.push(r.qry, r.pos_text, r.neg_text);
    for (const m of await readMeta(path.join(out, 'mmeb-train', t, META_FILE))) {
      scenes.push(m.query_scene, ...m.candidates.flatMap((c) => (c.scene ? [c.scene] : [])));
    }
    const ind = await readMmebEvalDataset(path.join(out, 'mmeb-eval'), t);
    for (const r of ind.rows) texts.push(r.qry_text, ...r.tgt_text);
    for (const m of await readMeta(path.join(out, 'mmeb-eval', t, META_FILE))) {
      scenes.push(m.query_scene, ...m.candidates.flatMap((c) => (c.scene ? [c.scene] : [])));
    }
    for (const m of await readMeta(path.join(out, 'mmeb-eval', `${t}-OOD`, META_FILE))) {
      assert.ok(objectsOf(m.query_scene).some((o) => isHeldOut(o.colour, o.shape)), `${t}-OOD row ${m.row} has no held-out combination`);
    }
  }
  for (const p of await readTextPairs(path.join(out, 'text-pairs.jsonl'))) texts.push(p.sent0, p.sent1, p.hard_neg ?? '');
  for (const s of scenes) for (const o of s.objects) assert.ok(!isHeldOut(o.colour, o.shape), `held-out ${o.colour} ${o.shape} in IND/train`);
  for (const text of texts) for (const w of heldOutWords) assert.ok(!text.includes(w), `"${w}" in IND/train text: ${text}`);
});

test('compositional distractors differ from the positive in exactly the intended attribute or relation', async () => {
  const counts = new Map<string, number>();
  for (const where of ['mmeb-train', 'mmeb-eval']) {
    for (const t of ['SynRet-t2i', 'SynRet-i2t', 'SynGrd']) {
      for (const name of where === 'mmeb-eval' ? [t, `${t}-OOD`] : [t]) {
        for (const m of await readMeta(path.join(out, where, name, META_FILE))) {
          const pos = m.candidates[0]!.scene!;
          for (const c of m.candidates.slice(1)) {
            // No negative caption/image pairing is true, even with relations read loosely.
            if (t === 'SynRet-t2i' && c.scene) assert.ok(!captionHolds(c.scene, pos), `${name} row ${m.row}: ${c.kind} image matches the caption`);
            if (t === 'SynRet-i2t' && c.scene) assert.ok(!captionHolds(pos, c.scene), `${name} row ${m.row}: ${c.kind} caption matches the image`);
            if (!c.scene || c.kind === 'other' || c.kind === 'other-object') continue;
            counts.set(`${t}:${c.kind}`, (counts.get(`${t}:${c.kind}`) ?? 0) + 1);
            const diff = sceneDiff(pos, c.scene);
            const field = c.kind === 'swap-colour' ? 'colour' : c.kind === 'swap-shape' ? 'shape' : 'cell';
            assert.ok(diff.length > 0 && diff.every((d) => d.field === field), `${name} row ${m.row} ${c.kind}: ${JSON.stringify(diff)}`);
            if (t === 'SynGrd') {
              assert.equal(diff.length, 1, 'grounding: only the referred object changes');
              assert.equal(c.cell, m.candidates[0]!.cell, 'same region');
            } else {
              assert.deepEqual(diff.map((d) => d.index), [0, 1], 'the described pair swaps');
              if (c.kind === 'swap-relation') {
                const [a, b] = pos.objects as [SceneObject, SceneObject];
                const [a2, b2] = c.scene.objects as [SceneObject, SceneObject];
                assert.equal(relation(a2, b2), inverseRelation(relation(a, b)!));
              }
            }
          }
        }
      }
    }
  }
  for (const k of ['SynRet-t2i:swap-colour', 'SynRet-t2i:swap-shape', 'SynRet-t2i:swap-relation', 'SynRet-i2t:swap-colour', 'SynRet-i2t:swap-relation', 'SynGrd:swap-colour', 'SynGrd:swap-shape']) {
    assert.ok((counts.get(k) ?? 0) > 0, `no ${k} distractors`);
  }
  // Classification hard negatives: same shape other colour, or same colour other shape.
  for (const m of await readMeta(path.join(out, 'mmeb-eval', 'SynCls', META_FILE))) {
    const [pc, ps] = m.candidates[0]!.label!.split(' ');
    for (const c of m.candidates) {
      const [cc, cs] = c.label!.split(' ');
      if (c.kind === 'same-shape') assert.ok(cs === ps && cc !== pc);
      if (c.kind === 'same-colour') assert.ok(cc === pc && cs !== ps);
    }
  }
});

test('paraphrase duplicates (true false negatives) are recorded by group', async () => {
  for (const t of ['SynRet-t2i', 'SynRet-i2t']) {
    const meta = await readMeta(path.join(out, 'mmeb-train', t, META_FILE));
    const sub = await readMmebTrainSubset(path.join(out, 'mmeb-train'), t);
    const byGroup = new Map<number, number[]>();
    meta.forEach((m, i) => byGroup.set(m.group, [...(byGroup.get(m.group) ?? []), i]));
    const dups = [...byGroup.values()].filter((rows) => rows.length > 1);
    assert.ok(dups.length >= 3, `${t}: only ${dups.length} duplicate groups`);
    for (const rows of dups) {
      const first = meta[rows[0]!]!;
      for (const i of rows.slice(1)) {
        assert.deepEqual(meta[i]!.query_scene, first.query_scene);
        assert.notEqual(meta[i]!.template, first.template, 'a paraphrase, not a copy');
        const a = sub.rows[rows[0]!]!, b = sub.rows[i]!;
        if (t === 'SynRet-t2i') {
          assert.equal(a.pos_image_path, b.pos_image_path);
          assert.notEqual(a.qry, b.qry);
        } else {
          assert.equal(a.qry_image_path, b.qry_image_path);
          assert.notEqual(a.pos_text, b.pos_text);
        }
      }
    }
  }
  const lines = (await fsp.readFile(path.join(out, 'text-pairs.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { sent0: string; sent1: string; hard_neg: string; group: number });
  const groups = new Map<number, number>();
  for (const l of lines) {
    groups.set(l.group, (groups.get(l.group) ?? 0) + 1);
    assert.notEqual(l.sent0, l.sent1);
    assert.notEqual(l.sent0, l.hard_neg);
  }
  assert.ok([...groups.values()].some((n) => n > 1), 'text pairs hold paraphrase duplicates');
});

test('PNG encoder: valid chunks and CRCs, pixels inflate back', () => {
  const img = renderScene({ objects: [{ shape: 'star', colour: 'red', size: 'large', cell: 0, dx: 0, dy: 0 }] });
  const png = Buffer.from(encodePng(img.width, img.height, img.data));
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  let off = 8;
  const idat: Buffer[] = [];
  const types: string[] = [];
  while (off < png.length) {
    const len = png.readUInt32BE(off);
    const type = png.toString('ascii', off + 4, off + 8);
    assert.equal(png.readUInt32BE(off + 8 + len), crc32(png.subarray(off + 4, off + 8 + len)), `${type} crc`);
    if (type === 'IDAT') idat.push(png.subarray(off + 8, off + 8 + len));
    types.push(type);
    off += 12 + len;
  }
  assert.deepEqual(types, ['IHDR', 'IDAT', 'IEND']);
  const raw = inflateSync(Buffer.concat(idat));
  const stride = img.width * 3;
  for (let y = 0; y < img.height; y++) {
    assert.equal(raw[y * (stride + 1)], 0);
    assert.ok(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)).equals(Buffer.from(img.data.subarray(y * stride, (y + 1) * stride))));
  }
  // Something red was drawn, and the far corner is background.
  const px = (x: number, y: number) => [...img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3)];
  assert.deepEqual(px(12, 12), [220, 40, 40]);
  assert.deepEqual(px(47, 47), [236, 236, 236]);
});

test('CLI: generates, and rejects bad arguments with a clear message', async () => {
  const run = promisify(execFile);
  const script = path.join(repoRoot, 'dist', 'tools', 'synth', 'generate.js');
  const dir = path.join(tmp.dir, 'cli');
  const { stdout } = await run(process.execPath, [script, '--out', dir, '--seed', '3', '--size', 'tiny']);
  assert.match(stdout, /wrote \d+ files/);
  await fsp.access(path.join(dir, 'mmeb-eval', 'SynVQA-OOD', EVAL_PARQUET));
  // the CLI writes the tiny models too (tools/synth/models.ts; test/synth/models.test.ts checks them)
  assert.match(stdout, /tiny-mllm \(\d+\.\d+M parameters\), tiny-teacher/);
  await fsp.access(path.join(dir, 'models', 'tiny-mllm', 'model.safetensors'));
  await fsp.access(path.join(dir, 'models', 'tiny-teacher', 'tokenizer.json'));
  await assert.rejects(run(process.execPath, [script, '--size', 'huge']), (e: { stderr: string; code: number }) => {
    assert.equal(e.code, 1);
    assert.match(e.stderr, /--size must be one of tiny, small, medium, got "huge"/);
    return true;
  });
  await assert.rejects(run(process.execPath, [script, '--seed', 'x']), /--seed must be an integer/);
});

test('VQA answers are right for their scene, and no other candidate is a defensible answer', async () => {
  const rels: Record<string, 'left of' | 'right of' | 'above' | 'below'> = { 'to the left of': 'left of', 'to the right of': 'right of', above: 'above', below: 'below' };
  const seenKinds = new Set<string>();
  for (const name of ['SynVQA', 'SynVQA-OOD']) {
    const ds = await readMmebEvalDataset(path.join(out, 'mmeb-eval'), name);
    const meta = await readMeta(path.join(out, 'mmeb-eval', name, META_FILE));
    for (const [i, row] of ds.rows.entries()) {
      const objs = meta[i]!.query_scene.objects;
      const [answer, ...others] = row.tgt_text as [string, ...string[]];
      assert.equal(new Set(row.tgt_text).size, row.tgt_text.length);
      let asked = '';
      let m: RegExpExecArray | null;
      if ((m = /What color is the (\w+)\?$/.exec(row.qry_text))) {
        seenKinds.add((asked = 'colour-of-shape'));
        assert.equal(answer, objs.find((o) => o.shape === m![1])!.colour);
      } else if ((m = /What shape is the (\w+) object\?$/.exec(row.qry_text))) {
        seenKinds.add((asked = 'shape-of-colour'));
        assert.equal(answer, objs.find((o) => o.colour === m![1])!.shape);
      } else if ((m = /What is (to the left of|to the right of|above|below) the (\w+) (\w+)\?$/.exec(row.qry_text))) {
        seenKinds.add((asked = 'relation'));
        const r = rels[m[1]!]!;
        const b = objs.find((o) => o.colour === m![2] && o.shape === m![3])!;
        const a = objs.find((o) => `${o.colour} ${o.shape}` === answer)!;
        assert.equal(relation(a, b), r);
        for (const t of others) {
          const o = objs.find((x) => `${x.colour} ${x.shape}` === t);
          if (o) assert.ok(o === b || !looseRelationHolds(o, b, r), `${name} row ${i}: "${t}" is also ${r} the ${m[2]} ${m[3]}`);
        }
      } else {
        assert.match(row.qry_text, /How many shapes are there\?$/);
        seenKinds.add((asked = 'count'));
        assert.equal(answer, ['one', 'two', 'three', 'four'][objs.length - 1]);
        // every count offered is one a scene of the 2x2 grid can have
        for (const t of others) assert.ok(['one', 'two', 'three', 'four'].includes(t), `${name} row ${i}: impossible count "${t}"`);
      }
      // the annotation names the question the text asks (the eval scores each kind apart)
      assert.equal(meta[i]!.query_kind, asked, `${name} row ${i}: query_kind`);
    }
  }
  assert.deepEqual([...seenKinds].sort(), [...VQA_QUERY_KINDS].sort());
  // other datasets ask one kind of query and carry no query_kind
  for (const line of (await readMeta(path.join(out, 'mmeb-eval', 'SynCls', META_FILE))).slice(0, 5)) assert.equal(line.query_kind, undefined);
});

// ---------------------------------------------------------------------------------------------
// CLIP-side outputs: image-text pairs and the retrieval / zero-shot / SugarCrepe suites

interface ImageTextRecord {
  image: string;
  caption: string;
  neg_caption: string;
  long_caption: string;
  key: string;
  ood: boolean;
}

async function readImageText(root: string, split: 'train' | 'test'): Promise<ImageTextRecord[]> {
  const table = await readParquetTable(path.join(root, 'image-text', `${split}.parquet`));
  assert.deepEqual(table.columns, [...IMAGE_TEXT_COLUMNS]);
  return table.rows as unknown as ImageTextRecord[];
}

const hasHeldOutWords = (text: string) => heldOutWords.some((w) => text.includes(w));

test('image-text pairs: columns, counts, images exist, captions name both objects and their relation', async () => {
  const train = await readImageText(out, 'train');
  const test_ = await readImageText(out, 'test');
  assert.equal(train.length, CLIP_SIZES.small.train + CLIP_SIZES.small.single);
  assert.equal(test_.length, CLIP_SIZES.small.test);
  const keys = new Set<string>();
  const phrase = /\b(small|large) (red|green|blue|yellow|purple|orange) (circle|square|triangle|star)\b/g;
  for (const [i, r] of [...train, ...test_].entries()) {
    for (const k of ['image', 'caption', 'neg_caption', 'long_caption', 'key'] as const) assert.equal(typeof r[k], 'string', k);
    assert.equal(typeof r.ood, 'boolean');
    assert.match(r.image, /^images\/(train|test)\/\d{5}\.png$/);
    await fsp.access(path.join(out, 'image-text', r.image));
    keys.add(r.key);
    const objs = [...r.long_caption.matchAll(/\b(small|large) (red|green|blue|yellow|purple|orange) (circle|square|triangle|star) (above|below) on the (left|right)\b/g)];
    if (i >= CLIP_SIZES.small.train && i < train.length) {
      // the single-object rows after the pair rows: one "size colour shape" phrase, no relation
      assert.equal([...r.caption.matchAll(phrase)].length, 1, r.caption);
      assert.doesNotMatch(r.caption, /left|right|above|below/);
      assert.ok(r.long_caption.startsWith('a picture showing one shape: ') && objs.length === 1, r.long_caption);
      continue;
    }
    // the short caption: two "size colour shape" phrases and a relation
    assert.equal([...r.caption.matchAll(phrase)].length, 2, r.caption);
    assert.match(r.caption, /left|right|above|below/);
    // the long caption: every object (2-4) with size, colour, shape and place, then the pair's relation
    const n = ['two', 'three', 'four'].indexOf(/^a picture showing (\w+) shapes: /.exec(r.long_caption)?.[1] ?? '') + 2;
    assert.ok(n >= 2 && objs.length === n, r.long_caption);
    assert.match(r.long_caption, /\. the \w+ \w+ is (to the left of|to the right of|above|below) the \w+ \w+\.$/);
  }
  assert.equal(keys.size, train.length + test_.length, 'keys are unique');
});

test('image-text hard negatives: the caption with one shape word replaced by a shape the pair lacks, so false for the image', async () => {
  const shapeRe = /\b(circle|square|triangle|star)\b/g;
  const replacedAt = [0, 0];
  for (const r of [...(await readImageText(out, 'train')), ...(await readImageText(out, 'test'))]) {
    const pos = r.caption.split(' '), neg = r.neg_caption.split(' ');
    assert.equal(neg.length, pos.length, r.neg_caption);
    const diff = pos.flatMap((w, i) => (w === neg[i] ? [] : [i]));
    assert.equal(diff.length, 1, `${r.caption} | ${r.neg_caption}`);
    const at = diff[0]!;
    assert.match(pos[at]!, /^(circle|square|triangle|star)$/);
    // the new shape is neither object's, and the described colour's object has another shape in the image
    const pairShapes = [...r.caption.matchAll(shapeRe)].map((m) => m[1]);
    assert.ok(!pairShapes.includes(neg[at]), `${neg[at]} is one of the pair's shapes: ${r.caption}`);
    const colour = pos[at - 1]!;
    assert.ok(!r.long_caption.includes(`${colour} ${neg[at]}`), `${r.neg_caption} is true of ${r.long_caption}`);
    replacedAt[pairShapes.indexOf(pos[at]) as 0 | 1]! += 1;
  }
  assert.ok(replacedAt[0]! > 0 && replacedAt[1]! > 0, `both objects get replaced: ${replacedAt.join('/')}`);
});

test('image-text: train holds no held-out combination; test has some, flagged ood', async () => {
  const train = await readImageText(out, 'train');
  for (const r of train) {
    assert.equal(r.ood, false);
    assert.ok(!hasHeldOutWords(r.caption) && !hasHeldOutWords(r.neg_caption) && !hasHeldOutWords(r.long_caption), `held-out combination in train: ${r.long_caption} / ${r.neg_caption}`);
  }
  const test_ = await readImageText(out, 'test');
  const ood = test_.filter((r) => r.ood);
  assert.ok(ood.length > 0 && ood.length < test_.length, `${ood.length} OOD rows of ${test_.length}`);
  // the long caption lists every object, so it holds a held-out combination exactly when the row is OOD
  for (const r of test_) assert.equal(hasHeldOutWords(r.long_caption), r.ood, r.long_caption);
  const m = JSON.parse(await fsp.readFile(path.join(out, 'manifest.json'), 'utf8')) as { image_text: { test: { rows: number; ood_rows: number }; train: { rows: number } } };
  assert.equal(m.image_text.train.rows, train.length);
  assert.deepEqual([m.image_text.test.rows, m.image_text.test.ood_rows], [test_.length, ood.length]);
});

test('retrieval suite loads through readRetrievalData: 2 paraphrases per image-text test image', async () => {
  const d = await readRetrievalData(path.join(out, 'suites', 'retrieval'));
  assert.equal(d.format, 'table');
  assert.equal(d.images.length, CLIP_SIZES.small.test);
  assert.equal(d.captions.length, 2 * CLIP_SIZES.small.test);
  const testImages = new Set((await readImageText(out, 'test')).map((r) => path.resolve(out, 'image-text', r.image)));
  for (const img of d.images) assert.ok(testImages.has(img), img);
  for (let i = 0; i < d.images.length; i++) {
    const caps = d.captions.filter((_, k) => d.captionImage[k] === i);
    assert.equal(caps.length, 2);
    assert.notEqual(caps[0], caps[1], 'two different paraphrases');
  }
  assert.equal(new Set(d.captions).size, d.captions.length, 'no caption is shared by two images');
});

test('zero-shot suite loads through readZeroshotData: 24 colour-shape classes, names and templates', async () => {
  const dir = path.join(out, 'suites', 'zeroshot');
  const d = await readZeroshotData(dir, { classNames: path.join(dir, 'classnames.txt') });
  assert.equal(d.format, 'imagefolder');
  assert.equal(d.classNames.length, 24);
  assert.equal(d.images.length, 24 * CLIP_SIZES.small.zeroshotPerClass);
  const folders = (await fsp.readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  assert.deepEqual(d.classNames, folders.map((f) => f.replace('_', ' ')));
  assert.ok(d.classNames.includes('red circle') && d.classNames.includes('green circle'));
  for (let c = 0; c < 24; c++) assert.equal([...d.labels].filter((y) => y === c).length, CLIP_SIZES.small.zeroshotPerClass);
  const first = d.images[0]!;
  assert.ok(first.includes(`${folders[0]}${path.sep}`));
  assert.deepEqual(await readTemplates(path.join(dir, 'templates.txt')), [...ZEROSHOT_TEMPLATES]);
});

test('SugarCrepe suite loads through readSugarcrepe: seven subsets, negatives differ and are false', async () => {
  const d = await readSugarcrepe(path.join(out, 'suites', 'sugarcrepe'));
  assert.deepEqual(d.missing, []);
  assert.equal(d.imageDir, path.join(out, 'suites', 'sugarcrepe', 'images'));
  assert.deepEqual(d.subsets.map((s) => s.name), [...SUGARCREPE_SUBSETS]);
  const words = (t: string) => t.split(' ').sort().join(' ');
  for (const s of d.subsets) {
    assert.equal(s.samples.length, CLIP_SIZES.small.sugarcrepe, s.name);
    for (const x of s.samples) {
      assert.notEqual(x.caption, x.negative, `${s.name} ${x.id}`);
      await fsp.access(x.image);
      if (s.name.startsWith('swap')) assert.equal(words(x.caption), words(x.negative), 'a swap keeps the words');
      if (s.name.startsWith('add')) assert.ok(x.negative.split(' ').length > x.caption.split(' ').length, 'an addition adds words');
      if (s.name === 'replace_att' || s.name === 'replace_obj') assert.equal(x.negative.split(' ').length, x.caption.split(' ').length);
    }
  }
});

test('sugarcrepePair: every edit is false for its scene, even with relations read loosely', () => {
  const rng = new Rng(7);
  const np = /^a (?:(small|large) )?(\w+) (\w+) (to the left of|to the right of|above|below) a (?:(small|large) )?(\w+) (\w+)(?: and a (\w+) (\w+))?$/;
  const rels: Record<string, 'left of' | 'right of' | 'above' | 'below'> = { 'to the left of': 'left of', 'to the right of': 'right of', above: 'above', below: 'below' };
  const holds = (scene: Scene, text: string) => {
    const m = np.exec(text);
    assert.ok(m, text);
    const find = (size: string | undefined, colour: string, shape: string) => scene.objects.find((o) => o.colour === colour && o.shape === shape && (size === undefined || o.size === size));
    const a = find(m[1], m[2]!, m[3]!), b = find(m[5], m[6]!, m[7]!);
    const extra = m[8] === undefined || find(undefined, m[8], m[9]!) !== undefined;
    return a !== undefined && b !== undefined && extra && looseRelationHolds(a, b, rels[m[4]!]!);
  };
  for (let i = 0; i < 200; i++) {
    const scene = randomSceneAny(rng, 2 + rng.int(3));
    for (const subset of SUGARCREPE_SUBSETS) {
      const { caption, negative } = sugarcrepePair(rng, scene, subset);
      assert.ok(holds(scene, caption), `${subset}: caption false: ${caption}`);
      assert.ok(!holds(scene, negative), `${subset}: negative true: ${negative} (caption ${caption})`);
    }
  }
});

test('longCaption: every object with size, colour, shape and place, then the relation', () => {
  const scene: Scene = {
    objects: [
      { shape: 'circle', colour: 'red', size: 'small', cell: 1, dx: 0, dy: 0 },
      { shape: 'square', colour: 'blue', size: 'large', cell: 0, dx: 0, dy: 0 },
      { shape: 'star', colour: 'green', size: 'small', cell: 3, dx: 0, dy: 0 },
    ],
  };
  assert.equal(
    longCaption(scene),
    'a picture showing three shapes: a large blue square above on the left, a small red circle above on the right and a small green star below on the right. the red circle is to the right of the blue square.',
  );
});

test('every new text is in the tiny tokenizer\'s vocabulary (no <unk>)', async () => {
  const vocab = new Set(tinyVocabulary());
  const texts: string[] = [];
  for (const split of ['train', 'test'] as const) for (const r of await readImageText(out, split)) texts.push(r.caption, r.long_caption);
  for (const l of (await fsp.readFile(path.join(out, 'suites', 'retrieval', 'test.jsonl'), 'utf8')).split('\n').filter(Boolean)) texts.push(...(JSON.parse(l) as { captions: string[] }).captions);
  const names = (await fsp.readFile(path.join(out, 'suites', 'zeroshot', 'classnames.txt'), 'utf8')).split('\n').filter(Boolean);
  for (const t of ZEROSHOT_TEMPLATES) for (const n of names) texts.push(t.replace('{}', n));
  const sc = await readSugarcrepe(path.join(out, 'suites', 'sugarcrepe'));
  for (const s of sc.subsets) for (const x of s.samples) texts.push(x.caption, x.negative);
  for (const t of texts) for (const w of splitWords(t)) assert.ok(vocab.has(w), `"${w}" (in ${JSON.stringify(t)}) is not in the tiny vocabulary`);
});

test('CLIP-side row counts scale with --size (tiny) and the manifest lists them', async () => {
  const dir = path.join(tmp.dir, 'tiny-clip');
  const s = await generateSynthetic({ out: dir, seed: 0, size: 'tiny', models: false });
  assert.equal((await readImageText(dir, 'train')).length, 64 + 16);
  assert.equal((await readImageText(dir, 'test')).length, 32);
  assert.equal((await readRetrievalData(path.join(dir, 'suites', 'retrieval'))).images.length, 32);
  const zs = path.join(dir, 'suites', 'zeroshot');
  assert.equal((await readZeroshotData(zs, { classNames: path.join(zs, 'classnames.txt') })).images.length, 48);
  const sc = await readSugarcrepe(path.join(dir, 'suites', 'sugarcrepe'));
  assert.ok(sc.subsets.every((x) => x.samples.length === 8));
  const m = JSON.parse(await fsp.readFile(path.join(dir, 'manifest.json'), 'utf8')) as {
    image_text: { columns: string[]; train: { path: string; rows: number }; test: { path: string; rows: number; ood_rows: number } };
    suites: { retrieval: { path: string; images: number; captions: number }; zeroshot: { classes: number; images: number; held_out_classes: string[] }; sugarcrepe: { subsets: Record<string, number>; image_count: number } };
  };
  assert.deepEqual(m.image_text.columns, [...IMAGE_TEXT_COLUMNS]);
  assert.deepEqual([m.image_text.train.rows, m.image_text.test.rows], [64 + 16, 32]);
  assert.equal(m.image_text.test.ood_rows, s.clip.testOod);
  assert.deepEqual([m.suites.retrieval.images, m.suites.retrieval.captions], [32, 64]);
  assert.deepEqual([m.suites.zeroshot.classes, m.suites.zeroshot.images], [24, 48]);
  assert.deepEqual(m.suites.zeroshot.held_out_classes.sort(), [...heldOutWords].sort());
  assert.deepEqual(Object.values(m.suites.sugarcrepe.subsets), Array(7).fill(8));
  await fsp.access(path.join(dir, m.image_text.train.path));
  await fsp.access(path.join(dir, m.suites.retrieval.path));
});
