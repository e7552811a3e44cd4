import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { resolveTemplate, TextEmbedder } from '../../src/models/text-embedder.js';
import { multimodalPrompt } from '../../src/cli/embed.js';
import { MultimodalEmbedder } from '../../src/models/mllm/embedder.js';
import { loadLlava } from '../../src/models/mllm/llava.js';
import { applyLora, saveLoraAdapter } from '../../src/models/peft/index.js';
import { tf } from '../../src/runtime/tf.js';
import { fixture, tempDir } from '../helpers.js';
import { makeTinyEmbedder } from '../models/embedder-fixture.js';
import { runCli } from './run-cli.js';

let dir: string;
let model: string;
let cleanup: () => Promise<void>;
const LLAVA = fixture('llava', 'llava-tiny');
before(async () => {
  ({ dir, cleanup } = await tempDir());
  model = await makeTinyEmbedder(path.join(dir, 'model'));
});
after(() => cleanup());

/** Parse a .npy v1 file holding little-endian float32. */
function parseNpy(buf: Buffer): { shape: number[]; data: Float32Array } {
  assert.deepEqual([...buf.subarray(0, 8)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  const hlen = buf.readUInt16LE(8);
  assert.equal((10 + hlen) % 64, 0, 'header padded to 64 bytes');
  const header = buf.subarray(10, 10 + hlen).toString('latin1');
  assert.match(header, /'descr': '<f4'/);
  assert.match(header, /'fortran_order': False/);
  assert.ok(header.endsWith('\n'));
  const shape = /'shape': \(([^)]*)\)/.exec(header)![1]!.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const bytes = buf.subarray(10 + hlen);
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  return { shape, data };
}

test('unime embed writes jsonl rows {text, embedding} equal to the library, and a summary on stderr', async () => {
  const out = path.join(dir, 'out.jsonl');
  const r = await runCli(['embed', '--model', model, '--text', 'hello world', '--text', 'the lazy dog', '--out', out, '--device', 'cpu', '--pooling', 'mean']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /embedded 2 texts, dim 32, [\d.]+ embeddings\/s/);
  const rows = (await fsp.readFile(out, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { text: string; embedding: number[] });
  assert.deepEqual(rows.map((x) => x.text), ['hello world', 'the lazy dog']);
  const emb = await TextEmbedder.load(model, { pooling: 'mean' });
  try {
    const want = await emb.embed(['hello world', 'the lazy dog']);
    rows.forEach((row, i) => {
      assert.equal(row.embedding.length, 32);
      row.embedding.forEach((v, j) => assert.ok(Math.abs(v - want[i * 32 + j]!) < 1e-5));
    });
  } finally {
    emb.dispose();
  }
  // without --out: jsonl on stdout
  const s = await runCli(['embed', '--model', model, '--text', 'hi', '--device', 'cpu']);
  assert.equal(s.code, 0, s.stderr);
  assert.equal(JSON.parse(s.stdout.trim()).embedding.length, 32);
});

test('unime embed --bidirectional: attention both ways with the adapters merged, as the teacher-embed stage runs a caption-contrastive teacher', async () => {
  const texts = ['hello world', 'the lazy dog'];
  const stage = path.join(dir, 'teacher-stage');
  {
    const t = await TextEmbedder.load(model, { pooling: 'mean' });
    const adapter = applyLora(t.decoder, { r: 2, alpha: 4, targetModules: ['q_proj', 'v_proj'] });
    for (const l of adapter.layers) l.loraB.assign(tf.randomNormal(l.loraB.shape, 0, 0.3, 'float32', 5));
    await saveLoraAdapter(path.join(stage, 'adapter'), t.decoder);
    t.dispose();
  }
  const cli = async (extra: string[]) => {
    const r = await runCli(['embed', '--model', model, '--text', texts[0]!, '--text', texts[1]!, '--pooling', 'mean', '--device', 'cpu', ...extra]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim().split('\n').flatMap((l) => (JSON.parse(l) as { embedding: number[] }).embedding);
  };
  const bi = await cli(['--bidirectional', '--adapter', stage]);
  const causal = await cli(['--adapter', stage]);
  const emb = await TextEmbedder.load(model, { pooling: 'mean' });
  try {
    emb.decoder.bidirectional = true;
    const { mergeAdapterChain } = await import('../../src/models/peft/chain.js');
    await mergeAdapterChain(emb.decoder, [path.join(stage, 'adapter')]);
    const want = await emb.embed(texts);
    assert.equal(bi.length, want.length);
    bi.forEach((v, j) => assert.ok(Math.abs(v - want[j]!) < 1e-5, `component ${j}`));
  } finally {
    emb.dispose();
  }
  assert.ok(Math.max(...bi.map((v, j) => Math.abs(v - causal[j]!))) > 1e-3, 'bidirectional attention changes the embedding');
  const img = await runCli(['embed', '--model', model, '--bidirectional', '--text', 'a', '--image', fixture('llava', 'images', 'red-square.png')]);
  assert.equal(img.code, 2, img.stderr);
  assert.match(img.stderr, /--bidirectional embeds texts only, and 1 input has an image/);
});

test('unime embed writes a float32 .npy with a v1 header, from --input jsonl and txt', async () => {
  const jsonl = path.join(dir, 'in.jsonl');
  await fsp.writeFile(jsonl, ['{"text": "one"}', '{"text": "two two"}', '', '{"text": "three three three"}'].join('\n'));
  const txt = path.join(dir, 'in.txt');
  await fsp.writeFile(txt, 'one\ntwo two\nthree three three\n');
  const a = path.join(dir, 'a.npy');
  const b = path.join(dir, 'b.npy');
  const r1 = await runCli(['embed', '--model', model, '--input', jsonl, '--out', a, '--batch-size', '2', '--template', 'phi3.5-v', '--device', 'cpu']);
  assert.equal(r1.code, 0, r1.stderr);
  const r2 = await runCli(['embed', '--model', model, '--input', txt, '--out', b, '--template', 'phi3.5-v', '--device', 'cpu']);
  assert.equal(r2.code, 0, r2.stderr);
  const na = parseNpy(await fsp.readFile(a));
  const nb = parseNpy(await fsp.readFile(b));
  assert.deepEqual(na.shape, [3, 32]);
  assert.deepEqual(nb.shape, [3, 32]);
  for (let i = 0; i < na.data.length; i++) assert.ok(Math.abs(na.data[i]! - nb.data[i]!) < 1e-5);
  for (let r = 0; r < 3; r++) {
    let n = 0;
    for (let j = 0; j < 32; j++) n += na.data[r * 32 + j]! ** 2;
    assert.ok(Math.abs(Math.sqrt(n) - 1) < 1e-5);
  }
});

test('unime embed errors clearly', async () => {
  const missing = await runCli(['embed', '--model', path.join(dir, 'nope'), '--text', 'hello']);
  assert.equal(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /no such model/);
  const none = await runCli(['embed', '--model', model]);
  assert.equal(none.code, 2, none.stderr);
  assert.match(none.stderr, /nothing to embed/);
  const img = await runCli(['embed', '--model', model, '--image', fixture('llava', 'images', 'red-square.png'), '--device', 'cpu']);
  assert.equal(img.code, 2, img.stderr);
  assert.match(img.stderr, /takes text only/);
  const imgRow = path.join(dir, 'img.jsonl');
  await fsp.writeFile(imgRow, '{"text": "a cat", "image": "cat.png"}\n');
  const img2 = await runCli(['embed', '--model', model, '--input', imgRow]);
  assert.equal(img2.code, 2, img2.stderr);
  assert.match(img2.stderr, /no such image file/);
  assert.ok(img2.stderr.includes(path.join(dir, 'cat.png')), 'jsonl image paths are relative to the jsonl file');
  const pairs = await runCli(['embed', '--model', LLAVA, '--text', 'a', '--text', 'b', '--image', fixture('llava', 'images', 'red-square.png')]);
  assert.equal(pairs.code, 2, pairs.stderr);
  assert.match(pairs.stderr, /2 --text and 1 --image/);
  const noRow = path.join(dir, 'norow.jsonl');
  await fsp.writeFile(noRow, '{"caption": "x"}\n');
  const bad = await runCli(['embed', '--model', LLAVA, '--input', noRow]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /norow\.jsonl:1: the row has no "text" string and no "image"/);
  const marker = await runCli(['embed', '--model', LLAVA, '--text', 'see <image>', '--device', 'cpu']);
  assert.equal(marker.code, 2, marker.stderr);
  assert.match(marker.stderr, /image marker but no image/);
  const badOut = await runCli(['embed', '--model', model, '--text', 'x', '--out', path.join(dir, 'x.csv')]);
  assert.equal(badOut.code, 2);
  assert.match(badOut.stderr, /\.jsonl or \*\.npy/);
  for (const r of [missing, none, img, img2, pairs, bad, marker, badOut]) assert.equal(r.stdout, '');
});

interface LlavaReference {
  cases: { text: string; image: string | null }[];
  models: Record<string, { embeddings: number[][] }>;
}

test('unime embed --image on a LLaVA checkpoint: text+image pairs match the PyTorch reference', async () => {
  const ref = JSON.parse(await fsp.readFile(fixture('llava', 'reference.json'), 'utf8')) as LlavaReference;
  const want = ref.models['llava-tiny']!.embeddings;
  const out = path.join(dir, 'llava.jsonl');
  const args = ['embed', '--model', LLAVA, '--out', out, '--device', 'cpu'];
  for (const i of [1, 2]) args.push('--text', ref.cases[i]!.text, '--image', fixture('llava', 'images', ref.cases[i]!.image!));
  const r = await runCli(args);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /embedded 2 inputs \(2 with an image\), dim 12/);
  const rows = (await fsp.readFile(out, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { text: string; image: string; embedding: number[] });
  assert.deepEqual(rows.map((x) => x.text), [ref.cases[1]!.text, ref.cases[2]!.text]);
  assert.equal(rows[0]!.image, fixture('llava', 'images', 'red-square.png'));
  rows.forEach((row, k) => {
    const w = want[k + 1]!;
    assert.equal(row.embedding.length, w.length);
    row.embedding.forEach((v, j) => assert.ok(Math.abs(v - w[j]!) < 1e-4, `row ${k} dim ${j}: ${v} vs ${w[j]}`));
  });
});

test('unime embed --input jsonl mixing text, image and text+image rows writes .npy equal to the library', async () => {
  const imgDir = path.join(dir, 'imgs');
  await fsp.mkdir(imgDir, { recursive: true });
  await fsp.copyFile(fixture('llava', 'images', 'tall-stripes.png'), path.join(imgDir, 'tall.png'));
  const jsonl = path.join(dir, 'mixed.jsonl');
  await fsp.writeFile(jsonl, ['{"text": "a photo of a red cube"}', '{"image": "imgs/tall.png"}', '{"text": "<|image_1|> what color?", "image": "imgs/tall.png"}'].join('\n') + '\n');
  const npy = path.join(dir, 'mixed.npy');
  const r = await runCli(['embed', '--model', LLAVA, '--input', jsonl, '--out', npy, '--batch-size', '2', '--device', 'cpu']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /embedded 3 inputs \(2 with an image\), dim 12/);
  const got = parseNpy(await fsp.readFile(npy));
  assert.deepEqual(got.shape, [3, 12]);
  const emb = await MultimodalEmbedder.load(LLAVA);
  try {
    const tall = path.join(imgDir, 'tall.png');
    const want = await emb.embed([{ text: 'a photo of a red cube' }, { text: '', image: tall }, { text: '<|image_1|> what color?', image: tall }]);
    for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got.data[i]! - want[i]!) < 1e-5);
  } finally {
    emb.dispose();
  }
});

test('unime embed --adapter merges adapters (a directory or a training stage) before embedding', async () => {
  const stage = path.join(dir, 'stage1');
  const model = await loadLlava(LLAVA);
  try {
    const adapter = applyLora(model.decoder, { r: 2, alpha: 4, targetModules: ['q_proj', 'v_proj'] });
    for (const l of adapter.layers) l.loraB.assign(tf.randomNormal(l.loraB.shape, 0, 0.3, 'float32', 11));
    await saveLoraAdapter(path.join(stage, 'adapter'), model.decoder);
  } finally {
    model.dispose();
  }
  const image = fixture('llava', 'images', 'red-square.png');
  const base = await runCli(['embed', '--model', LLAVA, '--text', 'what is it', '--image', image, '--device', 'cpu']);
  const viaDir = await runCli(['embed', '--model', LLAVA, '--text', 'what is it', '--image', image, '--adapter', path.join(stage, 'adapter'), '--device', 'cpu']);
  const viaStage = await runCli(['embed', '--model', LLAVA, '--text', 'what is it', '--image', image, '--adapter', stage, '--device', 'cpu']);
  for (const r of [base, viaDir, viaStage]) assert.equal(r.code, 0, r.stderr);
  assert.match(viaStage.stderr, /1 adapter merged/);
  const e = (r: { stdout: string }) => (JSON.parse(r.stdout.trim()) as { embedding: number[] }).embedding;
  assert.deepEqual(e(viaDir), e(viaStage));
  assert.ok(Math.max(...e(base).map((v, j) => Math.abs(v - e(viaDir)[j]!))) > 1e-3, 'the adapter changes the embedding');
  const emb = await MultimodalEmbedder.load(LLAVA, { adapters: [path.join(stage, 'adapter')] });
  try {
    const want = await emb.embed([{ text: 'what is it', image }]);
    e(viaDir).forEach((v, j) => assert.ok(Math.abs(v - want[j]!) < 1e-5));
  } finally {
    emb.dispose();
  }
  const bad = await runCli(['embed', '--model', LLAVA, '--text', 'x', '--adapter', dir]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /--adapter: .*holds no LoRA adapter/);
});

test('multimodal prompts: template image prompt for a bare image, the image first in the text slot otherwise', () => {
  const llava = resolveTemplate('llava-1.6-mistral');
  const img = { image: 'x.png', imageFile: '/x.png' };
  assert.equal(multimodalPrompt(img, 'llava-1.6-mistral', '', llava), '[INST] <image>\nSummary above image in one word: [/INST]');
  assert.equal(multimodalPrompt({ ...img, text: 'a dog' }, 'llava-1.6-mistral', '', llava), '[INST] <image>\na dog\nSummary above sentence in one word: [/INST]');
  assert.equal(multimodalPrompt({ ...img, text: 'a dog <image>' }, 'llava-1.6-mistral', '', llava), '[INST] a dog <image>\nSummary above sentence in one word: [/INST]');
  assert.equal(multimodalPrompt({ text: 'a dog' }, 'llava-1.6-mistral', 'Q: ', llava), '[INST] Q: a dog\nSummary above sentence in one word: [/INST]');
  // no template: the text as given (the model puts "<image>\n" before a bare caption)
  assert.equal(multimodalPrompt({ ...img, text: 'a dog' }, 'none', '', null), 'a dog');
});
