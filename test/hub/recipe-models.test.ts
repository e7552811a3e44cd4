import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { parseRecipe, registerStageKind, runRecipe, stageSchema, modelRefSchema, type StageContext } from '../../src/recipes/index.js';
import { FakeHub } from './fake-hub.js';
import { TOKEN, hubTestEnv, modelRepoFiles } from './hub-helpers.js';

const FAST = { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 };

test('a recipe that names a Hub id gets the model downloaded into the HF cache when its stage runs', async () => {
  const hub = await FakeHub.start({ tokens: [TOKEN] });
  const commit = hub.addRepo('acme/tiny-mllm', modelRepoFiles());
  const t = await hubTestEnv(hub);
  const seen: string[] = [];
  const unregister = registerStageKind({
    kind: 'test-load-model',
    description: 'test only: resolves its model like an engine would',
    schema: stageSchema('test-load-model', { model: modelRefSchema, local: modelRefSchema }),
    run: async (ctx: StageContext<{ model: { path: string; revision: string }; local: { path: string; revision: string } }>) => {
      const hubDir = await ctx.resolveModel(ctx.stage.model);
      const localDir = await ctx.resolveModel(ctx.stage.local);
      seen.push(hubDir, localDir);
      return { model_dir: hubDir };
    },
  });
  try {
    const localModel = path.join(t.dir, 'local-model');
    await fsp.mkdir(localModel);
    const text = [
      'name: hubtest',
      `output_dir: ${path.join(t.dir, 'run')}`,
      'stages:',
      '  - name: load',
      '    kind: test-load-model',
      '    model: acme/tiny-mllm',
      `    local: ${localModel}`,
    ].join('\n');
    const loaded = parseRecipe(text, { file: 'hubtest.yaml' });
    const report = await runRecipe(loaded, {
      log: { info: () => {}, warn: () => {} },
      hub: { env: t.env, retry: FAST, progress: false },
    });
    assert.equal(report.stages[0]?.status, 'ran');
    const snapshot = path.join(t.cache, 'models--acme--tiny-mllm', 'snapshots', commit);
    assert.equal(seen[0], snapshot);
    assert.ok(existsSync(path.join(snapshot, 'config.json')));
    assert.ok(existsSync(path.join(snapshot, 'model-00001-of-00002.safetensors')));
    assert.equal(seen[1], localModel, 'a local directory passes through untouched');
    const marker = JSON.parse(await fsp.readFile(path.join(t.dir, 'run', 'load', 'stage.json'), 'utf8')) as { result: { model_dir: string } };
    assert.equal(marker.result.model_dir, snapshot);
  } finally {
    unregister();
    await hub.stop();
    await t.cleanup();
  }
});
