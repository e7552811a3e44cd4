import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseOverrideValue, parseRecipe, type UnimeHardnegStage } from '../../src/recipes/index.js';
import { MINIMAL, recipeError } from './helpers.js';

const TWO = `name: two
vars:
  list: [1, 2, 3]
stages:
  - name: distill
    kind: unime-distill
    model: m
    data:
      path: nli.csv
    teacher_cache: cache
  - name: hardneg
    kind: unime-hardneg
    model: m
    data:
      root: mmeb
`;
const load = (overrides: string[]) => parseRecipe(TWO, { file: 'two.yaml', overrides, env: {} }).recipe;
const hn = (r: ReturnType<typeof load>) => r.stages[1] as unknown as UnimeHardnegStage;

test('override values are YAML: numbers, booleans, null, lists, mappings, strings', () => {
  assert.equal(parseOverrideValue('3', 'f', 'k=3'), 3);
  assert.equal(parseOverrideValue('1e-4', 'f', 'k=1e-4'), 1e-4);
  assert.equal(parseOverrideValue('true', 'f', 'k=true'), true);
  assert.equal(parseOverrideValue('null', 'f', 'k=null'), null);
  assert.equal(parseOverrideValue('~', 'f', 'k=~'), null);
  assert.deepEqual(parseOverrideValue('[1,2]', 'f', 'k=[1,2]'), [1, 2]);
  assert.deepEqual(parseOverrideValue('{a: 1, b: [x]}', 'f', 'k={a: 1, b: [x]}'), { a: 1, b: ['x'] });
  assert.equal(parseOverrideValue('abc', 'f', 'k=abc'), 'abc');
  assert.equal(parseOverrideValue('"3"', 'f', 'k="3"'), '3');
  assert.equal(parseOverrideValue('', 'f', 'k='), '');
  assert.equal(parseOverrideValue('a=b', 'f', 'k=a=b'), 'a=b');
});

test('overrides address fields by dotted path, list index and stage name', () => {
  assert.equal(hn(load(['stages.1.train.lr=2e-5'])).train.lr, 2e-5);
  assert.equal(hn(load(['stages[1].train.lr=3e-5'])).train.lr, 3e-5);
  assert.equal(hn(load(['stages.hardneg.train.lr=4e-5'])).train.lr, 4e-5);
  assert.equal(hn(load(['stages.hardneg.loss.mode=inbatch'])).loss.mode, 'inbatch');
  assert.deepEqual(hn(load(['stages.hardneg.data.subsets=[MSCOCO, CIRR]'])).data.subsets, ['MSCOCO', 'CIRR']);
  assert.equal(hn(load(['stages.hardneg.data.cap_per_subset=null'])).data.cap_per_subset, null);
  assert.deepEqual(hn(load(['stages.hardneg.lora={rank: 8}'])).lora, { rank: 8, alpha: 64, dropout: 0.1, target_modules: 'all-linear', vision_tower: false });
  const r = load(['seed=7', 'precision=bf16', 'vars.list.1=20', 'vars.new.deep=x', 'description=hello world']);
  assert.equal(r.seed, 7);
  assert.equal(r.precision, 'bf16');
  assert.deepEqual(r.vars.list, [1, 20, 3]);
  assert.deepEqual(r.vars.new, { deep: 'x' });
  assert.equal(r.description, 'hello world');
  // Later overrides win.
  assert.equal(hn(load(['stages.1.train.lr=1', 'stages.hardneg.train.lr=2'])).train.lr, 2);
  // A stage missing a mapping for an optional block gets one created.
  assert.equal(hn(load(['stages.hardneg.loss.temperature=0.05'])).loss.temperature, 0.05);
  // Overrides are interpolated like the file.
  assert.equal(load(['output_dir=out/${name}-x']).stages[0]!.output_dir, 'out/two-x/distill');
});

test('override mistakes are RecipeErrors naming the override', () => {
  const cases: Array<[string, RegExp]> = [
    ['stages.1.train.lr', /`stages\.1\.train\.lr`: expected key=value/],
    ['=3', /the path is empty/],
    ['stages..lr=3', /empty segment/],
    ['stages.5.train.lr=1', /stages has 2 items; index 5 is out of range/],
    ['stages.hardnge.train.lr=1', /no stage named `hardnge` \(did you mean `hardneg`\?\); stages: distill, hardneg/],
    ['stages.hardneg.train.lr=[1,', /the value is not valid YAML/],
    ['name.x=1', /name is a string, so it has no field `x`/],
    ['vars.list.x=1', /vars\.list is a list; select an item by index/],
    ['seed[0]=1', /seed does not exist, so it has no item 0/],
    ['name[0]=1', /name is a mapping, not a list|name is a string/],
    ['vars.nothing[0]=1', /vars\.nothing does not exist, so it has no item 0/],
  ];
  for (const [text, re] of cases) {
    const e = recipeError(() => load([text]));
    assert.match(e.message, /^two\.yaml/, text);
    assert.match(e.message, new RegExp('command line override `' + text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '`'), text);
    assert.match(e.message, re, text);
    assert.equal(e.override, text);
  }
});

test('schema errors caused by an override name it, with the field path and expected value', () => {
  const e = recipeError(() => load(['stages.0.train.lr=abc']));
  assert.equal(e.message.split('\n')[0], 'two.yaml: stages[0].train.lr: command line override `stages.0.train.lr=abc`: expected a number, found the string "abc"');
  assert.equal(e.field, 'stages[0].train.lr');
  assert.equal(e.line, undefined);

  const unknown = recipeError(() => load(['stages.distill.train.lrr=1']));
  assert.match(unknown.message, /stages\[0\]\.train\.lrr: command line override `stages\.distill\.train\.lrr=1`: unknown field `lrr` \(did you mean `lr`\?\)/);

  const kind = recipeError(() => load(['stages.0.kind=unime-distil']));
  assert.match(kind.message, /unknown stage kind: .*found the string "unime-distil" \(did you mean `unime-distill`\?\)/);

  const list = recipeError(() => load(['stages=[]']));
  assert.match(list.message, /stages: command line override `stages=\[\]`: expected a list with at least 1 item, found an empty list/);

  // Replacing a whole mapping: a missing required field is blamed on that override.
  const whole = recipeError(() => load(['stages.hardneg.data={cap_per_subset: 5}']));
  assert.match(whole.message, /stages\[1\]\.data\.root: command line override `stages\.hardneg\.data=\{cap_per_subset: 5\}`: missing required field `root`/);
});

test('an override of a field in the file keeps the file valid elsewhere', () => {
  const r = parseRecipe(MINIMAL, { overrides: ['stages.s1.suite=retrieval', 'stages.s1.datasets=[flickr30k]'], env: {} }).recipe;
  assert.equal(r.stages[0]!.suite, 'retrieval');
  assert.deepEqual(r.stages[0]!.datasets, ['flickr30k']);
});
