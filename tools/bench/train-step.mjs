// One full training step (forward, backward, AdamW) and one forward-only embedding pass of a reference
// LLaVA-style embedding model, on the native backend, against PyTorch on CPU and the pure-JS cpu backend.
//   npm run build && node tools/bench/train-step.mjs [--quick] [--threads N] [--steps N] [--no-torch]
//     [--no-js] [--js-steps N] [--json out.json]
// The model is built from the toolkit's own classes (VisionTransformer, TextDecoder, Linear, pooling,
// inbatchInfoNce, AdamW) with random weights, so this times the real code path. PyTorch (Debian's
// python3-torch, /usr/bin/python3; PYTHON overrides) runs the same architecture written by hand in
// tools/bench/train_step_torch.py. Each side runs in its own process so the RSS peaks are separate.
// Not a test: numbers depend on the machine and its load.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..', '..');
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
};
const threads = Number(option('--threads', process.env.UNIME_NUM_THREADS ?? String(os.availableParallelism?.() ?? os.cpus().length)));
process.env.UNIME_NUM_THREADS = String(threads);
const quick = flag('--quick');
const steps = Number(option('--steps', quick ? '2' : '3'));
const jsSteps = Number(option('--js-steps', '1'));
/** A JS-backend pass expected to take longer than this runs on a reduced batch and is extrapolated by FLOPs. */
const JS_LIMIT_S = Number(option('--js-limit-s', '300'));

/**
 * The reference shapes. Vision: CLIP ViT-B-like tower cut to 4 layers at hidden 512; LLaVA takes
 * hidden_states[-2] without the class token, so the last tower layer never runs (as in LLaVA).
 * Text: 8-layer Llama at hidden 512; the image's patch tokens plus text tokens make `seq` in total.
 */
const FULL = {
  batch: 8,
  imageSize: 224,
  patchSize: 16,
  visionHidden: 512,
  visionHeads: 8,
  visionMlp: 2048,
  visionLayers: 4,
  featureLayer: -2,
  textHidden: 512,
  textHeads: 8,
  textIntermediate: 1408,
  textLayers: 8,
  vocab: 32000,
  seq: 256,
};
const QUICK = {
  batch: 4,
  imageSize: 64,
  patchSize: 16,
  visionHidden: 128,
  visionHeads: 4,
  visionMlp: 512,
  visionLayers: 2,
  featureLayer: -2,
  textHidden: 128,
  textHeads: 4,
  textIntermediate: 352,
  textLayers: 2,
  vocab: 1000,
  seq: 32,
};

/** Image tokens (patches; the class token is dropped by the 'default' feature strategy) and text tokens. */
function tokens(s) {
  const grid = s.imageSize / s.patchSize;
  const image = grid * grid;
  return { grid, image, visionSeq: image + 1, text: s.seq - image };
}

/**
 * Matmul FLOPs of one forward pass per sample (2 per multiply-add; norms, activations, softmax,
 * RoPE and the optimizer are not counted):
 *   patch embedding      2 * P * (3 p^2) * Hv                      P = (image/p)^2 patches
 *   each vision layer    2 * Sv * (4 Hv^2 + 2 Hv Iv) + 4 * Sv^2 * Hv  Sv = P + 1; (|layer| - 1 fewer layers run)
 *   projector            2 * P * (Hv Ht + Ht^2)
 *   each decoder layer   2 * S * (4 Ht^2 + 3 Ht It) + 4 * S^2 * Ht    (full S x S scores, as computed)
 * A training step counts 3x the forward (backward = grads for inputs and for weights).
 */
function forwardFlopsPerSample(s) {
  const { image: P, visionSeq: Sv } = tokens(s);
  const Hv = s.visionHidden;
  const Ht = s.textHidden;
  const visionLayersRun = s.visionLayers + 1 + s.featureLayer;
  const patch = 2 * P * 3 * s.patchSize * s.patchSize * Hv;
  const vLayer = 2 * Sv * (4 * Hv * Hv + 2 * Hv * s.visionMlp) + 4 * Sv * Sv * Hv;
  const projector = 2 * P * (Hv * Ht + Ht * Ht);
  const tLayer = 2 * s.seq * (4 * Ht * Ht + 3 * Ht * s.textIntermediate) + 4 * s.seq * s.seq * Ht;
  return patch + visionLayersRun * vLayer + projector + s.textLayers * tLayer;
}


// ---------------------------------------------------------------------------------------------
// Worker: one backend in its own process; prints one JSON line.
// ---------------------------------------------------------------------------------------------

async function runWorker(device, shape) {
  const dist = (...p) => path.join(root, 'dist', 'src', ...p);
  const { tf } = await import(dist('runtime', 'tf.js'));
  const { useDevice } = await import(dist('runtime', 'devices.js'));
  const { buildClipVisionConfig } = await import(dist('models', 'vision', 'config.js'));
  const { VisionTransformer, expectedVisionWeights } = await import(dist('models', 'vision', 'tower.js'));
  const { buildLlamaConfig } = await import(dist('models', 'text', 'builders.js'));
  const { TextDecoder } = await import(dist('models', 'text', 'decoder.js'));
  const { Linear, expectedDecoderWeights } = await import(dist('models', 'text', 'modules.js'));
  const { activation } = await import(dist('runtime', 'native', 'ops.js'));
  const { poolEmbeddings } = await import(dist('models', 'pooling.js'));
  const { inbatchInfoNce } = await import(dist('losses', 'inbatch-infonce.js'));
  const { AdamW } = await import(dist('train', 'adamw.js'));

  await useDevice(device);
  const src = { file: 'train-step.mjs', fieldPrefix: '' };
  const vcfg = buildClipVisionConfig(
    {
      hidden_size: shape.visionHidden,
      intermediate_size: shape.visionMlp,
      num_hidden_layers: shape.visionLayers,
      num_attention_heads: shape.visionHeads,
      image_size: shape.imageSize,
      patch_size: shape.patchSize,
      hidden_act: 'quick_gelu',
    },
    src,
  );
  const dcfg = buildLlamaConfig(
    {
      vocab_size: shape.vocab,
      hidden_size: shape.textHidden,
      intermediate_size: shape.textIntermediate,
      num_hidden_layers: shape.textLayers,
      num_attention_heads: shape.textHeads,
      max_position_embeddings: 4096,
    },
    src,
  );

  // Random weights under the checkpoint key names: norms at 1, biases at 0, the rest N(0, 0.02).
  const seed = { v: 1 };
  const init = (name, shp) => {
    if (/(norm|layrnorm)[^.]*\.weight$/.test(name)) return tf.ones(shp);
    if (name.endsWith('.bias')) return tf.zeros(shp);
    return tf.mul(tf.randomNormal(shp, 0, 1, 'float32', seed.v++), 0.02);
  };
  const makeVars = (prefix, expected) => {
    const m = new Map();
    for (const [name, shp] of expected) m.set(name, tf.tidy(() => tf.variable(init(name, shp), true, `${prefix}${name}`)));
    return m;
  };
  const visionWeights = makeVars('vision_tower.', expectedVisionWeights(vcfg, false));
  const decoderWeights = makeVars('language_model.', expectedDecoderWeights(dcfg));
  const projWeights = makeVars(
    'multi_modal_projector.',
    new Map([
      ['linear_1.weight', [shape.textHidden, shape.visionHidden]],
      ['linear_1.bias', [shape.textHidden]],
      ['linear_2.weight', [shape.textHidden, shape.textHidden]],
      ['linear_2.bias', [shape.textHidden]],
    ]),
  );
  const vision = new VisionTransformer(vcfg, visionWeights);
  const decoder = new TextDecoder(dcfg, decoderWeights);
  const proj1 = new Linear(projWeights.get('linear_1.weight'), projWeights.get('linear_1.bias'));
  const proj2 = new Linear(projWeights.get('linear_2.weight'), projWeights.get('linear_2.bias'));
  const params = [...visionWeights.values(), ...projWeights.values(), ...decoderWeights.values()];
  const numParams = params.reduce((n, v) => n + v.size, 0);

  const { text } = tokens(shape);
  const B = shape.batch;
  const pixels = tf.randomUniform([B, 3, shape.imageSize, shape.imageSize], -1, 1, 'float32', 7);
  const ids = tf.randomUniform([B, text], 0, shape.vocab, 'int32', 8);
  const mask = Array.from({ length: B }, () => new Array(shape.seq).fill(1));

  /** LLaVA: tower features -> projector, spliced before the text embeddings -> decoder -> last token, L2. */
  const embed = () =>
    tf.tidy(() => {
      const feats = vision.selectFeatures(pixels, { layer: shape.featureLayer, strategy: 'default' });
      const image = proj2.forward(activation('geluErf', proj1.forward(feats)));
      const inputsEmbeds = tf.concat([image, decoder.embed(ids)], 1);
      const { lastHiddenState } = decoder.forward({ inputsEmbeds, attentionMask: mask });
      return poolEmbeddings(lastHiddenState, mask, 'last', true);
    });
  // Rows 0..B/2-1 are queries, B/2..B-1 their positives: in-batch InfoNCE at VLM2Vec's temperature.
  const loss = () =>
    tf.tidy(() => {
      const e = embed();
      const h = B / 2;
      return inbatchInfoNce(tf.slice(e, [0, 0], [h, -1]), tf.slice(e, [h, 0], [h, -1]), { temperature: 0.02, normalize: false });
    });

  const rssMB = () => process.resourceUsage().maxRSS / 1024;
  const timed = (fn, n) => {
    const times = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      fn();
      times.push((performance.now() - t0) / 1000);
    }
    return times;
  };
  const out = { device, shape, numParams, threads, rssSetupMB: rssMB() };
  if (process.env.UNIME_BENCH_PROFILE_ALLOC) {
    // Allocation by kernel over one forward (what the gradient tape keeps alive until the backward);
    // tfjs counts a Reshape's shared buffer again, so Reshape's figure is views, not memory.
    const prof = await tf.profile(() => embed());
    const by = new Map();
    for (const k of prof.kernels) by.set(k.name, (by.get(k.name) ?? 0) + k.bytesAdded);
    console.error([...by].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([n, b]) => `${n} ${(b / 2 ** 20).toFixed(0)} MB`).join('\n'));
  }

  const embedOnce = () => {
    const e = embed();
    e.dataSync();
    e.dispose();
  };
  const tensorsBefore = tf.memory().numTensors;
  const warm = option('--warmup', '1') !== '0';
  if (warm) embedOnce();
  out.embedTimes = timed(embedOnce, Number(option('--embed-steps', '1')));
  out.embedPeakMB = rssMB();
  const embedLeak = tf.memory().numTensors - tensorsBefore;

  // Created after the embedding passes so their peak has no optimizer moments in it (PyTorch's AdamW
  // also allocates its state at the first step).
  const opt = new AdamW(params, { weightDecay: 0.01 });
  const tensorsBeforeTrain = tf.memory().numTensors;
  const trainOnce = () => {
    const { value, grads } = tf.variableGrads(loss, params);
    value.dataSync();
    opt.update(new Map(Object.entries(grads)), 1e-4);
    out.loss = value.dataSync()[0];
    value.dispose();
    tf.dispose(grads);
  };
  if (warm) trainOnce();
  out.trainTimes = timed(trainOnce, Number(option('--train-steps', '1')));
  out.trainPeakMB = rssMB();
  out.leakedTensors = embedLeak + tf.memory().numTensors - tensorsBeforeTrain;
  console.log(JSON.stringify(out));
}

// ---------------------------------------------------------------------------------------------
// Orchestrator
// ---------------------------------------------------------------------------------------------

/** The V8 flags of the `unime` bin's shebang (`#!/usr/bin/env -S node <flags>`): the workers run as a recipe does. */
function cliNodeFlags() {
  const line = readFileSync(path.join(here, '..', '..', 'dist', 'src', 'cli', 'main.js'), 'utf8').split('\n', 1)[0];
  const m = /^#!\S*env -S node(.*)$/.exec(line);
  return m ? m[1].trim().split(/\s+/).filter(Boolean) : [];
}

function runNode(device, shape, extra) {
  const r = spawnSync(process.execPath, [...cliNodeFlags(), fileURLToPath(import.meta.url), '--worker', device, '--shape', JSON.stringify(shape), '--threads', String(threads), ...extra], {
    encoding: 'utf8',
    env: { ...process.env, UNIME_NUM_THREADS: String(threads) },
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) return { error: (r.stderr || String(r.error)).trim().split('\n').slice(-5).join(' | ') };
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

function runTorch(shape) {
  const python = process.env.PYTHON ?? '/usr/bin/python3';
  const r = spawnSync(python, [path.join(here, 'train_step_torch.py'), '--shape', JSON.stringify(shape), '--threads', String(threads), '--steps', String(steps)], {
    encoding: 'utf8',
    env: { ...process.env, OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) },
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) return { error: (r.stderr || String(r.error)).trim().split('\n').slice(-3).join(' | ') };
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Throughput figures for one side from its step times (seconds) at `shape`. */
function figures(times, shape, train) {
  const t = median(times);
  const flops = forwardFlopsPerSample(shape) * shape.batch * (train ? 3 : 1);
  return { seconds: t, samplesPerS: shape.batch / t, tokensPerS: (shape.batch * shape.seq) / t, gflops: flops / t / 1e9 };
}

/**
 * The JS backend: time both passes once on a reduced batch (2 rows, same sequence); a pass whose
 * FLOP-scaled estimate at the full batch stays under JS_LIMIT_S is then timed at the full shape,
 * any other is reported as the extrapolation (marked so).
 */
function runJs(shape) {
  const small = { ...shape, batch: 2 };
  const probe = runNode('cpu', small, ['--warmup', '0']);
  if (probe.error) return { error: probe.error };
  const scale = shape.batch / small.batch;
  const estEmbed = probe.embedTimes[0] * scale;
  const estTrain = probe.trainTimes[0] * scale;
  const res = { probe, estEmbed, estTrain };
  const needFull = (estEmbed <= JS_LIMIT_S || estTrain <= JS_LIMIT_S) && !(shape.batch === small.batch);
  let full = null;
  if (needFull) {
    // One process for both passes; a pass over the limit still gets its extrapolated figure below.
    const n = String(jsSteps);
    full = runNode('cpu', shape, ['--warmup', '0', '--embed-steps', estEmbed <= JS_LIMIT_S ? n : '0', '--train-steps', estTrain <= JS_LIMIT_S ? n : '0']);
    if (full.error) return { error: full.error };
  }
  const pick = (key, est) => (full && full[key].length > 0 ? { times: full[key], extrapolated: false } : { times: [est], extrapolated: shape.batch !== small.batch });
  res.embed = pick('embedTimes', estEmbed);
  res.train = pick('trainTimes', estTrain);
  res.embedPeakMB = full?.embedPeakMB ?? probe.embedPeakMB;
  res.trainPeakMB = full && full.trainTimes.length > 0 ? full.trainPeakMB : probe.trainPeakMB;
  res.peakFromReduced = !(full && full.trainTimes.length > 0);
  return res;
}

async function orchestrate() {
  const shape = quick ? QUICK : FULL;
  const tk = tokens(shape);
  const fwd = forwardFlopsPerSample(shape);
  const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  console.log(`unime train-step benchmark${quick ? ' (--quick shapes)' : ''}: ${threads} threads; ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}; load ${load}`);
  console.log(
    `model: CLIP ViT ${shape.visionLayers}L H${shape.visionHidden} ${shape.visionHeads}h MLP${shape.visionMlp} @${shape.imageSize}px/p${shape.patchSize} (feature layer ${shape.featureLayer}) ` +
      `-> 2-layer GELU projector -> Llama ${shape.textLayers}L H${shape.textHidden} ${shape.textHeads}h SwiGLU ${shape.textIntermediate} vocab ${shape.vocab}`,
  );
  console.log(`batch ${shape.batch} x ${shape.seq} tokens (${tk.image} image + ${tk.text} text); forward matmul FLOPs ${(fwd / 1e9).toFixed(2)} G/sample, train step 3x forward`);

  const native = runNode('native', shape, ['--embed-steps', String(steps), '--train-steps', String(steps)]);
  if (native.error) {
    console.log(`native: failed (${native.error})`);
    process.exit(1);
  }
  console.log(`native: ${(native.numParams / 1e6).toFixed(1)}M parameters, loss ${native.loss.toFixed(4)}, leaked tensors per run ${native.leakedTensors}`);
  const torch = flag('--no-torch') ? { error: 'skipped (--no-torch)' } : runTorch(shape);
  if (torch.error) console.log(`PyTorch: not measured (${torch.error})`);
  else console.log(`PyTorch ${torch.version} on CPU, ${torch.threads} threads, ${(torch.numParams / 1e6).toFixed(1)}M parameters, loss ${torch.loss.toFixed(4)}`);
  const js = flag('--no-js') ? { error: 'skipped (--no-js)' } : runJs(shape);
  if (js.error) console.log(`JS cpu backend: not measured (${js.error})`);

  const rows = [];
  const row = (pass, side, times, peak, note = '') => {
    if (!times) return;
    rows.push({ pass, side, ...figures(times, shape, pass === 'train step'), peakMB: peak, note });
  };
  for (const pass of ['train step', 'embedding pass']) {
    const key = pass === 'train step' ? 'trainTimes' : 'embedTimes';
    const peakKey = pass === 'train step' ? 'trainPeakMB' : 'embedPeakMB';
    row(pass, 'native', native[key], native[peakKey]);
    if (!torch.error) row(pass, 'pytorch', torch[key], torch[peakKey]);
    if (!js.error) {
      const p = pass === 'train step' ? js.train : js.embed;
      const notes = [];
      if (p.extrapolated) notes.push('extrapolated by FLOPs from batch 2');
      if (js.peakFromReduced && pass === 'train step') notes.push('peak at batch 2');
      row(pass, 'js cpu', p.times, js[peakKey], notes.join('; '));
    }
  }

  const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  const header = ['pass', 'side', 's/step', 'samples/s', 'tokens/s', 'GFLOP/s', 'peak RSS MB', 'note'];
  const table = rows.map((r) => [r.pass, r.side, f(r.seconds, 3), f(r.samplesPerS, 2), f(r.tokensPerS, 0), f(r.gflops), f(r.peakMB, 0), r.note]);
  const widths = header.map((h, c) => Math.max(h.length, ...table.map((t) => t[c].length)));
  const line = (cells) => cells.map((c, i) => (i < 2 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(`\nmedian of ${steps} timed steps after 1 warm-up (JS: ${jsSteps} step(s), no warm-up); peak RSS is the process high-water mark`);
  console.log(line(header));
  for (const t of table) console.log(line(t));

  const ratios = {};
  const get = (pass, side) => rows.find((r) => r.pass === pass && r.side === side);
  console.log('\nratios (native / other: throughput; memory is native peak / other peak)');
  for (const pass of ['train step', 'embedding pass']) {
    const n = get(pass, 'native');
    const pt = get(pass, 'pytorch');
    const j = get(pass, 'js cpu');
    const target = pass === 'train step' ? 0.8 : 1.0;
    const r = {
      vsPytorch: pt ? n.samplesPerS / pt.samplesPerS : null,
      memoryVsPytorch: pt ? n.peakMB / pt.peakMB : null,
      vsJs: j ? n.samplesPerS / j.samplesPerS : null,
      jsExtrapolated: j ? j.note.includes('extrapolated') : null,
    };
    ratios[pass] = r;
    const parts = [];
    if (r.vsPytorch !== null) parts.push(`vs PyTorch ${r.vsPytorch.toFixed(2)}x (target >= ${target}x${r.vsPytorch >= target ? ', met' : ', NOT met'})`);
    if (r.memoryVsPytorch !== null) parts.push(`peak memory ${r.memoryVsPytorch.toFixed(2)}x PyTorch (target <= 1.5x${r.memoryVsPytorch <= 1.5 ? ', met' : ', NOT met'})`);
    if (r.vsJs !== null) parts.push(`vs JS cpu ${r.vsJs.toFixed(1)}x${r.jsExtrapolated ? ' (JS extrapolated)' : ''}`);
    console.log(`${pass}: ${parts.join('; ') || 'no peer measured'}`);
  }

  const jsonPath = option('--json', null);
  if (jsonPath) {
    const report = {
      date: new Date().toISOString(),
      machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, loadavg: os.loadavg() },
      threads,
      steps,
      shape,
      tokens: tk,
      forwardGflopPerSample: fwd / 1e9,
      flopFormula: 'forward matmul FLOPs per sample: patch 2*P*3p^2*Hv + run_vision_layers*(2*Sv*(4Hv^2+2Hv*Iv) + 4*Sv^2*Hv) + projector 2*P*(Hv*Ht+Ht^2) + text_layers*(2*S*(4Ht^2+3Ht*It) + 4*S^2*Ht); train step = 3x forward',
      rows,
      ratios,
      raw: { native, torch, js },
    };
    writeFileSync(jsonPath, JSON.stringify(report, null, 2));
    console.log(`\nwrote ${jsonPath}`);
  }
}

const worker = option('--worker', null);
if (worker) await runWorker(worker, JSON.parse(option('--shape', '{}')));
else await orchestrate();
