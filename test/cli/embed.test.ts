import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { TextEmbedder } from '../../src/models/text-embedder.js';
import { tempDir } from '../helpers.js';
import { makeTinyEmbedder } from '../models/embedder-fixture.js';
import { runCli } from './run-cli.js';

let dir: string;
let model: string;
let cleanup: () => Promise<void>;
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
  const img = await runCli(['embed', '--model', model, '--image', 'cat.png']);
  assert.equal(img.code, 3, img.stderr);
  assert.match(img.stderr, /image inputs need the MLLM assemblies/);
  const imgRow = path.join(dir, 'img.jsonl');
  await fsp.writeFile(imgRow, '{"text": "a cat", "image": "cat.png"}\n');
  const img2 = await runCli(['embed', '--model', model, '--input', imgRow]);
  assert.equal(img2.code, 3, img2.stderr);
  const badOut = await runCli(['embed', '--model', model, '--text', 'x', '--out', path.join(dir, 'x.csv')]);
  assert.equal(badOut.code, 2);
  assert.match(badOut.stderr, /\.jsonl or \*\.npy/);
  for (const r of [missing, none, img, img2, badOut]) assert.equal(r.stdout, '');
});
