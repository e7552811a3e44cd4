import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../helpers.js';
import { UnimeError } from '../../src/errors.js';
import { parseRecipe, runRecipe } from '../../src/recipes/index.js';
import { attachStageRunner } from '../../src/recipes/registry.js';
import { makeEvalStageRunner, EVAL_CACHE_DIR } from '../../src/eval/engine.js';
import { RESULT_FILE, SUMMARY_FILE } from '../../src/eval/mmeb-eval.js';
import { generateSynthetic } from '../../tools/synth/generate.js';
import { makeTinyEmbedder } from '../models/embedder-fixture.js';
import { fakeModel, quietLog, textRows, writeTextOnlyEvalSet, WORDS } from './eval-fixtures.js';

let dir: string;
let cleanup: () => Promise<void>;
let synth: string;
let model: string;
let textRoot: string;
before(async () => {
  ({ dir, cleanup } = await tempDir('unime-eval-stage-'));
  synth = path.join(dir, 'synthetic');
  await generateSynthetic({ out: synth, seed: 0, size: 'tiny' });
  model = await makeTinyEmbedder(path.join(dir, 'model'), { seed: 3 });
  textRoot = await writeTextOnlyEvalSet(path.join(dir, 'text-eval'), { N24News: textRows(WORDS, 'news'), 'VisualNews_t2i': textRows(WORDS.slice(0, 6), 'photo') });
});
after(() => cleanup());

const quiet = () => ({ info: (_: string) => {}, warn: (_: string) => {} });

function recipe(name: string, stage: string): string {
  return `name: ${name}
output_dir: ${JSON.stringify(path.join(dir, 'runs', name))}
stages:
${stage}`;
}

test('eval stage, suite mmeb, on the tiny synthetic benchmark with a fake model: results, reports, stage.json; a forced rerun embeds nothing', async () => {
  const fake = fakeModel();
  const detach = attachStageRunner('eval', makeEvalStageRunner({ loadModel: fake.load }));
  try {
    const text = recipe(
      'syn',
      `  - name: eval
    kind: eval
    suite: mmeb
    model: ${JSON.stringify(model)}
    data:
      root: ${JSON.stringify(path.join(synth, 'mmeb-eval'))}
    batch_size: 4
    max_length: 32
`,
    );
    const log = quietLog();
    const report = await runRecipe(parseRecipe(text, { file: 'syn.yaml', env: {} }), { log });
    const st = report.stages[0]! as { status: string; result?: Record<string, unknown>; outputDir: string };
    assert.equal(st.status, 'ran');
    const r = st.result!;
    assert.equal(r.benchmark, 'Synthetic MMEB');
    assert.equal(typeof r.overall, 'number');
    assert.equal(typeof r.ind, 'number');
    assert.equal(typeof r.ood, 'number');
    assert.deepEqual(Object.keys(r.meta_tasks as object), ['Classification', 'VQA', 'Retrieval', 'Grounding']);
    assert.equal(r.complete, true);
    assert.ok((r.embeddings_per_second as number) > 0);
    assert.equal(r.embedded, fake.counters.inputs);
    for (const f of [RESULT_FILE, SUMMARY_FILE, 'mmeb-report.md', 'mmeb-report.html', 'stage.json']) assert.ok(existsSync(path.join(st.outputDir, f)), f);
    assert.ok(existsSync(path.join(st.outputDir, EVAL_CACHE_DIR)));
    const marker = JSON.parse(readFileSync(path.join(st.outputDir, 'stage.json'), 'utf8'));
    assert.equal(marker.result.overall, r.overall);
    // The printed table went to the log.
    assert.ok(log.lines.some((l) => /^Synthetic MMEB results: /.test(l)));
    assert.ok(log.lines.some((l) => /^IND\s+[0-9.]+\s+\[5\/5\]/.test(l)), log.lines.join('\n'));

    const again = fakeModel();
    detach();
    const detach2 = attachStageRunner('eval', makeEvalStageRunner({ loadModel: again.load }));
    try {
      const re = await runRecipe(parseRecipe(text, { file: 'syn.yaml', env: {} }), { log: quiet(), force: true });
      const rr = (re.stages[0] as { result?: Record<string, unknown> }).result!;
      assert.equal(again.counters.loads, 0);
      assert.equal(rr.embedded, 0);
      assert.equal(rr.overall, r.overall);
    } finally {
      detach2();
    }
  } finally {
    detach();
  }
});

test('eval stage with the real embedder: a text-only decoder checkpoint on a text-only MMEB-eval folder (two datasets)', async () => {
  await import('../../src/eval/engine.js'); // attaches the default runner
  const text = recipe(
    'real',
    `  - name: eval
    kind: eval
    suite: mmeb
    model: ${JSON.stringify(model)}
    data:
      root: ${JSON.stringify(textRoot)}
    datasets: [N24News, VisualNews_t2i]
    batch_size: 5
    max_length: 24
`,
  );
  const report = await runRecipe(parseRecipe(text, { file: 'real.yaml', env: {} }), { log: quiet() });
  const st = report.stages[0]! as { result?: Record<string, unknown>; outputDir: string };
  const r = st.result!;
  assert.equal(r.benchmark, 'MMEB');
  assert.equal(r.complete, false);
  assert.equal((r.missing as string[]).length, 34);
  assert.ok((r.embeddings_per_second as number) > 0);
  // 8 + 6 queries (the 6 of VisualNews_t2i repeat N24News's: embedded once), 8 + 6 candidates.
  assert.equal(r.embedded, 22);
  assert.equal(r.cached, 6);
  const json = JSON.parse(readFileSync(path.join(st.outputDir, RESULT_FILE), 'utf8'));
  for (const d of ['N24News', 'VisualNews_t2i']) {
    const m = json.metrics.image[d];
    assert.ok(m['hit@1'] >= 0 && m['hit@1'] <= 1);
    assert.equal(m.num_data, d === 'N24News' ? 8 : 6);
  }
  const md = readFileSync(path.join(st.outputDir, 'mmeb-report.md'), 'utf8');
  assert.match(md, /\*\*Incomplete\.\*\* 34 of 36 datasets missing/);
});

test('eval stage, suite zeroshot, with a fake model: the stage prompts and templates file are used, results in the stage dir', async () => {
  const fake = fakeModel();
  const detach = attachStageRunner('eval', makeEvalStageRunner({ loadModel: fake.load }));
  try {
    const root = path.join(dir, 'zs');
    for (const c of ['cat', 'dog']) {
      await fsp.mkdir(path.join(root, c), { recursive: true });
      for (const i of [1, 2]) await fsp.writeFile(path.join(root, c, `${i}.png`), `${c}-${i}`);
    }
    const templates = path.join(dir, 'zs-templates.txt');
    await fsp.writeFile(templates, 'a {} here\n');
    const text = recipe(
      'zs',
      `  - name: eval
    kind: eval
    suite: zeroshot
    model: ${JSON.stringify(model)}
    data:
      root: ${JSON.stringify(root)}
      templates: ${JSON.stringify(templates)}
    text_prompt: "Query: <sent>"
    image_prompt: "<image> Picture:"
`,
    );
    const report = await runRecipe(parseRecipe(text, { file: 'zs.yaml', env: {} }), { log: quietLog() });
    const st = report.stages[0]! as { status: string; result?: Record<string, unknown>; outputDir: string };
    assert.equal(st.status, 'ran');
    assert.equal(st.result!.suite, 'zeroshot');
    assert.equal(typeof st.result!.score, 'number');
    assert.ok(fake.counters.texts.includes('Query: a cat here'));
    assert.ok(fake.counters.texts.includes('<image> Picture:'));
    const json = JSON.parse(readFileSync(path.join(st.outputDir, 'zeroshot.json'), 'utf8'));
    assert.deepEqual(json.scores.class_names, ['cat', 'dog']);
    assert.ok(existsSync(path.join(st.outputDir, 'zeroshot-report.md')));
    assert.ok(existsSync(path.join(st.outputDir, EVAL_CACHE_DIR)));
  } finally {
    detach();
  }
});

test('eval stage: a suite whose data is not in its format, a bad init_from and a bad data root are errors naming them', async () => {
  await import('../../src/eval/engine.js');
  const stage = (extra: string, root = textRoot) => `  - name: eval
    kind: eval
    suite: ${extra}
    model: ${JSON.stringify(model)}
    data:
      root: ${JSON.stringify(root)}
`;
  await assert.rejects(
    runRecipe(parseRecipe(recipe('other', stage('sugarcrepe')), { file: 'other.yaml', env: {} }), { log: quiet() }),
    (e: unknown) => e instanceof UnimeError && e.message.includes(textRoot) && /SugarCrepe subset files/.test(e.message) && /stages\[0\]\.data\.root/.test(e.message),
  );
  const noAdapter = path.join(dir, 'no-adapter');
  await fsp.mkdir(noAdapter);
  await assert.rejects(
    runRecipe(parseRecipe(recipe('bad-init', stage('mmeb') + `    init_from: ${JSON.stringify(noAdapter)}\n`), { file: 'b.yaml', env: {} }), { log: quiet() }),
    (e: unknown) => e instanceof UnimeError && e.message.includes(noAdapter) && /holds no LoRA adapter/.test(e.message),
  );
  const nowhere = path.join(dir, 'no-such-data');
  await assert.rejects(
    runRecipe(parseRecipe(recipe('bad-data', stage('mmeb', nowhere)), { file: 'c.yaml', env: {} }), { log: quiet() }),
    (e: unknown) => e instanceof UnimeError && e.message.includes(nowhere),
  );
});

test('eval stage with the tiny LLaVA fixture on the synthetic benchmark (images from images.zip); init_from merges a stage\'s adapter and is another cache identity', async () => {
  await import('../../src/eval/engine.js');
  const { fixture } = await import('../helpers.js');
  const { loadLlava } = await import('../../src/models/mllm/llava.js');
  const { applyLora, saveLoraAdapter } = await import('../../src/models/peft/index.js');
  const { tf } = await import('../../src/runtime/tf.js');
  const llava = fixture('llava', 'llava-tiny-full');
  const trained = path.join(dir, 'trained-stage');
  const m = await loadLlava(llava);
  try {
    const adapter = applyLora(m.decoder, { r: 2, alpha: 4, targetModules: ['q_proj', 'v_proj'] });
    for (const l of adapter.layers) l.loraB.assign(tf.randomNormal(l.loraB.shape, 0, 0.3, 'float32', 11));
    await saveLoraAdapter(path.join(trained, 'adapter'), m.decoder);
  } finally {
    m.dispose();
  }
  const stage = (name: string, initFrom: string | null) => `  - name: ${name}
    kind: eval
    suite: mmeb
    model: ${JSON.stringify(llava)}
${initFrom ? `    init_from: ${JSON.stringify(initFrom)}\n` : ''}    data:
      root: ${JSON.stringify(synth)}
    datasets: [SynCls, SynRet-i2t-OOD]
    batch_size: 8
    max_length: 64
`;
  const report = await runRecipe(parseRecipe(recipe('llava', stage('base', null) + stage('tuned', trained)), { file: 'llava.yaml', env: {} }), { log: quiet() });
  const [base, tuned] = report.stages.map((s) => (s as { result?: Record<string, unknown> }).result!);
  assert.equal(base!.benchmark, 'Synthetic MMEB');
  assert.deepEqual(tuned!.adapters, [path.join(trained, 'adapter')]);
  assert.ok((base!.embedded as number) > 0 && tuned!.embedded === base!.embedded);
  assert.ok((base!.embeddings_per_second as number) > 0);
  const read = (s: unknown) => JSON.parse(readFileSync(path.join((s as { outputDir: string }).outputDir, RESULT_FILE), 'utf8'));
  const [jb, jt] = [read(report.stages[0]), read(report.stages[1])];
  assert.deepEqual(Object.keys(jb.metrics.image), ['SynCls', 'SynRet-i2t-OOD']);
  assert.equal(jb.metrics.image.SynCls.num_data, 8);
  assert.deepEqual(jt.metadata.adapters, [path.join(trained, 'adapter')]);
});
