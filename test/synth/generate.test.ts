import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { tempDir } from '../helpers.js';
import { generateSynthetic, META_FILE, TRAIN_PARQUET, EVAL_PARQUET } from '../../tools/synth/generate.js';
import { TASKS, TASK_INFO, captionHolds, type CandidateMeta } from '../../tools/synth/tasks.js';
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

let tmp: { dir: string; cleanup: () => Promise<void> };
let out: string;
let seconds: number;

before(async () => {
  tmp = await tempDir('unime-synth-');
  out = path.join(tmp.dir, 'a');
  const t0 = performance.now();
  await generateSynthetic({ out, seed: 0, size: 'small', models: false });
  seconds = (performance.now() - t0) / 1000;
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

test('the small size is generated in well under 10 s', () => {
  assert.ok(seconds < 10, `took ${seconds.toFixed(2)} s`);
});

test('same seed gives byte-identical files; another seed differs', async () => {
  const b = path.join(tmp.dir, 'b');
  await generateSynthetic({ out: b, seed: 0, size: 'small', models: false });
  const fa = await listFiles(out);
  const fb = await listFiles(b);
  assert.deepEqual(fa, fb);
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
      let m: RegExpExecArray | null;
      if ((m = /What color is the (\w+)\?$/.exec(row.qry_text))) {
        seenKinds.add('colour');
        assert.equal(answer, objs.find((o) => o.shape === m![1])!.colour);
      } else if ((m = /What shape is the (\w+) object\?$/.exec(row.qry_text))) {
        seenKinds.add('shape');
        assert.equal(answer, objs.find((o) => o.colour === m![1])!.shape);
      } else if ((m = /What is (to the left of|to the right of|above|below) the (\w+) (\w+)\?$/.exec(row.qry_text))) {
        seenKinds.add('relation');
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
        seenKinds.add('count');
        assert.equal(answer, ['one', 'two', 'three', 'four'][objs.length - 1]);
      }
    }
  }
  assert.deepEqual([...seenKinds].sort(), ['colour', 'count', 'relation', 'shape']);
});
