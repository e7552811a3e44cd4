import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { NotImplementedYetError } from '../../src/errors.js';
import {
  parseRecipe,
  registerStageKind,
  runRecipe,
  stageSchema,
  RecipeError,
  RESOLVED_RECIPE,
  STAGE_MARKER,
  type StageContext,
  type StageMarker,
} from '../../src/recipes/index.js';
import { tempDir } from '../helpers.js';
import { registerRunFinisher, type RunFinishContext } from '../../src/recipes/registry.js';
import { recipeErrorAsync } from './helpers.js';

const echoSchema = stageSchema('test-echo', {
  message: z.string().default('hi'),
  input: z.string().nullable().default(null),
});
type EchoStage = z.output<typeof echoSchema>;

interface Call {
  name: string;
  outputDir: string;
  previousOutput: string | null;
  initFrom: string | null;
  message: string;
  input: string | null;
  markerExisted: boolean;
}
let calls: Call[] = [];
/** What the run finishers were handed, run after run. */
const finished: RunFinishContext[] = [];
registerRunFinisher('runner-test-probe', async (ctx) => {
  finished.push(ctx);
});
let failOn: string | undefined;
const unregister: Array<() => void> = [];

before(() => {
  unregister.push(
    registerStageKind({
      kind: 'test-echo',
      schema: echoSchema,
      description: 'test-only: records its call and writes out.txt',
      inputs: (s) => ({ input: s.input }),
      run: async (ctx: StageContext<EchoStage>) => {
        calls.push({
          name: ctx.stage.name,
          outputDir: ctx.outputDir,
          previousOutput: ctx.previousOutput,
          initFrom: ctx.initFrom,
          message: ctx.stage.message,
          input: ctx.stage.input,
          markerExisted: existsSync(path.join(ctx.outputDir, STAGE_MARKER)),
        });
        assert.ok(existsSync(ctx.outputDir), 'the output dir exists when the runner starts');
        assert.equal(ctx.stageOutputs[ctx.stage.name], ctx.outputDir);
        if (failOn === ctx.stage.name) throw new Error(`boom in ${ctx.stage.name}`);
        await fsp.writeFile(path.join(ctx.outputDir, 'out.txt'), ctx.stage.message);
        return { wrote: 'out.txt', index: ctx.index };
      },
    }),
    registerStageKind({
      kind: 'test-no-engine',
      schema: stageSchema('test-no-engine', {}),
      description: 'test-only: a kind with no runner',
    }),
  );
});
after(() => unregister.forEach((u) => u()));

const RECIPE = `name: run-test
output_dir: out/\${name}
stages:
  - name: first
    kind: test-echo
    message: one
  - name: second
    kind: test-echo
    message: two
    init_from: first
  - name: third
    kind: test-echo
    message: three
    input: \${stages.first.output_dir}/out.txt
`;

const quiet = () => {
  const lines: string[] = [];
  return { lines, log: { info: (m: string) => lines.push(m), warn: (m: string) => lines.push(`warn: ${m}`) } };
};

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempDir('unime-runner-');
  calls = [];
  failOn = undefined;
  try {
    await fn(dir);
  } finally {
    await cleanup();
  }
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(path.relative(dir, path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)));
  }
  return out.sort();
}

test('stages run in order, each gets its dir, the previous output and init_from resolved', async () => {
  await withDir(async (dir) => {
    const loaded = parseRecipe(RECIPE, { file: 'run.yaml', env: {} });
    const { log } = quiet();
    const report = await runRecipe(loaded, { cwd: dir, log });
    const root = path.join(dir, 'out', 'run-test');
    assert.deepEqual(calls.map((c) => c.name), ['first', 'second', 'third']);
    assert.deepEqual(calls.map((c) => c.outputDir), ['first', 'second', 'third'].map((n) => path.join(root, n)));
    assert.deepEqual(calls.map((c) => c.previousOutput), [null, path.join(root, 'first'), path.join(root, 'second')]);
    assert.equal(calls[1]!.initFrom, path.join(root, 'first'));
    assert.equal(calls[2]!.input, 'out/run-test/first/out.txt');
    assert.deepEqual(report.stages.map((s) => s.status), ['ran', 'ran', 'ran']);
    assert.deepEqual(report.stages[2]!.needs, ['first']);
    assert.equal(report.outputDir, root);

    // Markers and the resolved recipe are there, and no temp files are left behind.
    assert.deepEqual(await listFiles(root), [
      'first/out.txt',
      'first/stage.json',
      RESOLVED_RECIPE,
      'second/out.txt',
      'second/stage.json',
      'third/out.txt',
      'third/stage.json',
    ].sort());
    const marker = JSON.parse(await fsp.readFile(path.join(root, 'second', STAGE_MARKER), 'utf8')) as StageMarker;
    assert.equal(marker.status, 'completed');
    assert.equal(marker.stage, 'second');
    assert.equal(marker.kind, 'test-echo');
    assert.equal(marker.recipe, 'run-test');
    assert.equal(marker.previous_output, path.join(root, 'first'));
    assert.deepEqual(marker.result, { wrote: 'out.txt', index: 1 });
    assert.equal(marker.config.message, 'two');
    assert.match(marker.config_hash, /^sha256:[0-9a-f]{64}$/);
    const resolved = parseRecipe(await fsp.readFile(path.join(root, RESOLVED_RECIPE), 'utf8'), { env: {} });
    assert.deepEqual(resolved.recipe, loaded.recipe);
  });
});

test('a rerun skips completed stages; force reruns them (dropping the old marker first)', async () => {
  await withDir(async (dir) => {
    const loaded = parseRecipe(RECIPE, { file: 'run.yaml', env: {} });
    await runRecipe(loaded, { cwd: dir, log: quiet().log });
    calls = [];
    const q = quiet();
    const finishedBefore = finished.length;
    const again = await runRecipe(loaded, { cwd: dir, log: q.log });
    assert.equal(calls.length, 0);
    assert.deepEqual(again.stages.map((s) => s.status), ['skipped', 'skipped', 'skipped']);
    assert.ok(q.lines.some((l) => /stage first .*already completed/.test(l)));
    // Run finishers (the run report) still run, from what is on disk, so the report's path is printed again.
    assert.equal(finished.length, finishedBefore + 1);
    assert.deepEqual(finished[finishedBefore]!.stages.map((s) => s.completed), [true, true, true]);
    const before = finished.length;
    await runRecipe(loaded, { cwd: dir, log: quiet().log, dryRun: true });
    assert.equal(finished.length, before, 'a dry run finishes nothing');

    const forced = await runRecipe(loaded, { cwd: dir, log: quiet().log, force: true, only: ['second'] });
    assert.deepEqual(calls.map((c) => c.name), ['second']);
    assert.equal(calls[0]!.markerExisted, false, 'the old marker is removed before a forced rerun starts');
    assert.deepEqual(forced.stages.map((s) => s.status), ['not-selected', 'ran', 'not-selected']);
  });
});

test('a failed stage leaves no marker and the next run resumes there', async () => {
  await withDir(async (dir) => {
    const loaded = parseRecipe(RECIPE, { file: 'run.yaml', env: {} });
    failOn = 'second';
    await assert.rejects(runRecipe(loaded, { cwd: dir, log: quiet().log }), /boom in second/);
    const root = path.join(dir, 'out', 'run-test');
    assert.ok(existsSync(path.join(root, 'first', STAGE_MARKER)));
    assert.ok(!existsSync(path.join(root, 'second', STAGE_MARKER)));
    assert.deepEqual((await fsp.readdir(path.join(root, 'second'))).filter((f) => f.includes('.tmp-')), []);
    failOn = undefined;
    calls = [];
    const report = await runRecipe(loaded, { cwd: dir, log: quiet().log });
    assert.deepEqual(calls.map((c) => c.name), ['second', 'third']);
    assert.deepEqual(report.stages.map((s) => s.status), ['skipped', 'ran', 'ran']);
  });
});

test('a corrupt marker counts as not completed', async () => {
  await withDir(async (dir) => {
    const loaded = parseRecipe(RECIPE, { file: 'run.yaml', env: {} });
    await runRecipe(loaded, { cwd: dir, log: quiet().log });
    await fsp.writeFile(path.join(dir, 'out', 'run-test', 'first', STAGE_MARKER), '{"format": "unime-st');
    calls = [];
    const q = quiet();
    await runRecipe(loaded, { cwd: dir, log: q.log });
    // first runs again, and so do the two stages made from its output.
    assert.deepEqual(calls.map((c) => c.name), ['first', 'second', 'third']);
    assert.ok(q.lines.some((l) => /warn: .*not a valid completion marker/.test(l)));
  });
});

test('a completed stage whose input stage ran again since reruns from scratch; stages that do not read it stay skipped', async () => {
  await withDir(async (dir) => {
    const loaded = parseRecipe(RECIPE, { file: 'run.yaml', env: {} });
    await runRecipe(loaded, { cwd: dir, log: quiet().log });

    // second reads nothing third needs: rerunning it leaves third up to date.
    await runRecipe(loaded, { cwd: dir, log: quiet().log, force: true, only: ['second'] });
    calls = [];
    const plain = await runRecipe(loaded, { cwd: dir, log: quiet().log });
    assert.deepEqual(calls, []);
    assert.deepEqual(plain.stages.map((s) => s.changedInputs), [[], [], []]);

    // first is read by second (init_from) and third (a path under its output): with --only first the
    // plan says they are out of date, and the next plain run reruns them, fresh.
    const q = quiet();
    await runRecipe(loaded, { cwd: dir, log: q.log, force: true, only: ['first'], showPlan: true });
    assert.match(q.lines.join('\n'), /2\. second .*skip \(not selected, though it reads first, which changed since it ran or runs now\)/);
    calls = [];
    const fresh: boolean[] = [];
    const unhook = registerStageKind({
      kind: 'test-fresh',
      schema: stageSchema('test-fresh', { input: z.string() }),
      description: 'test-only: records ctx.fresh',
      run: async (ctx) => {
        fresh.push(ctx.fresh);
        return {};
      },
    });
    try {
      const q2 = quiet();
      const again = await runRecipe(loaded, { cwd: dir, log: q2.log, showPlan: true });
      assert.deepEqual(calls.map((c) => c.name), ['second', 'third']);
      assert.deepEqual(again.stages.map((s) => s.status), ['skipped', 'ran', 'ran']);
      assert.deepEqual(again.stages.map((s) => s.changedInputs), [[], ['first'], ['first']]);
      assert.match(q2.lines.join('\n'), /3\. third .*rerun \(it reads first, changed since it ran\)/);
      assert.ok(q2.lines.some((l) => /stage second \(test-echo\): completed earlier, but first it reads from changed since; running it again from scratch/.test(l)));

      // The rerun is fresh (a resumed checkpoint would mix the old input with the new).
      const withFresh = parseRecipe(
        `name: run-test\noutput_dir: out/\${name}\nstages:\n  - {name: first, kind: test-echo, message: one}\n  - {name: user, kind: test-fresh, input: "\${stages.first.output_dir}/out.txt"}\n`,
        { file: 'fresh.yaml', env: {} },
      );
      await runRecipe(withFresh, { cwd: dir, log: quiet().log, only: ['user'], force: false });
      assert.deepEqual(fresh, [false], 'a first run of a stage is not forced');
      await runRecipe(withFresh, { cwd: dir, log: quiet().log, force: true, only: ['first'] });
      await runRecipe(withFresh, { cwd: dir, log: quiet().log });
      assert.deepEqual(fresh, [false, true]);
    } finally {
      unhook();
    }
  });
});

test('a changed configuration of a completed stage is kept, with a warning', async () => {
  await withDir(async (dir) => {
    await runRecipe(parseRecipe(RECIPE, { env: {} }), { cwd: dir, log: quiet().log });
    calls = [];
    const q = quiet();
    await runRecipe(parseRecipe(RECIPE, { overrides: ['stages.first.message=changed'], env: {} }), { cwd: dir, log: q.log });
    assert.equal(calls.length, 0);
    assert.ok(q.lines.some((l) => /warn: stage first completed earlier with a different configuration \(changed: message\).*--force --only first/.test(l)), q.lines.join('\n'));
  });
});

test('only and from select stages; bad names and both together are errors', async () => {
  await withDir(async (dir) => {
    const loaded = parseRecipe(RECIPE, { file: 'run.yaml', env: {} });
    const fromReport = await runRecipe(loaded, { cwd: dir, log: quiet().log, from: 'first' });
    assert.deepEqual(fromReport.stages.map((s) => s.status), ['ran', 'ran', 'ran']);
    calls = [];
    await runRecipe(loaded, { cwd: dir, log: quiet().log, from: 'second', force: true });
    assert.deepEqual(calls.map((c) => c.name), ['second', 'third']);
    calls = [];
    await runRecipe(loaded, { cwd: dir, log: quiet().log, only: ['third', 'first'], force: true });
    assert.deepEqual(calls.map((c) => c.name), ['first', 'third']);

    const typo = await recipeErrorAsync(() => runRecipe(loaded, { cwd: dir, log: quiet().log, only: ['secnd'] }));
    assert.match(typo.message, /^run\.yaml: --only names stage `secnd`, which is not in the recipe \(did you mean `second`\?\); stages: first, second, third/);
    const from = await recipeErrorAsync(() => runRecipe(loaded, { cwd: dir, log: quiet().log, from: 'fourth' }));
    assert.match(from.message, /--from names stage `fourth`/);
    const both = await recipeErrorAsync(() => runRecipe(loaded, { cwd: dir, log: quiet().log, from: 'first', only: ['first'] }));
    assert.match(both.message, /either --only or --from/);
  });
});

test('a stage reading an earlier stage that has not completed is refused before anything runs', async () => {
  await withDir(async (dir) => {
    const loaded = parseRecipe(RECIPE, { file: 'run.yaml', env: {} });
    const e = await recipeErrorAsync(() => runRecipe(loaded, { cwd: dir, log: quiet().log, only: ['third'] }));
    assert.ok(e instanceof RecipeError);
    assert.match(e.message, /stage `third` reads the output of stage `first` .*which has not completed/);
    assert.match(e.message, /fix: run stage first first, e\.g\. --from first/);
    assert.equal(calls.length, 0);
    assert.ok(!existsSync(path.join(dir, 'out')));
    // init_from also counts.
    const e2 = await recipeErrorAsync(() => runRecipe(loaded, { cwd: dir, log: quiet().log, from: 'second' }));
    assert.match(e2.message, /stage `second` reads the output of stage `first`/);
  });
});

test('a kind without an engine throws NotImplementedYetError naming stage and kind, and writes nothing', async () => {
  await withDir(async (dir) => {
    const text = RECIPE + '  - name: later\n    kind: test-no-engine\n  - name: score\n    kind: eval\n    suite: mmeb\n    model: m\n    data: {root: d}\n';
    const loaded = parseRecipe(text, { file: 'ni.yaml', env: {} });
    await assert.rejects(runRecipe(loaded, { cwd: dir, log: quiet().log }), (e: unknown) => {
      assert.ok(e instanceof NotImplementedYetError);
      assert.match(e.message, /^ni\.yaml: stages\[3\]: stage `later` \(kind test-no-engine\): the test-no-engine engine is not in this build yet; nothing was run or written\. Also without an engine: score \(eval\)/);
      return true;
    });
    assert.equal(calls.length, 0);
    assert.ok(!existsSync(path.join(dir, 'out')), 'nothing is written');
    // The stages that have engines still run when selected alone.
    await runRecipe(loaded, { cwd: dir, log: quiet().log, only: ['first'] });
    assert.deepEqual(calls.map((c) => c.name), ['first']);
  });
});

test('dry run prints the plan (stage, kind, output dir, inputs) and writes nothing', async () => {
  await withDir(async (dir) => {
    const text = RECIPE + '  - name: score\n    kind: eval\n    suite: mmeb\n    model: some/model\n    init_from: second\n    data: {root: data/eval}\n';
    const loaded = parseRecipe(text, { file: 'dry.yaml', env: {} });
    const q = quiet();
    const report = await runRecipe(loaded, { cwd: dir, log: q.log, dryRun: true });
    assert.equal(calls.length, 0);
    assert.ok(!existsSync(path.join(dir, 'out')));
    assert.equal(report.dryRun, true);
    assert.deepEqual(report.stages.map((s) => s.status), ['planned', 'planned', 'planned', 'planned']);
    assert.deepEqual(report.stages.map((s) => s.action), ['run', 'run', 'run', 'run']);
    assert.deepEqual(report.stages.map((s) => s.hasRunner), [true, true, true, false]);
    const plan = q.lines.join('\n');
    assert.match(plan, /recipe run-test \(dry\.yaml\) -> out\/run-test/);
    assert.match(plan, /1\. first {2}\(test-echo\) {2}-> out\/run-test\/first {2}run/);
    assert.match(plan, /3\. third {2}\(test-echo\) {2}-> out\/run-test\/third {2}run\n {7}input: out\/run-test\/first\/out\.txt\n {7}previous_output: out\/run-test\/second\n {7}needs stage first \(runs first\)/);
    assert.match(plan, /4\. score {2}\(eval\) {2}-> out\/run-test\/score {2}run {2}\[engine not in this build\]\n {7}init_from: second\n {7}model: some\/model\n {7}data: data\/eval/);

    await runRecipe(loaded, { cwd: dir, log: quiet().log, only: ['first'] });
    const q2 = quiet();
    const r2 = await runRecipe(loaded, { cwd: dir, log: q2.log, dryRun: true });
    assert.deepEqual(r2.stages.map((s) => s.action), ['skip-completed', 'run', 'run', 'run']);
    assert.match(q2.lines.join('\n'), /first .*skip \(completed\)/);
    assert.match(q2.lines.join('\n'), /needs stage first \(completed\)/);
  });
});
