import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRecipe } from '../../src/recipes/index.js';
import { MINIMAL, recipeError } from './helpers.js';

const withVars = (vars: string, stageExtra = '') => `name: interp
vars:
${vars}
stages:
  - name: first
    kind: eval
    suite: mmeb
    model: m
    data:
      root: d
${stageExtra}  - name: second
    kind: eval
    suite: mmeb
    model: m
    data:
      root: \${stages.first.output_dir}/x
`;

test('a whole-value reference keeps the referenced type', () => {
  const text = withVars('  bs: 32\n  on: true\n  list: [a, b]\n  map: {root: from-vars}\n  nothing: null\n', '    batch_size: ${vars.bs}\n    datasets: ${vars.list}\n');
  const { recipe } = parseRecipe(text, { env: {} });
  assert.equal(recipe.stages[0]!.batch_size, 32);
  assert.deepEqual(recipe.stages[0]!.datasets, ['a', 'b']);
  const r2 = parseRecipe(text.replace('    data:\n      root: d\n', '    data: ${vars.map}\n'), { env: {} }).recipe;
  assert.deepEqual(r2.stages[0]!.data, { root: 'from-vars' });
  // The copy is independent of vars.
  (r2.stages[0]!.data as { root: string }).root = 'changed';
  assert.deepEqual(r2.vars.map, { root: 'from-vars' });
});

test('references inside strings concatenate; stage outputs by name and by index', () => {
  const { recipe } = parseRecipe(withVars('  tag: v1\n  n: 3\n'), { overrides: ['description=${name}-${vars.tag}-${vars.n}-${stages.0.name}'], env: {} });
  assert.equal(recipe.description, 'interp-v1-3-first');
  assert.equal(recipe.stages[1]!.data && (recipe.stages[1]!.data as { root: string }).root, 'runs/interp/first/x');
  const r2 = parseRecipe(withVars('  x: 1\n'), { overrides: ['stages.second.data.root=${stages[0].output_dir}'], env: {} }).recipe;
  assert.equal((r2.stages[1]!.data as { root: string }).root, 'runs/interp/first');
  // A reference to a field that itself has references is resolved first (chains).
  const r3 = parseRecipe(withVars('  a: ${vars.b}/a\n  b: ${vars.c}/b\n  c: ${name}\n'), { env: {} }).recipe;
  assert.equal(r3.vars.a, 'interp/b/a');
});

test('environment references, with defaults, and typed when whole', () => {
  const env = { DATA_ROOT: '/mnt/data', BS: '64', EMPTY: '' };
  const text = withVars('  root: ${env:DATA_ROOT}\n  fallback: ${env:NOT_SET:-/default/path}\n  empty: ${env:EMPTY:-used}\n  bs: ${env:BS}\n  inside: at ${env:DATA_ROOT}!\n');
  const { recipe } = parseRecipe(text, { env });
  assert.equal(recipe.vars.root, '/mnt/data');
  assert.equal(recipe.vars.fallback, '/default/path');
  assert.equal(recipe.vars.empty, 'used');
  assert.equal(recipe.vars.bs, 64);
  assert.equal(recipe.vars.inside, 'at /mnt/data!');
  const e = recipeError(() => parseRecipe(text.replace('${env:NOT_SET:-/default/path}', '${env:NOT_SET}'), { file: 'i.yaml', env }));
  assert.match(e.message, /^i\.yaml:4:13: vars\.fallback: environment variable NOT_SET is not set/);
  assert.match(e.message, /fix: set it, or give a default: \$\{env:NOT_SET:-<default>\}/);
  const bad = recipeError(() => parseRecipe(withVars('  x: ${env:1BAD}\n'), { file: 'i.yaml', env }));
  assert.match(bad.message, /not an environment variable name/);
});

test('$${ is a literal ${', () => {
  const { recipe } = parseRecipe(withVars('  lit: $${name}\n  mixed: a $${vars.x} b ${name}\n  dollars: cost $5 and $$\n'), { env: {} });
  assert.equal(recipe.vars.lit, '${name}');
  assert.equal(recipe.vars.mixed, 'a ${vars.x} b interp');
  assert.equal(recipe.vars.dollars, 'cost $5 and $$');
  // A reference to a value holding an escaped ${ does not interpolate it again.
  const r2 = parseRecipe(withVars('  lit: $${name}\n  copy: ${vars.lit}\n'), { env: {} }).recipe;
  assert.equal(r2.vars.copy, '${name}');
});

test('cycles are errors naming every field on the cycle', () => {
  const e = recipeError(() => parseRecipe(withVars('  a: ${vars.b}\n  b: x${vars.c}\n  c: ${vars.a}\n'), { file: 'c.yaml', env: {} }));
  assert.match(e.message, /^c\.yaml:3:6: vars\.a: interpolation cycle: vars\.a -> vars\.b -> vars\.c -> vars\.a/);
  const self = recipeError(() => parseRecipe(withVars('  a: ${vars.a}\n'), { file: 'c.yaml', env: {} }));
  assert.match(self.message, /vars\.a: `\$\{vars\.a\}` refers to a field that contains this very value/);
  const outer = recipeError(() => parseRecipe(withVars('  a:\n    - ${vars}\n'), { file: 'c.yaml', env: {} }));
  assert.match(outer.message, /vars\.a\[0\]: .*contains this very value/);
  const dirs = recipeError(() => parseRecipe(MINIMAL, { file: 'c.yaml', overrides: ['output_dir=${stages.s1.output_dir}/..'], env: {} }));
  assert.match(dirs.message, /interpolation cycle: .*output_dir.*stages\[0\]\.output_dir/);
  assert.match(dirs.message, /command line override `output_dir=/);
});

test('unknown references are errors with the field, position and a suggestion', () => {
  const e = recipeError(() => parseRecipe(withVars('  data_root: d\n  x: ${vars.data_rot}/x\n'), { file: 'u.yaml', env: {} }));
  assert.match(e.message, /^u\.yaml:4:6: vars\.x: unknown reference `\$\{vars\.data_rot\}`: `vars` has no field `data_rot` \(did you mean `data_root`\?\)/);
  const st = recipeError(() => parseRecipe(withVars('  x: ${stages.frist.output_dir}\n'), { file: 'u.yaml', env: {} }));
  assert.match(st.message, /no stage named `frist` \(did you mean `first`\?\); stages: first, second/);
  const idx = recipeError(() => parseRecipe(withVars('  x: ${stages.9.name}\n'), { file: 'u.yaml', env: {} }));
  assert.match(idx.message, /stages has 2 items, there is no item 9/);
  const dflt = recipeError(() => parseRecipe(withVars('  x: ${stages.first.batch_size}\n'), { file: 'u.yaml', env: {} }));
  assert.match(dflt.message, /values filled in by defaults cannot be referenced/);
  const scalar = recipeError(() => parseRecipe(withVars('  x: ${name.y}\n'), { file: 'u.yaml', env: {} }));
  assert.match(scalar.message, /`name` is a string, it has no field `y`/);
  const unterminated = recipeError(() => parseRecipe(withVars('  x: ${name\n'), { file: 'u.yaml', env: {} }));
  assert.match(unterminated.message, /unterminated `\$\{`/);
  const nested = recipeError(() => parseRecipe(withVars('  x: ${vars.${name}}\n'), { file: 'u.yaml', env: {} }));
  assert.match(nested.message, /nested references are not supported/);
  const inString = recipeError(() => parseRecipe(withVars('  m: {a: 1}\n  x: pre-${vars.m}\n'), { file: 'u.yaml', env: {} }));
  assert.match(inString.message, /`\$\{vars\.m\}` is a mapping, which cannot be put inside a string/);
  const empty = recipeError(() => parseRecipe(withVars('  x: ${}\n'), { file: 'u.yaml', env: {} }));
  assert.match(empty.message, /not a valid reference/);
});

test('a schema error in an interpolated value says where the value came from', () => {
  const e = recipeError(() => parseRecipe(withVars('  bs: lots\n', '    batch_size: ${vars.bs}\n'), { file: 'v.yaml', env: {} }));
  assert.match(e.message, /^v\.yaml:12:17: stages\[0\]\.batch_size: expected a number, found the string "lots" \(the value comes from `\$\{vars\.bs\}`\)/);
  const o = recipeError(() => parseRecipe(withVars('  bs: 3\n', '    batch_size: ${vars.bs}\n'), { file: 'v.yaml', overrides: ['vars.bs=-1'], env: {} }));
  assert.match(o.message, /^v\.yaml:12:17: stages\[0\]\.batch_size: command line override `vars\.bs=-1`: expected a number >= 1, found the number -1/);
});
