import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../../src/errors.js';
import { loadRecipe, parseRecipe, RecipeError } from '../../src/recipes/index.js';
import { tempDir } from '../helpers.js';
import { MINIMAL, recipeError, recipeErrorAsync } from './helpers.js';

const DISTILL = `name: e
stages:
  - name: teacher
    kind: teacher-embed
    data:
      path: nli.csv
  - name: distill
    kind: unime-distill
    model: m
    data:
      path: nli.csv
    teacher_cache: \${stages.teacher.output_dir}
    train:
      lr: abc
      epochs: 2
`;

test('a schema error names file, line, column, field path, expected and found', () => {
  const e = recipeError(() => parseRecipe(DISTILL, { file: 'recipes/e.yaml', env: {} }));
  assert.ok(e instanceof UnimeError);
  assert.equal(e.file, 'recipes/e.yaml');
  assert.equal(e.line, 14);
  assert.equal(e.column, 11);
  assert.equal(e.field, 'stages[1].train.lr');
  assert.equal(e.message.split('\n')[0], 'recipes/e.yaml:14:11: stages[1].train.lr: expected a number, found the string "abc"');
  assert.equal(e.problems.length, 1);
});

test('unknown keys get "did you mean" and point at the key', () => {
  const e = recipeError(() => parseRecipe(DISTILL.replace('epochs: 2', 'epoch: 2').replace('lr: abc', 'lr: 1e-4'), { file: 'e.yaml', env: {} }));
  assert.match(e.message, /^e\.yaml:15:7: stages\[1\]\.train\.epoch: unknown field `epoch` \(did you mean `epochs`\?\); expected one of: lr, epochs, max_steps/);
  const top = recipeError(() => parseRecipe(MINIMAL + 'precison: bf16\n', { file: 'e.yaml', env: {} }));
  assert.match(top.message, /^e\.yaml:9:1: precison: unknown field `precison` \(did you mean `precision`\?\)/);
  const far = recipeError(() => parseRecipe(MINIMAL + 'zzzzzz: 1\n', { file: 'e.yaml', env: {} }));
  assert.doesNotMatch(far.message, /did you mean/);
  assert.match(far.message, /unknown field `zzzzzz`; expected one of: name, description, seed/);
});

test('a missing key points at the mapping it belongs in', () => {
  const e = recipeError(() => parseRecipe(DISTILL.replace('    teacher_cache: ${stages.teacher.output_dir}\n', '').replace('lr: abc', 'lr: 1'), { file: 'e.yaml', env: {} }));
  assert.equal(e.message.split('\n')[0], 'e.yaml:7:5: stages[1].teacher_cache: missing required field `teacher_cache` (expected a string)');
  const nested = recipeError(() => parseRecipe(MINIMAL.replace('      root: d\n', '      rooot: d\n'), { file: 'e.yaml', env: {} }));
  // data: is on line 7; the missing root is reported there, the stray key at its own line.
  assert.match(nested.message, /^e\.yaml:7:5: stages\[0\]\.data\.root: missing required field `root`/);
  assert.match(nested.message, /also e\.yaml:8:7: stages\[0\]\.data\.rooot: unknown field `rooot` \(did you mean `root`\?\)/);
  assert.equal(nested.problems.length, 2);
  const noName = recipeError(() => parseRecipe('stages:\n  - name: a\n    kind: eval\n', { file: 'e.yaml', env: {} }));
  assert.match(noName.message, /e\.yaml:1:1: name: missing required field `name`/);
  const noKind = recipeError(() => parseRecipe('name: x\nstages:\n  - name: a\n', { file: 'e.yaml', env: {} }));
  assert.match(noKind.message, /e\.yaml:3:5: stages\[0\]\.kind: missing required field `kind` \(expected one of: synthetic-data, teacher-embed, unime-distill/);
});

test('type, range and enum errors say what was expected', () => {
  const cases: Array<[string[], RegExp]> = [
    [['seed=1.5'], /seed: .*expected an integer, found the number 1\.5/],
    [['seed=1e300'], /seed: .*expected a number <= 9007199254740991, found the number 1e\+300/],
    [['device=gpu'], /device: .*expected one of "auto", "cpu", "native", "cuda", found the string "gpu"/],
    [['precision=fp16'], /precision: .*expected one of "fp32", "tf32", "bf16", found the string "fp16"$/m],
    [['precision=BF-16'], /precision: .*found the string "BF-16" \(did you mean `bf16`\?\)/],
    [['stages.0.batch_size=0'], /stages\[0\]\.batch_size: .*expected a number >= 1, found the number 0/],
    [['stages.0.model=42'], /stages\[0\]\.model: .*expected a Hub id or checkpoint directory, or a mapping \{path, revision\}, found the number 42/],
    [['stages.0.data=[]'], /stages\[0\]\.data: .*expected a mapping, found an empty list/],
    [['name=..'], /name: .*expected a name of lowercase letters, digits, "\.", "_" and "-", starting with a letter or digit, found the string "\.\."/],
    [['stages.0.name=Stage One'], /stages\[0\]\.name: .*expected a stage name of lowercase letters/],
    [['stages.0=5'], /stages\[0\]: .*expected a stage \(a mapping with name: and kind:\), found the number 5/],
    [['stages=5'], /stages: .*expected a list, found the number 5/],
    [['vars=[1]'], /vars: .*expected a mapping, found a list of 1 item/],
    [['stages.0.datasets=[a, 1]'], /stages\[0\]\.datasets\[1\]: .*expected a string, found the number 1/],
    [['stages.0.image_size=.inf'], /stages\[0\]\.image_size: .*found Infinity/],
  ];
  for (const [ov, re] of cases) {
    const e = recipeError(() => parseRecipe(MINIMAL, { file: 'm.yaml', overrides: ov, env: {} }));
    assert.match(e.message, re, ov.join(' '));
    assert.match(e.message, /^m\.yaml/);
  }
});

test('YAML syntax errors carry line and column from the parser', () => {
  const e = recipeError(() => parseRecipe('name: x\nstages:\n  - name: a\n   kind: eval\n', { file: 'y.yaml' }));
  assert.match(e.message, /^y\.yaml:\d+:\d+: invalid YAML: /);
  assert.ok(e.line !== undefined && e.column !== undefined);
  const flow = recipeError(() => parseRecipe('name: x\nstages: [\n', { file: 'y.yaml' }));
  assert.match(flow.message, /^y\.yaml:\d+:\d+: invalid YAML/);
  const tab = recipeError(() => parseRecipe('name: x\nstages:\n\t- a\n', { file: 'y.yaml' }));
  assert.match(tab.message, /^y\.yaml:3:\d+: invalid YAML/);
  const tmpl = recipeError(() => parseRecipe('name: x\ndata: {root: ${vars.d}}\n', { file: 'y.yaml' }));
  assert.match(tmpl.message, /fix: inside \[\.\.\.\] or \{\.\.\.\}, quote values that contain \$\{\.\.\.\}/);
});

test('duplicate keys, multiple documents, non-mapping top level, empty content', () => {
  const dup = recipeError(() => parseRecipe('name: a\nseed: 1\nname: b\n', { file: 'd.yaml' }));
  assert.equal(dup.message.split('\n')[0], 'd.yaml:3:1: duplicate key `name`: a mapping may set each key only once');
  const nestedDup = recipeError(() => parseRecipe(MINIMAL.replace('suite: mmeb', 'suite: mmeb\n    suite: retrieval'), { file: 'd.yaml' }));
  assert.match(nestedDup.message, /^d\.yaml:6:5: duplicate key `suite`/);
  const docs = recipeError(() => parseRecipe('name: a\n---\nname: b\n', { file: 'd.yaml' }));
  assert.match(docs.message, /more than one YAML document/);
  const list = recipeError(() => parseRecipe('- name: a\n', { file: 'd.yaml' }));
  assert.match(list.message, /^d\.yaml:1:1: expected the top level to be a mapping \(name:, stages:, \.\.\.\), found a list/);
  const scalar = recipeError(() => parseRecipe('just text\n', { file: 'd.yaml' }));
  assert.match(scalar.message, /found the scalar "just text"/);
  assert.match(recipeError(() => parseRecipe('', { file: 'd.yaml' })).message, /^d\.yaml: the file is empty/);
  assert.match(recipeError(() => parseRecipe('  \n\n', { file: 'd.yaml' })).message, /the file is empty/);
  assert.match(recipeError(() => parseRecipe('# only a comment\n', { file: 'd.yaml' })).message, /no content/);
  assert.match(recipeError(() => parseRecipe('---\n', { file: 'd.yaml' })).message, /no content/);
});

test('anchors and aliases work; alias bombs and undefined aliases fail fast', () => {
  const ok = parseRecipe(
    `name: a
vars:
  common: &common {suite: mmeb, model: m, data: {root: d}}
stages:
  - name: one
    kind: eval
    <<: *common
  - name: two
    kind: eval
    <<: *common
    suite: retrieval
`,
    { env: {} },
  ).recipe;
  assert.equal(ok.stages[0]!.suite, 'mmeb');
  assert.equal(ok.stages[1]!.suite, 'retrieval');

  let bomb = 'name: bomb\na: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
  const L = 'abcdefghij';
  for (let i = 1; i < 10; i++) bomb += `${L[i]}: &${L[i]} [${Array(9).fill('*' + L[i - 1]).join(',')}]\n`;
  // refused by a count of alias expansions (the message), not after expanding 9^10 nodes
  const e = recipeError(() => parseRecipe(bomb, { file: 'bomb.yaml' }));
  assert.match(e.message, /^bomb\.yaml:\d+:\d+: too many alias expansions/);

  const undef = recipeError(() => parseRecipe('name: u\nstages: *nope\n', { file: 'u.yaml' }));
  assert.match(undef.message, /u\.yaml:2:9: alias \*nope refers to an anchor &nope that is not defined before it/);
});

test('absurd nesting and size are refused with a RecipeError', () => {
  const deep = 'name: d\nvars:\n  x: ' + '['.repeat(40) + ']'.repeat(40) + '\n';
  assert.match(recipeError(() => parseRecipe(deep, { file: 'deep.yaml' })).message, /^deep\.yaml.*nested more than 32 levels deep/);
  const deeper = 'name: d\nvars:\n  x: ' + '['.repeat(5000) + ']'.repeat(5000) + '\n';
  assert.match(recipeError(() => parseRecipe(deeper, { file: 'deep.yaml' })).message, /^deep\.yaml/);
  assert.match(recipeError(() => parseRecipe(deeper, { file: 'deep.yaml' })).message, /nested too deeply/);
  // An empty vars: is an empty mapping, not an error.
  assert.deepEqual(parseRecipe(MINIMAL + 'vars:\n', { env: {} }).recipe.vars, {});
  const huge = 'name: b\nvars:\n  x: "' + 'a'.repeat(1 << 20) + '"\n';
  assert.match(recipeError(() => parseRecipe(huge, { file: 'huge.yaml' })).message, /^huge\.yaml: the file is larger than 1024 KiB/);
  const ov = recipeError(() => parseRecipe(MINIMAL, { file: 'o.yaml', overrides: ['vars.x=' + '['.repeat(50) + ']'.repeat(50)] }));
  assert.match(ov.message, /command line override .*nested more than 32 levels deep/);
  const proto = recipeError(() => parseRecipe(MINIMAL + '__proto__:\n  polluted: true\n', { file: 'p.yaml', env: {} }));
  assert.match(proto.message, /unknown field `__proto__`/);
  assert.equal(({} as { polluted?: boolean }).polluted, undefined);
  parseRecipe(MINIMAL, { overrides: ['vars.__proto__.polluted=1'], env: {} });
  assert.equal(({} as { polluted?: boolean }).polluted, undefined);
});

test('file guards: not found (with a suggestion), directory, empty file', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const missing = await recipeErrorAsync(() => loadRecipe(path.join(dir, 'quickstrat.yaml')));
    assert.match(missing.message, /quickstrat\.yaml: recipe file not found/);
    assert.match(missing.message, /did you mean the bundled recipe .*quickstart\.yaml\?/);
    await fsp.writeFile(path.join(dir, 'a.yaml'), '');
    const isDir = await recipeErrorAsync(() => loadRecipe(dir));
    assert.match(isDir.message, /this is a directory, not a recipe file/);
    assert.match(isDir.message, /a\.yaml/);
    const empty = await recipeErrorAsync(() => loadRecipe(path.join(dir, 'a.yaml')));
    assert.match(empty.message, /a\.yaml: the file is empty/);
    const notDir = await recipeErrorAsync(() => loadRecipe(path.join(dir, 'a.yaml', 'b.yaml')));
    assert.match(notDir.message, /not found/);
    await fsp.writeFile(path.join(dir, 'ok.yaml'), MINIMAL);
    const loaded = await loadRecipe(path.join(dir, 'ok.yaml'), ['seed=3']);
    assert.equal(loaded.recipe.seed, 3);
    assert.deepEqual(loaded.overrides, ['seed=3']);
    assert.equal(loaded.file, path.join(dir, 'ok.yaml'));
    const bad = await recipeErrorAsync(() => loadRecipe(path.join(dir, 'ok.yaml'), ['seed=x']));
    assert.ok(bad instanceof RecipeError);
    assert.ok(bad.message.startsWith(path.join(dir, 'ok.yaml')));
  } finally {
    await cleanup();
  }
});

test('many problems: the first leads, the rest are listed, long lists are cut', () => {
  const text = 'name: m\n' + Array.from({ length: 12 }, (_, i) => `bad${i}: 1\n`).join('') + 'stages:\n  - 1\n';
  const e = recipeError(() => parseRecipe(text, { file: 'm.yaml', env: {} }));
  assert.equal(e.problems.length, 13);
  assert.match(e.message, /\.\.\. and 4 more problems/);
});

test('complex mapping keys are refused with a position', () => {
  const e = recipeError(() => parseRecipe(MINIMAL + '? [a, b]\n: 1\n', { file: 'k.yaml', env: {} }));
  assert.match(e.message, /^k\.yaml:9:3: expected mapping keys to be plain names/);
});
