/**
 * GradCache gives the full-batch parameter gradients: a small two-tower MLP (shared first layer, separate
 * heads) trained with in-batch and hard-negative InfoNCE, chunked with sizes that do not divide the batch.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, type Tensor } from '../../src/runtime/tf.js';
import { useDevice } from '../../src/runtime/devices.js';
import { Rng } from '../../src/runtime/rng.js';
import { gradCacheStep } from '../../src/train/gradcache.js';
import { clipInfoNce, hardNegativeInfoNce, inbatchInfoNce } from '../../src/losses/index.js';
import { normRelativeError, relativeError, skipNative } from '../losses/support.js';

const B = 7;
const DIN = 5;
const HIDDEN = 6;
const DOUT = 4;

function makeModel(rng: Rng) {
  const v = (shape: number[], name: string, scale: number) => tf.variable(tf.tensor(rng.fillNormal(new Float32Array(shape.reduce((a, b) => a * b, 1)), 0, scale), shape), true, name);
  const w1 = v([DIN, HIDDEN], 'gc.w1', 0.6);
  const b1 = v([HIDDEN], 'gc.b1', 0.1);
  const wq = v([HIDDEN, DOUT], 'gc.wq', 0.6);
  const wt = v([HIDDEN, DOUT], 'gc.wt', 0.6);
  const hidden = (x: Tensor) => tf.tanh(tf.add(tf.matMul(x, w1), b1));
  const rows = (chunk: Float32Array[]) => tf.tensor2d(chunk.map((r) => Array.from(r)), [chunk.length, DIN]);
  return {
    params: [w1, b1, wq, wt],
    encoders: {
      query: (chunk: Float32Array[]) => tf.tidy(() => tf.matMul(hidden(rows(chunk)), wq)),
      target: (chunk: Float32Array[]) => tf.tidy(() => tf.matMul(hidden(rows(chunk)), wt)),
    },
    dispose: () => tf.dispose([w1, b1, wq, wt]),
  };
}

function makeBatch(rng: Rng) {
  const query = Array.from({ length: B }, () => rng.fillNormal(new Float32Array(DIN), 0, 1));
  // Targets near their queries, so the hard-negative filter and selection have something to do.
  const target = query.map((q) => q.map((x) => x + 0.7 * rng.normal()));
  return { query, target };
}

/** The model's encoders, noting each call as `q<chunk index>:<rows>` / `t...`. */
function recordingEncoders(model: ReturnType<typeof makeModel>) {
  const seen: string[] = [];
  const encoders = {
    query: (chunk: Float32Array[], i: number) => (seen.push(`q${i}:${chunk.length}`), model.encoders.query(chunk)),
    target: (chunk: Float32Array[], i: number) => (seen.push(`t${i}:${chunk.length}`), model.encoders.target(chunk)),
  };
  return { seen, encoders };
}

const LOSSES: Record<string, (q: Tensor, t: Tensor) => Tensor> = {
  inbatchInfoNce: (q, t) => inbatchInfoNce(q, t),
  hardNegativeInfoNce: (q, t) => hardNegativeInfoNce(q, t, { k: 3 }).loss,
};

for (const [lossName, loss] of Object.entries(LOSSES)) {
  test(`GradCache with ${lossName}: chunked parameter gradients equal the full-batch ones`, async () => {
    await useDevice('cpu');
    const rng = new Rng(`gradcache-${lossName}`);
    const model = makeModel(rng);
    const batch = makeBatch(rng);
    const full = tf.variableGrads(() => loss(model.encoders.query(batch.query), model.encoders.target(batch.target)) as tf.Scalar, model.params);
    const fullLoss = full.value.dataSync()[0]!;
    for (const chunkSize of [1, 2, 3, 5, 7, 10]) {
      const before = tf.memory().numTensors;
      const { loss: value, grads } = gradCacheStep({ params: model.params, encoders: model.encoders, batch, chunkSize, loss });
      assert.equal(tf.memory().numTensors - before, grads.size, `chunk ${chunkSize}: only the gradients may stay allocated`);
      assert.ok(Math.abs(value - fullLoss) <= 1e-5 * Math.abs(fullLoss), `chunk ${chunkSize}: loss ${value} vs ${fullLoss}`);
      assert.deepEqual([...grads.keys()].sort(), model.params.map((p) => p.name).sort());
      for (const p of model.params) {
        const want = full.grads[p.name]!.dataSync();
        const got = grads.get(p.name)!.dataSync();
        assert.ok(normRelativeError(got, want) <= 1e-5, `chunk ${chunkSize}: ${p.name} relative error ${normRelativeError(got, want)}`);
        assert.ok(relativeError(got, want) <= 1e-4, `chunk ${chunkSize}: ${p.name} entry-wise error ${relativeError(got, want)}`);
      }
      tf.dispose([...grads.values()]);
      assert.equal(tf.memory().numTensors, before, `chunk ${chunkSize}: leaked`);
    }
    tf.dispose([full.value, ...Object.values(full.grads)]);
    model.dispose();
  });
}

test('GradCache: a frozen target side (no parameters) contributes nothing and breaks nothing', async () => {
  await useDevice('cpu');
  const rng = new Rng('gradcache-frozen');
  const model = makeModel(rng);
  const batch = makeBatch(rng);
  const frozen = { query: model.encoders.query, target: (chunk: Float32Array[]) => tf.tensor2d(chunk.map((r) => Array.from(r.subarray(0, DOUT)))) };
  const qParams = model.params.filter((p) => p.name !== 'gc.wt');
  const full = tf.variableGrads(() => inbatchInfoNce(frozen.query(batch.query), frozen.target(batch.target)) as tf.Scalar, qParams);
  const before = tf.memory().numTensors;
  const { grads } = gradCacheStep({ params: qParams, encoders: frozen, batch, chunkSize: 3, loss: (q, t) => inbatchInfoNce(q, t) });
  for (const p of qParams) assert.ok(normRelativeError(grads.get(p.name)!.dataSync(), full.grads[p.name]!.dataSync()) <= 1e-5, p.name);
  tf.dispose([...grads.values()]);
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([full.value, ...Object.values(full.grads)]);
  model.dispose();
});

test('GradCache refuses bad chunk sizes, empty batches and mis-shaped embeddings, without leaking', async () => {
  await useDevice('cpu');
  const rng = new Rng('gradcache-errors');
  const model = makeModel(rng);
  const batch = makeBatch(rng);
  const loss = (q: Tensor, t: Tensor) => inbatchInfoNce(q, t);
  const before = tf.memory().numTensors;
  assert.throws(() => gradCacheStep({ params: model.params, encoders: model.encoders, batch, chunkSize: 0, loss }), /chunkSize must be a positive integer/);
  assert.throws(() => gradCacheStep({ params: model.params, encoders: model.encoders, batch: { query: [], target: [] }, chunkSize: 2, loss }), /batch is empty/);
  const bad = { ...model.encoders, target: (chunk: Float32Array[]) => tf.zeros([chunk.length + 1, DOUT]) };
  assert.throws(() => gradCacheStep({ params: model.params, encoders: bad, batch, chunkSize: 3, loss }), /target encoder returned shape \[4, 4\] for 3 inputs/);
  assert.throws(() => gradCacheStep({ params: model.params, encoders: model.encoders, batch, chunkSize: 3, loss: (q, t) => tf.sum(tf.matMul(q, t, false, true), 1) }), /loss must be a scalar, got shape \[7\]/);
  assert.equal(tf.memory().numTensors, before);
  model.dispose();
});

test('GradCache: encoders see the same chunk index in both passes (for per-chunk dropout seeds)', async () => {
  await useDevice('cpu');
  const rng = new Rng('gradcache-index');
  const model = makeModel(rng);
  const batch = makeBatch(rng);
  const { seen, encoders } = recordingEncoders(model);
  const { grads } = gradCacheStep({ params: model.params, encoders, batch, chunkSize: 3, loss: (q, t) => inbatchInfoNce(q, t) });
  assert.deepEqual(seen, ['q0:3', 'q1:3', 'q2:1', 't0:3', 't1:3', 't2:1', 'q0:3', 'q1:3', 'q2:1', 't0:3', 't1:3', 't2:1']);
  tf.dispose([...grads.values()]);
  model.dispose();
});

test('GradCache: a batch that fits one chunk on each side is embedded once per side', async () => {
  await useDevice('cpu');
  const rng = new Rng('gradcache-single');
  const model = makeModel(rng);
  const batch = makeBatch(rng);
  const { seen, encoders } = recordingEncoders(model);
  const before = tf.memory().numTensors;
  const { grads } = gradCacheStep({ params: model.params, encoders, batch, chunkSize: B, loss: (q, t) => inbatchInfoNce(q, t) });
  assert.deepEqual(seen, [`q0:${B}`, `t0:${B}`]);
  assert.equal(tf.memory().numTensors - before, grads.size);
  tf.dispose([...grads.values()]);
  // both sides frozen: the loss still comes back, with zero gradients
  const frozen = { query: (c: Float32Array[]) => tf.tensor2d(c.map((r) => Array.from(r.subarray(0, DOUT)))), target: (c: Float32Array[]) => tf.tensor2d(c.map((r) => Array.from(r.subarray(0, DOUT)))) };
  const r = gradCacheStep({ params: model.params, encoders: frozen, batch, chunkSize: B, loss: (q, t) => inbatchInfoNce(q, t) });
  assert.ok(Number.isFinite(r.loss) && r.loss > 0);
  for (const g of r.grads.values()) assert.ok(g.dataSync().every((x) => x === 0));
  tf.dispose([...r.grads.values()]);
  assert.equal(tf.memory().numTensors, before);
  model.dispose();
});

test('GradCache on the native backend matches its own full batch and the cpu result', { skip: skipNative }, async () => {
  const run = async (device: 'cpu' | 'native') => {
    await useDevice(device);
    const rng = new Rng('gradcache-native');
    const model = makeModel(rng);
    const batch = makeBatch(rng);
    const loss = (q: Tensor, t: Tensor) => hardNegativeInfoNce(q, t, { k: 3 }).loss;
    const full = tf.variableGrads(() => loss(model.encoders.query(batch.query), model.encoders.target(batch.target)) as tf.Scalar, model.params);
    const before = tf.memory().numTensors;
    const { grads } = gradCacheStep({ params: model.params, encoders: model.encoders, batch, chunkSize: 4, loss });
    const out = model.params.map((p) => ({ name: p.name, chunked: Float32Array.from(grads.get(p.name)!.dataSync()), full: Float32Array.from(full.grads[p.name]!.dataSync()) }));
    tf.dispose([...grads.values()]);
    assert.equal(tf.memory().numTensors, before, `${device}: leaked`);
    tf.dispose([full.value, ...Object.values(full.grads)]);
    model.dispose();
    return out;
  };
  try {
    const cpu = await run('cpu');
    const native = await run('native');
    native.forEach((n, i) => {
      assert.ok(normRelativeError(n.chunked, n.full) <= 1e-5, `native ${n.name}: chunked vs full`);
      assert.ok(normRelativeError(n.chunked, cpu[i]!.chunked) <= 1e-4, `native vs cpu ${n.name}`);
    });
  } finally {
    await useDevice('cpu');
  }
});

test('GradCache with lossParams: a learnable log logit scale (clipInfoNce) gets the full-batch gradient, chunk 2 over 6', async () => {
  await useDevice('cpu');
  const rng = new Rng('gradcache-lossparams');
  const model = makeModel(rng);
  const n = 6;
  const query = Array.from({ length: n }, () => rng.fillNormal(new Float32Array(DIN), 0, 1));
  const target = query.map((q) => q.map((x) => x + 0.8 * rng.normal()));
  const batch = { query, target };
  const logScale = tf.variable(tf.scalar(Math.log(4)), true, 'gc.logit_scale');
  const loss = (q: Tensor, t: Tensor) => clipInfoNce(q, t, logScale);
  const params = [...model.params, logScale];
  try {
    const full = tf.variableGrads(() => loss(model.encoders.query(batch.query), model.encoders.target(batch.target)) as tf.Scalar, params);
    const fullLoss = full.value.dataSync()[0]!;
    const before = tf.memory().numTensors;
    const { loss: value, grads } = gradCacheStep({ params, encoders: model.encoders, batch, chunkSize: 2, loss, lossParams: [logScale] });
    assert.equal(tf.memory().numTensors - before, grads.size, 'only the gradients may stay allocated');
    assert.ok(Math.abs(value - fullLoss) <= 1e-5 * Math.abs(fullLoss), `loss ${value} vs ${fullLoss}`);
    assert.deepEqual([...grads.keys()].sort(), params.map((p) => p.name).sort());
    const wantScale = full.grads[logScale.name]!.dataSync()[0]!;
    assert.ok(Math.abs(wantScale) > 1e-3, `the scale's gradient is not trivially zero (${wantScale})`);
    for (const p of params) {
      const want = full.grads[p.name]!.dataSync();
      const got = grads.get(p.name)!.dataSync();
      assert.deepEqual(grads.get(p.name)!.shape, p.shape, p.name);
      assert.ok(normRelativeError(got, want) <= 1e-5, `${p.name} relative error ${normRelativeError(got, want)}: ${Array.from(got).slice(0, 3)} vs ${Array.from(want).slice(0, 3)}`);
      assert.ok(relativeError(got, want) <= 1e-4, `${p.name} entry-wise error ${relativeError(got, want)}`);
    }
    // without lossParams the scale gets no gradient (zeros): the option is what makes it right
    const plain = gradCacheStep({ params, encoders: model.encoders, batch, chunkSize: 2, loss });
    assert.ok(plain.grads.get(logScale.name)!.dataSync().every((x) => x === 0), 'no lossParams: the scale gets zeros');
    tf.dispose([...plain.grads.values()]);
    tf.dispose([...grads.values()]);
    assert.equal(tf.memory().numTensors, before, 'leaked');
    tf.dispose([full.value, ...Object.values(full.grads)]);
  } finally {
    logScale.dispose();
    model.dispose();
  }
});

test('GradCache refuses a loss parameter that is not one of params', async () => {
  await useDevice('cpu');
  const rng = new Rng('gradcache-lossparams-bad');
  const model = makeModel(rng);
  const batch = makeBatch(rng);
  const logScale = tf.variable(tf.scalar(1), true, 'gc.logit_scale_outside');
  try {
    assert.throws(
      () => gradCacheStep({ params: model.params, encoders: model.encoders, batch, chunkSize: 3, loss: (q, t) => clipInfoNce(q, t, logScale), lossParams: [logScale] }),
      (e: unknown) => e instanceof Error && e.message.includes('gc.logit_scale_outside'),
    );
  } finally {
    logScale.dispose();
    model.dispose();
  }
});
