/**
 * The CLIP-side synthetic recipe, shortened, through the CLI: the LLM is made an embedder, its caption
 * features cached, LIFT / LLM2CLIP / ProCLIP stage 2 each train a tower for a few steps, and every
 * eval stage (retrieval, zero-shot, SugarCrepe) loads the saved CLIP-side models and writes its scores.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { runCli } from './run-cli.js';
import { tempDir } from '../helpers.js';

test('recipes/clip-synthetic.yaml runs end to end through the CLI (shortened); the evals read the CLIP-side models', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const run = path.join(dir, 'run');
    const short = (s: string) => [`stages.${s}.train.epochs=null`, `stages.${s}.train.max_steps=3`];
    const r = await runCli(
      ['train', 'recipes/clip-synthetic.yaml', `output_dir=${run}`, `vars.data=${path.join(dir, 'synthetic')}`, 'stages.data.size=tiny', ...short('text-train'), ...short('lift'), ...short('llm2clip'), ...short('proclip')],
      { timeoutMs: 900_000 },
    );
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    for (const m of ['lift', 'llm2clip', 'proclip']) {
      const stage = JSON.parse(await fsp.readFile(path.join(run, m, 'stage.json'), 'utf8')) as { result: Record<string, unknown> };
      assert.equal(stage.result.steps, 3, m);
      assert.ok(existsSync(path.join(run, m, 'model', 'unime_clip.json')), `${m} saved its model`);
      const ret = JSON.parse(await fsp.readFile(path.join(run, `eval-${m}-retrieval`, 'retrieval.json'), 'utf8')) as { scores: Record<string, number> };
      assert.ok(Number.isFinite(ret.scores.mean), `${m} retrieval scored`);
      const zs = JSON.parse(await fsp.readFile(path.join(run, `eval-${m}-zeroshot`, 'zeroshot.json'), 'utf8')) as { settings: Record<string, unknown> };
      assert.equal(zs.settings.text_prompt, '<sent>', 'a CLIP-side model takes bare class prompts');
      assert.ok(existsSync(path.join(run, `eval-${m}-sugarcrepe`, 'sugarcrepe.json')));
    }
    // The run report the recipe promises: a table per suite, one column per eval stage, deltas against LIFT.
    assert.match(r.stderr + r.stdout, /report: .*report\.html/);
    const md = await fsp.readFile(path.join(run, 'report.md'), 'utf8');
    assert.match(md, /^### Caption retrieval \(recall, percent\)$/m);
    assert.match(md, /\| Metric \| eval-lift-retrieval \| eval-llm2clip-retrieval \| Δ vs eval-lift-retrieval \| eval-proclip-retrieval \| Δ vs eval-lift-retrieval \|/);
    // each delta with its bootstrap interval (the suites keep their rows' outcomes)
    assert.match(md, /\| mean of the six recalls \| [0-9.]+ \| [0-9.]+ \| ([-+][0-9.]+|0\.00) \[[-+0-9.]+, [-+0-9.]+\] \|/);
    assert.match(md, /^### SugarCrepe/m);
    assert.match(md, /\| swap\\_att \| [0-9.]+ \|/); // escaped Markdown, rendered as swap_att
    assert.match(md, /\| top-1 \| [0-9.]+ \|/);
    assert.match(md, /^## Training$/m);
    assert.match(await fsp.readFile(path.join(run, 'report.html'), 'utf8'), /<h3>Zero-shot classification \(accuracy, percent\)<\/h3>/);
    // ProCLIP continued the LLM2CLIP model and kept its EMA teacher in the checkpoint
    const ck = path.join(run, 'proclip', 'checkpoints');
    const steps = await fsp.readdir(ck);
    assert.ok(steps.some((s) => existsSync(path.join(ck, s, 'ema.safetensors'))), steps.join(', '));
  } finally {
    await cleanup();
  }
});
