/**
 * The CLIP-side heads (src/models/clip/heads.ts) against the independent torch.nn reference of
 * tools/fixtures/make_clip_head_fixtures.py (float64 outputs and gradients of sum(out * R)), plus
 * loadHeadWeights's errors, the input-width check and the variable names.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fixture } from '../helpers.js';
import { tf, type Tensor } from '../../src/runtime/tf.js';
import { useDevice } from '../../src/runtime/devices.js';
import { Rng } from '../../src/runtime/rng.js';
import { UnimeError } from '../../src/errors.js';
import { openCheckpoint } from '../../src/io/checkpoint.js';
import { MlpHead, ResidualMlpAdapter, loadHeadWeights, type HeadWeights } from '../../src/models/clip/heads.js';

interface Side {
  config: Record<string, number>;
  input_shape: number[];
  input: number[];
  output_shape: number[];
  output: number[];
  r: number[];
  grad_input: number[];
  grads: Record<string, { shape: number[]; data: number[] }>;
}
interface Reference {
  torch_version: string;
  adapter: Side;
  head: Side;
}

type Saved = Map<string, { shape: number[]; data: Float32Array }>;

const ref = JSON.parse(readFileSync(fixture('clip', 'heads', 'reference.json'), 'utf8')) as Reference;

async function readWeights(name: string): Promise<{ file: string; saved: Saved }> {
  const file = fixture('clip', 'heads', `${name}.safetensors`);
  const ckpt = await openCheckpoint(file);
  const saved: Saved = new Map();
  try {
    for (const n of ckpt.names) saved.set(n, { shape: [...ckpt.info(n).shape], data: await ckpt.readFloat32(n) });
  } finally {
    await ckpt.close();
  }
  return { file, saved };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'length');
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

type Head = { weights: HeadWeights; variables: tf.Variable[]; prefix: string; forward(x: Tensor): Tensor; dispose(): void };

const BUILD: Record<'adapter' | 'head', (prefix: string) => Head> = {
  adapter: (prefix) => new ResidualMlpAdapter(ref.adapter.config as never, new Rng(`heads-${prefix}`), prefix),
  head: (prefix) => new MlpHead(ref.head.config as never, new Rng(`heads-${prefix}`), prefix),
};

for (const kind of ['adapter', 'head'] as const) {
  test(`${kind} matches the torch.nn reference (${ref.torch_version}): forward within 1e-5, gradients within 1e-4`, async () => {
    await useDevice('cpu');
    const side = ref[kind];
    const { file, saved } = await readWeights(kind);
    const prefix = `heads-parity-${kind}.`;
    const m = BUILD[kind](prefix);
    try {
      assert.deepEqual([...saved.keys()].sort(), [...m.weights.keys()].sort(), 'the fixture holds exactly the head keys');
      loadHeadWeights(m.weights, saved, file);
      for (const [k, v] of m.weights) assert.deepEqual(v.dataSync(), saved.get(k)!.data, `${k} loaded`);
      const before = tf.memory().numTensors;
      const x = tf.tensor(side.input, side.input_shape);
      const out = m.forward(x);
      assert.deepEqual(out.shape, side.output_shape);
      const errOut = maxAbsDiff(out.dataSync(), side.output);
      assert.ok(errOut <= 1e-5, `${kind} forward max abs error ${errOut}`);

      const r = tf.tensor(side.r, side.output_shape);
      const xv = tf.variable(x, true, `${prefix}__input`);
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(m.forward(xv), r)) as tf.Scalar, [...m.variables, xv]);
      const report: string[] = [];
      const gx = maxAbsDiff(grads[xv.name]!.dataSync(), side.grad_input);
      report.push(`input ${gx.toExponential(2)}`);
      assert.ok(gx <= 1e-4, `${kind} d/d input max abs error ${gx}`);
      assert.deepEqual(Object.keys(side.grads).sort(), [...m.weights.keys()].sort());
      for (const [k, want] of Object.entries(side.grads)) {
        const g = grads[prefix + k];
        assert.ok(g, `a gradient for ${prefix + k}`);
        assert.deepEqual(g.shape, want.shape, k);
        const e = maxAbsDiff(g.dataSync(), want.data);
        report.push(`${k} ${e.toExponential(2)}`);
        assert.ok(e <= 1e-4, `${kind} d/d ${k} max abs error ${e}`);
      }
      console.log(`# ${kind}: forward ${errOut.toExponential(2)}; grads ${report.join(', ')}`);
      tf.dispose([x, out, r, xv, value, ...Object.values(grads)]);
      assert.equal(tf.memory().numTensors, before, 'leaked tensors');
    } finally {
      m.dispose();
    }
  });
}

test('loadHeadWeights: a prefix selects the keys; a missing key or a wrong shape names the tensor and the file', async () => {
  await useDevice('cpu');
  const { file, saved } = await readWeights('adapter');
  const m = BUILD.adapter('heads-load.');
  try {
    const prefixed: Saved = new Map([...saved].map(([k, v]) => [`text_adapter.${k}`, v]));
    loadHeadWeights(m.weights, prefixed, 'prefixed.safetensors', 'text_adapter.');
    assert.deepEqual(m.weights.get('proj.weight')!.dataSync(), saved.get('proj.weight')!.data);
    // without the prefix, nothing matches
    assert.throws(() => loadHeadWeights(m.weights, prefixed, 'prefixed.safetensors'), (e: unknown) => e instanceof UnimeError && /missing tensor blocks\.0\.norm\.weight/.test(e.message));

    const missing = new Map(saved);
    missing.delete('blocks.1.fc2.bias');
    assert.throws(
      () => loadHeadWeights(m.weights, missing, file),
      (e: unknown) => e instanceof UnimeError && e.file === file && e.message.includes('blocks.1.fc2.bias') && e.message.includes(file),
    );
    const missingPrefixed = new Map(prefixed);
    missingPrefixed.delete('text_adapter.out_norm.bias');
    assert.throws(
      () => loadHeadWeights(m.weights, missingPrefixed, '/some/dir/model.safetensors', 'text_adapter.'),
      (e: unknown) => e instanceof UnimeError && e.file === '/some/dir/model.safetensors' && e.problem.includes('text_adapter.out_norm.bias'),
    );

    const w = saved.get('blocks.0.fc1.weight')!; // [16, 8]
    const transposed = new Map(saved);
    transposed.set('blocks.0.fc1.weight', { shape: [w.shape[1]!, w.shape[0]!], data: w.data });
    assert.throws(
      () => loadHeadWeights(m.weights, transposed, file),
      (e: unknown) => e instanceof UnimeError && e.file === file && e.problem.includes('blocks.0.fc1.weight') && e.problem.includes('[8, 16]') && e.problem.includes('[16, 8]'),
    );
    const wrongRank = new Map(saved);
    const b = saved.get('proj.bias')!;
    wrongRank.set('proj.bias', { shape: [1, b.shape[0]!], data: b.data });
    assert.throws(
      () => loadHeadWeights(m.weights, wrongRank, file),
      (e: unknown) => e instanceof UnimeError && e.file === file && e.problem.includes('proj.bias'),
    );
  } finally {
    m.dispose();
  }
});

test('heads refuse features of the wrong width or rank, naming the expected width', async () => {
  await useDevice('cpu');
  for (const kind of ['adapter', 'head'] as const) {
    const m = BUILD[kind](`heads-width-${kind}.`);
    try {
      const before = tf.memory().numTensors;
      for (const shape of [[3, 7], [3, 9], [8]]) {
        const x = tf.zeros(shape);
        assert.throws(
          () => m.forward(x),
          (e: unknown) => e instanceof UnimeError && e.message.includes('[batch, 8]') && e.message.includes(`[${shape.join(', ')}]`),
          `${kind} ${JSON.stringify(shape)}`,
        );
        x.dispose();
      }
      assert.equal(tf.memory().numTensors, before);
      const ok = tf.ones([2, 8]);
      const y = m.forward(ok);
      assert.deepEqual(y.shape, [2, kind === 'adapter' ? 6 : 5]);
      tf.dispose([ok, y]);
    } finally {
      m.dispose();
    }
  }
});

test('head variables are named <prefix><key> with PyTorch-style keys; fresh heads start as nn.Linear / nn.LayerNorm', async () => {
  await useDevice('cpu');
  const a = new ResidualMlpAdapter({ inDim: 4, blocks: 2, hiddenMult: 3, embedDim: 5 }, new Rng(1), 'names-a.');
  const h = new MlpHead({ inDim: 4, hiddenDim: 7, outDim: 3 }, new Rng(2), 'names-h.');
  try {
    const keys = [
      ...[0, 1].flatMap((i) => ['norm.weight', 'norm.bias', 'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias'].map((k) => `blocks.${i}.${k}`)),
      'out_norm.weight',
      'out_norm.bias',
      'proj.weight',
      'proj.bias',
    ];
    assert.deepEqual([...a.weights.keys()].sort(), [...keys].sort());
    for (const [k, v] of a.weights) assert.equal(v.name, `names-a.${k}`);
    assert.deepEqual(a.variables.map((v) => v.name).sort(), keys.map((k) => `names-a.${k}`).sort());
    assert.deepEqual(a.weights.get('blocks.1.fc1.weight')!.shape, [12, 4]);
    assert.deepEqual(a.weights.get('blocks.1.fc2.weight')!.shape, [4, 12]);
    assert.deepEqual(a.weights.get('proj.weight')!.shape, [5, 4]);
    assert.ok(a.weights.get('out_norm.weight')!.dataSync().every((x) => x === 1));
    assert.ok(a.weights.get('blocks.0.norm.bias')!.dataSync().every((x) => x === 0));
    const bound = 1 / Math.sqrt(12);
    assert.ok(a.weights.get('blocks.0.fc2.weight')!.dataSync().every((x) => Math.abs(x) <= bound));

    assert.deepEqual([...h.weights.keys()].sort(), ['fc1.bias', 'fc1.weight', 'fc2.bias', 'fc2.weight']);
    for (const [k, v] of h.weights) assert.equal(v.name, `names-h.${k}`);
    assert.deepEqual(h.weights.get('fc1.weight')!.shape, [7, 4]);
    assert.deepEqual(h.weights.get('fc2.weight')!.shape, [3, 7]);
    // default prefixes
    const d1 = new ResidualMlpAdapter({ inDim: 2, blocks: 1, hiddenMult: 1, embedDim: 2 }, new Rng(3));
    const d2 = new MlpHead({ inDim: 2, hiddenDim: 2, outDim: 2 }, new Rng(3));
    assert.equal(d1.weights.get('proj.weight')!.name, 'text_adapter.proj.weight');
    assert.equal(d2.weights.get('fc1.weight')!.name, 'image_head.fc1.weight');
    d1.dispose();
    d2.dispose();
    assert.throws(() => new ResidualMlpAdapter({ inDim: 4, blocks: 0, hiddenMult: 1, embedDim: 2 }, new Rng(4), 'names-bad.'), UnimeError);
  } finally {
    a.dispose();
    h.dispose();
  }
});
