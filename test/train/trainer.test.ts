/**
 * The shared training loop on a tiny linear embedding model trained with in-batch InfoNCE through
 * GradCache: exact resumption, atomic checkpoints, metrics, plots, progress, accumulation, NaN stops
 * and tensor hygiene.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, existsSync } from 'node:fs';
import * as path from 'node:path';
import { tf, type Tensor } from '../../src/runtime/tf.js';
import { useDevice } from '../../src/runtime/devices.js';
import { Rng } from '../../src/runtime/rng.js';
import { UnimeError } from '../../src/errors.js';
import { gradCacheStep } from '../../src/train/gradcache.js';
import { inbatchInfoNce } from '../../src/losses/index.js';
import { ShuffledBatches } from '../../src/train/data.js';
import { train, totalStepsFor, loopOptionsFromRecipe, type TrainOptions, type TrainStepOutput } from '../../src/train/trainer.js';
import { readMetrics, type MetricRecord } from '../../src/train/metrics.js';
import { NonFiniteError } from '../../src/train/clip.js';
import { listCheckpoints, LATEST_FILE, TRAINER_STATE_FILE } from '../../src/train/checkpoints.js';
import { tempDir } from '../helpers.js';

const DIN = 6;
const D = 4;
const N = 40;
const B = 8;

interface Pair { q: Float32Array; t: Float32Array }

function makeData(seed: string): Pair[] {
  const rng = new Rng(seed);
  return Array.from({ length: N }, () => {
    const q = rng.fillNormal(new Float32Array(DIN));
    return { q, t: q.map((x) => x + 0.5 * rng.normal()) };
  });
}

/**
 * A two-tower linear embedder. Checkpoints key parameters by variable name, as a new process would
 * recreate them; tfjs names are process-wide, so a model must be disposed before the next with its tag.
 */
function makeModel(seed: string, tag: string) {
  const rng = new Rng(seed);
  const v = (shape: number[], name: string) =>
    tf.tidy(() => tf.variable(tf.tensor(rng.fillNormal(new Float32Array(shape.reduce((a, b) => a * b, 1)), 0, 0.5), shape), true, `${tag}.${name}`));
  const wq = v([DIN, D], 'wq');
  const wt = v([DIN, D], 'wt');
  const bias = v([D], 'bias');
  const rows = (xs: Float32Array[]) => tf.tensor2d(xs.map((r) => Array.from(r)), [xs.length, DIN]);
  return {
    tag,
    params: [wq, wt, bias],
    /** Step function: input noise drawn from the run's RNG (so resuming must restore it), then GradCache. */
    step(batch: Pair[], ctx: { rng: Rng }): TrainStepOutput {
      const noisy = batch.map((p) => p.q.map((x) => x + 0.05 * ctx.rng.normal()));
      const r = gradCacheStep({
        params: [wq, wt, bias],
        encoders: {
          query: (xs: Float32Array[]) => tf.tidy(() => tf.add(tf.matMul(rows(xs), wq), bias)),
          target: (xs: Float32Array[]) => tf.tidy(() => tf.add(tf.matMul(rows(xs), wt), bias)),
        },
        batch: { query: noisy, target: batch.map((p) => p.t) },
        chunkSize: 3,
        loss: (q, t) => inbatchInfoNce(q, t, { temperature: 0.1 }),
      });
      return { loss: r.loss, grads: r.grads, samples: batch.length, tokens: batch.length * DIN, stats: { batch_mean_norm: 1 } };
    },
    values: () => [wq, wt, bias].map((p) => Array.from(p.dataSync())),
    dispose: () => tf.dispose([wq, wt, bias]),
  };
}

function baseOptions(model: ReturnType<typeof makeModel>, outputDir: string, over: Partial<TrainOptions<Pair[]>> = {}): TrainOptions<Pair[]> {
  const rng = new Rng('run');
  return {
    params: model.params,
    step: (b, ctx) => model.step(b, ctx),
    data: new ShuffledBatches(makeData('data'), B / 2, rng.fork('data')),
    accumulation: 2,
    rng: rng.fork('train'),
    outputDir,
    lr: 0.05,
    maxSteps: 12,
    schedule: 'cosine',
    warmupRatio: 0.2,
    weightDecay: 0.01,
    gradClip: 1.0,
    logEvery: 5,
    saveEvery: 4,
    keepLast: 2,
    progress: null,
    ...over,
  };
}

test('a killed run resumed from its checkpoint reproduces the uninterrupted run exactly (losses, parameters, metrics)', async () => {
  await useDevice('cpu');
  const { dir, cleanup } = await tempDir('unime-trainer-');
  try {
    const a = makeModel('init', 'tt0');
    const full = await train(baseOptions(a, path.join(dir, 'full')));
    assert.equal(full.completed, true);
    assert.equal(full.losses.length, 12);
    assert.ok(full.losses[11]! < full.losses[0]!, `the loss goes down: ${full.losses[0]} -> ${full.losses[11]}`);
    const finalA = a.values();
    a.dispose();

    // The same run, killed after step 6 (the last checkpoint is step 4).
    const b = makeModel('init', 'tt0');
    const ctl = new AbortController();
    const killed = await train(baseOptions(b, path.join(dir, 'killed'), { signal: ctl.signal, onStep: (r) => { if (r.step === 6) ctl.abort(); } }));
    assert.equal(killed.completed, false);
    assert.equal(killed.step, 6);
    assert.deepEqual(killed.losses, full.losses.slice(0, 6));
    b.dispose();
    assert.deepEqual(await listCheckpoints(path.join(dir, 'killed')), [4]);

    // A new process: another model instance (different init!) and fresh data/RNG objects, resumed.
    const c = makeModel('some other init', 'tt0');
    const resumed = await train(baseOptions(c, path.join(dir, 'killed'), { resume: true }));
    assert.equal(resumed.startStep, 4);
    assert.equal(resumed.completed, true);
    assert.deepEqual(resumed.losses, full.losses.slice(4), 'steps 5..12 bit-identical');
    assert.deepEqual(c.values(), finalA, 'final parameters bit-identical');
    c.dispose();

    const mFull = await readMetrics(full.metricsFile);
    const mRes = await readMetrics(resumed.metricsFile);
    assert.deepEqual(mRes.map((r) => r.step), Array.from({ length: 12 }, (_, i) => i + 1), 'each step logged once');
    assert.deepEqual(mRes.map((r) => [r.loss, r.lr, r.grad_norm]), mFull.map((r) => [r.loss, r.lr, r.grad_norm]));
  } finally {
    await cleanup();
  }
});

test('checkpoints: every saveEvery steps and at the end, keepLast pruning, complete contents, latest pointer', async () => {
  await useDevice('cpu');
  const { dir, cleanup } = await tempDir('unime-trainer-');
  try {
    const m = makeModel('init', 'tt1');
    const extraSeen: string[] = [];
    const r = await train(baseOptions(m, dir, {
      maxSteps: 10,
      saveEvery: 3,
      keepLast: 2,
      onCheckpoint: async ({ dir: d, step, final }) => {
        extraSeen.push(`${step}${final ? ' final' : ''}`);
        await fsp.writeFile(path.join(d, 'adapter_config.json'), '{}\n');
      },
    }));
    m.dispose();
    assert.deepEqual(extraSeen, ['3', '6', '9', '10 final']);
    assert.deepEqual(await listCheckpoints(dir), [9, 10]);
    assert.equal(r.lastCheckpoint, path.join(dir, 'checkpoints', 'step-10'));
    assert.equal((await fsp.readFile(path.join(dir, 'checkpoints', LATEST_FILE), 'utf8')).trim(), 'step-10');
    const files = (await fsp.readdir(path.join(dir, 'checkpoints', 'step-10'))).sort();
    assert.deepEqual(files, ['adapter_config.json', 'optimizer.json', 'optimizer.safetensors', 'params.safetensors', 'trainer_state.json']);
    const st = JSON.parse(await fsp.readFile(path.join(dir, 'checkpoints', 'step-10', TRAINER_STATE_FILE), 'utf8'));
    assert.equal(st.step, 10);
    assert.equal(st.batchesSeen, 20);
    assert.deepEqual(Object.keys(st.rng), ['train']);
    assert.equal(typeof st.data.position, 'number');
    assert.equal(st.schedule.kind, 'cosine');
    // A fresh (non-resume) run refuses to clobber the checkpoints.
    const m2 = makeModel('init', 'tt1');
    await assert.rejects(train(baseOptions(m2, dir)), (e: unknown) => e instanceof UnimeError && /already has checkpoints/.test(e.message));
    m2.dispose();
  } finally {
    await cleanup();
  }
});

test('checkpoint writing is atomic: a crash mid-write keeps the previous checkpoint and latest pointing to a complete one', async () => {
  await useDevice('cpu');
  const { dir, cleanup } = await tempDir('unime-trainer-');
  try {
    const ref = makeModel('init', 'tt2');
    const full = await train(baseOptions(ref, path.join(dir, 'ref')));
    ref.dispose();

    const out = path.join(dir, 'crash');
    const m = makeModel('init', 'tt2');
    await assert.rejects(
      train(baseOptions(m, out, {
        onCheckpoint: async ({ dir: d, step }) => {
          await fsp.writeFile(path.join(d, 'adapter_model.safetensors'), 'partial');
          if (step === 8) throw new Error('simulated crash while writing step 8');
        },
      })),
      /simulated crash/,
    );
    m.dispose();
    assert.deepEqual(await listCheckpoints(out), [4]);
    assert.equal((await fsp.readFile(path.join(out, 'checkpoints', LATEST_FILE), 'utf8')).trim(), 'step-4');
    assert.deepEqual((await fsp.readdir(path.join(out, 'checkpoints'))).sort(), ['latest', 'step-4']);

    // A hard kill leaves a temp directory and maybe a half-copied step directory: both are ignored.
    await fsp.mkdir(path.join(out, 'checkpoints', '.tmp-step-8-123-abcd'));
    await fsp.writeFile(path.join(out, 'checkpoints', '.tmp-step-8-123-abcd', 'params.safetensors'), 'torn');
    await fsp.mkdir(path.join(out, 'checkpoints', 'step-12'));
    await fsp.writeFile(path.join(out, 'checkpoints', 'step-12', 'params.safetensors'), 'torn');
    // And metrics.jsonl ends in a torn line.
    await fsp.appendFile(path.join(out, 'metrics.jsonl'), '{"step": 9, "loss": 0.1');

    const m2 = makeModel('init', 'tt2');
    const resumed = await train(baseOptions(m2, out, { resume: true }));
    m2.dispose();
    assert.equal(resumed.startStep, 4);
    assert.deepEqual(resumed.losses, full.losses.slice(4));
    assert.ok(!existsSync(path.join(out, 'checkpoints', '.tmp-step-8-123-abcd')), 'stale temp removed');
    const metrics = await readMetrics(resumed.metricsFile);
    assert.deepEqual(metrics.map((r) => r.loss), full.losses);
  } finally {
    await cleanup();
  }
});

test('metrics.jsonl: one parseable record per step with step, loss, lr, grad_norm, throughput and stats; plots.html has the curves', async () => {
  await useDevice('cpu');
  const { dir, cleanup } = await tempDir('unime-trainer-');
  try {
    const m = makeModel('init', 'tt3');
    const r = await train(baseOptions(m, dir, { maxSteps: 7, saveEvery: null }));
    m.dispose();
    const lines = (await fsp.readFile(r.metricsFile, 'utf8')).trimEnd().split('\n');
    assert.equal(lines.length, 7);
    const recs = lines.map((l) => JSON.parse(l) as MetricRecord);
    for (const [i, rec] of recs.entries()) {
      assert.equal(rec.step, i + 1);
      for (const k of ['loss', 'lr', 'grad_norm', 'samples_per_s', 'tokens_per_s', 'epoch', 'elapsed_s', 'batch_mean_norm']) {
        assert.equal(typeof rec[k], 'number', `${k} in step ${rec.step}`);
      }
    }
    assert.equal(recs[0]!.lr, 0, 'cosine with warmup: the first update has lr 0');
    assert.equal(recs[0]!.epoch, 2 / 10);
    assert.deepEqual(await listCheckpoints(dir), [7], 'only the final checkpoint when saveEvery is null');
    const html = await fsp.readFile(r.plotsFile, 'utf8');
    assert.match(html, /^<!doctype html>/);
    assert.doesNotMatch(html, /<script|https?:\/\/(?!www\.w3\.org)/, 'self-contained');
    const curves = [...html.matchAll(/<svg[^>]*data-series="([^"]+)"[\s\S]*?<polyline class="curve" data-points="(\d+)"/g)].map((x) => [x[1], Number(x[2])]);
    assert.deepEqual(curves, [['loss', 7], ['lr', 7], ['grad_norm', 7]]);
  } finally {
    await cleanup();
  }
});

test('accumulation: 2 micro-batches of 4 give the same update as one batch of 8 (mean-squared-error model)', async () => {
  await useDevice('cpu');
  const { dir, cleanup } = await tempDir('unime-trainer-');
  try {
    const rng = new Rng('acc-data');
    const xs = Array.from({ length: 16 }, () => rng.fillNormal(new Float32Array(3)));
    const run = async (batch: number, accumulation: number, tag: string) => {
      const w = tf.tidy(() => tf.variable(tf.tensor2d([[0.1], [-0.2], [0.3]]), true, `acc-${tag}.w`));
      const r = await train({
        params: [w],
        step: (b: Float32Array[]) => {
          const x = tf.tensor2d(b.map((row) => Array.from(row)));
          const y = tf.sum(x, 1, true);
          const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(tf.sub(tf.matMul(x, w), y))) as tf.Scalar, [w]);
          return { loss: value.dataSync()[0]!, grads: new Map<string, Tensor>([[w.name, grads[w.name]!]]) };
        },
        data: new ShuffledBatches(xs, batch, new Rng('order'), { shuffle: false }),
        accumulation,
        outputDir: path.join(dir, tag),
        lr: 0.1,
        maxSteps: 3,
        schedule: 'constant',
        progress: null,
      });
      const out = { losses: r.losses, w: Array.from(w.dataSync()) };
      w.dispose();
      return out;
    };
    const one = await run(8, 1, 'full');
    const two = await run(4, 2, 'accum');
    for (let i = 0; i < 3; i++) assert.ok(Math.abs(one.losses[i]! - two.losses[i]!) < 1e-6, `loss ${i}: ${one.losses[i]} vs ${two.losses[i]}`);
    for (let i = 0; i < 3; i++) assert.ok(Math.abs(one.w[i]! - two.w[i]!) < 1e-6, `w ${i}: ${one.w[i]} vs ${two.w[i]}`);
  } finally {
    await cleanup();
  }
});

test('a non-finite loss or gradient stops the run with the step and batch named', async () => {
  await useDevice('cpu');
  const { dir, cleanup } = await tempDir('unime-trainer-');
  try {
    const m = makeModel('init', 'tt5');
    const before = tf.memory().numTensors;
    await assert.rejects(
      train(baseOptions(m, path.join(dir, 'loss'), {
        step: (b, ctx) => {
          const out = m.step(b, ctx);
          return ctx.batchIndex === 5 ? { ...out, loss: NaN } : out;
        },
      })),
      (e: unknown) => {
        assert.ok(e instanceof NonFiniteError);
        assert.equal(e.step, 3);
        assert.equal(e.batchIndex, 5);
        assert.match(e.message, /loss is NaN at step 3, batch 5/);
        return true;
      },
    );
    const bad = m.params[1]!.name;
    await assert.rejects(
      train(baseOptions(m, path.join(dir, 'grad'), {
        step: (b, ctx) => {
          const out = m.step(b, ctx);
          if (ctx.batchIndex === 2) {
            const g = out.grads.get(bad)!;
            out.grads.set(bad, tf.mul(g, tf.scalar(Infinity)));
            g.dispose();
          }
          return out;
        },
      })),
      new RegExp(`gradient of ${bad.replace(/[.]/g, '\\.')} is (infinite|NaN) at step 2, batch 2`),
    );
    assert.equal(tf.memory().numTensors, before, 'a failed run leaves no tensors behind');
    m.dispose();
  } finally {
    await cleanup();
  }
});

test('no tensor leaks per step, none after the run; a step function that leaks is cleaned up by the loop', async () => {
  await useDevice('cpu');
  const { dir, cleanup } = await tempDir('unime-trainer-');
  try {
    const m = makeModel('init', 'tt6');
    const before = tf.memory().numTensors;
    const counts: number[] = [];
    await train(baseOptions(m, dir, {
      step: (b, ctx) => {
        tf.ones([3, 3]); // a leak the loop's scope must catch
        return m.step(b, ctx);
      },
      onStep: () => { counts.push(tf.memory().numTensors); },
    }));
    assert.equal(new Set(counts).size, 1, `tensors per step: ${counts.join(', ')}`);
    assert.equal(tf.memory().numTensors, before);
    m.dispose();
  } finally {
    await cleanup();
  }
});

test('progress: a line every logEvery steps off a terminal; a redrawn bar with loss, lr, it/s and ETA on one', async () => {
  await useDevice('cpu');
  const { dir, cleanup } = await tempDir('unime-trainer-');
  try {
    const plain: string[] = [];
    const m = makeModel('init', 'tt7');
    await train(baseOptions(m, path.join(dir, 'plain'), { progress: { write: (s) => (plain.push(s), true), isTTY: false }, saveEvery: null }));
    const stepLines = plain.join('').split('\n').filter((l) => l.startsWith('train: step'));
    assert.deepEqual(stepLines.map((l) => /step (\d+)\/12/.exec(l)?.[1]), ['5', '10', '12']);
    assert.match(stepLines[0]!, /loss \S+ \| lr \S+ \| grad \S+ \| [\d.]+ (it\/s|s\/it) \| [\d.]+ samples\/s \| ETA \S+/);
    const tty: string[] = [];
    await train(baseOptions(m, path.join(dir, 'tty'), { progress: { write: (s) => (tty.push(s), true), isTTY: true, columns: 200 }, saveEvery: null, maxSteps: 3 }));
    const draws = tty.filter((s) => s.startsWith('\r\x1b[2Ktrain '));
    assert.ok(draws.length >= 3);
    assert.match(draws[2]!, /100% \[#+\] step 3\/3 \| loss .* (it\/s|s\/it) .* ETA/);
    m.dispose();
  } finally {
    await cleanup();
  }
});

test('run length: min of max_steps and epochs (transformers counting); recipe train block maps onto the loop', () => {
  assert.equal(totalStepsFor({ maxSteps: 100, epochs: 2, batchesPerEpoch: 10, accumulation: 1 }), 20);
  assert.equal(totalStepsFor({ maxSteps: 5, epochs: 2, batchesPerEpoch: 10, accumulation: 1 }), 5);
  assert.equal(totalStepsFor({ maxSteps: null, epochs: 1.5, batchesPerEpoch: 11, accumulation: 2 }), 8);
  assert.throws(() => totalStepsFor({ maxSteps: null, epochs: 1, accumulation: 1 }), /max_steps/);
  const o = loopOptionsFromRecipe({
    lr: 1e-4, epochs: null, max_steps: 1000, batch_size: 1024, gradcache_chunk_size: 8, warmup_ratio: 0.1, warmup_steps: null,
    schedule: 'cosine', weight_decay: 0, grad_clip: 1, optimizer: { name: 'adamw', beta1: 0.9, beta2: 0.999, eps: 1e-8 }, log_every: 10, save_every: 100,
  });
  assert.deepEqual(o, { lr: 1e-4, epochs: null, maxSteps: 1000, schedule: 'cosine', warmupRatio: 0.1, warmupSteps: null, weightDecay: 0, gradClip: 1, beta1: 0.9, beta2: 0.999, eps: 1e-8, logEvery: 10, saveEvery: 100 });
});
