/**
 * Fuzzing the loader: thousands of malformed recipes derived from the bundled ones, from a fixed
 * seed. Every input must either load (and then survive a resolved-YAML round trip) or fail with a
 * RecipeError whose message names the file. Anything else (a TypeError, a stack overflow, a hang)
 * is a bug.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Rng } from '../../src/runtime/rng.js';
import { listBundledRecipes, parseRecipe, recipeToYaml, RecipeError } from '../../src/recipes/index.js';

// UNIME_FUZZ_SEED / UNIME_FUZZ_INPUTS explore beyond the fixed run (the default is what CI runs).
const SEED = Number(process.env.UNIME_FUZZ_SEED ?? 20250417);
const INPUTS = Number(process.env.UNIME_FUZZ_INPUTS ?? 3200);

const BASES = listBundledRecipes().map((f) => readFileSync(f, 'utf8'));
const ENV = { HOME: '/home/fuzz', X: '5', EMPTY: '' };

const VALUES = [
  'abc', '123', '-1', '0', '1.5', 'true', 'false', 'null', '~', '[]', '{}', '[1, 2]', '{a: 1}', '"x"', "'y'",
  '1e999', '-1e999', '.nan', '.inf', '-.inf', '99999999999999999999999', '1e308', '4.9e-324', '1e-400', '-0',
  '0x1F', '0o17', '!!binary aGk=', '!!str 5', '!custom x', '2001-12-14', '|\n  block text', '>-\n  folded',
  '"\\u0000"', '"\\t\\n"', '""', "''", 'yes', 'no', 'on', 'Off', '[[[[1]]]]', '{a: {b: {c: {}}}}',
  '*nope', '&anc 3', '[*nope]', '? complex', '- item', 'a: b', '{', '[', ']', '}', ',', ':', '#', '%YAML 1.1',
];

const REFS = [
  '${name}', '${vars.model}', '${stages.0.output_dir}', '${stages.distill.name}', '${stages.nope.x}', '${env:HOME}',
  '${env:NOPE}', '${env:X:-3}', '${env:EMPTY:-d}', '${output_dir}', '${stages.1.output_dir}', '${vars}', '${stages}',
  '$${esc}', '${', '${}', '${a.b.c.d}', '${stages.0}', '${stages.0.train.lr}', '${stages[0].name}', '${vars.}',
  '${.x}', '${stages.0.name}/${name}', 'x${name}y${vars.model}z', '${env:1X}', '${vars.${name}}', '${seed}',
  '${stages.9999999999999999999.x}', '${description}', '${ name }',
];

const OVERRIDE_KEYS = [
  'seed', 'name', 'description', 'device', 'precision', 'output_dir', 'vars', 'vars.x', 'vars.model', 'stages',
  'stages.0', 'stages.0.train.lr', 'stages.distill.train.lr', 'stages.hardneg.loss.mode', 'stages[1].loss.mode',
  'stages.9.x', 'stages.nope.x', 'stages.0.kind', 'stages.0.name', 'stages.1.init_from', 'stages.0.output_dir',
  'name.x', '.a', 'a..b', '[0]', 'stages[99999999999999999999]', 'stages.0.train', 'stages.0.lora.rank',
  'vars.deep.er.still', '__proto__.x', 'vars.__proto__', 'constructor.prototype.x', 'stages.0.data.path', '',
];

/** A billion-laughs document of `depth` levels with `width` aliases per level. */
function aliasBomb(depth: number, width: number): string {
  let s = 'bomb0: &b0 [lol, lol]\n';
  for (let i = 1; i <= depth; i++) s += `bomb${i}: &b${i} [${Array(width).fill(`*b${i - 1}`).join(', ')}]\n`;
  return s;
}

type Mutator = (text: string, rng: Rng) => string;

const pick = <T>(rng: Rng, a: readonly T[]): T => a[rng.int(a.length)]!;
const lines = (t: string) => t.split('\n');
const randomLine = (t: string, rng: Rng) => rng.int(Math.max(1, lines(t).length));

const CHARS = ' :-[]{}#&*!|>\'"%@`,?\n\t$\\abcz019.\u00e9\u2028\ufeff\u0000\r';

const MUTATORS: Mutator[] = [
  // characters
  (t, r) => {
    const i = r.int(t.length + 1);
    return t.slice(0, i) + t.slice(i + 1 + r.int(4));
  },
  (t, r) => {
    const i = r.int(t.length + 1);
    return t.slice(0, i) + CHARS[r.int(CHARS.length)] + t.slice(i);
  },
  (t, r) => {
    const i = r.int(t.length + 1);
    const n = 1 + r.int(8);
    return t.slice(0, i) + t.slice(i, i + n) + t.slice(i);
  },
  // lines
  (t, r) => {
    const ls = lines(t);
    ls.splice(randomLine(t, r), 1 + r.int(3));
    return ls.join('\n');
  },
  (t, r) => {
    const ls = lines(t);
    const i = randomLine(t, r);
    ls.splice(i, 0, ls[i] ?? '');
    return ls.join('\n');
  },
  (t, r) => {
    const ls = lines(t);
    const i = randomLine(t, r);
    const j = Math.min(ls.length - 1, i + 1);
    [ls[i], ls[j]] = [ls[j] ?? '', ls[i] ?? ''];
    return ls.join('\n');
  },
  (t, r) => {
    const ls = lines(t);
    ls.splice(randomLine(t, r), 0, pick(r, lines(pick(r, BASES))));
    return ls.join('\n');
  },
  // indentation
  (t, r) => {
    const ls = lines(t);
    const i = randomLine(t, r);
    const line = ls[i] ?? '';
    const k = r.int(4);
    ls[i] = k === 0 ? '\t' + line : k === 1 ? line.replace(/^ {1,4}/, '') : ' '.repeat(1 + r.int(4)) + line;
    return ls.join('\n');
  },
  // type swaps: replace the value of a `key: value` line
  (t, r) => {
    const ls = lines(t);
    const idx = ls.map((l, i) => (/^\s*-?\s*[\w.-]+:\s*\S/.test(l) ? i : -1)).filter((i) => i >= 0);
    if (idx.length === 0) return t;
    const i = pick(r, idx);
    ls[i] = ls[i]!.replace(/^(\s*-?\s*[\w.-]+:\s*).*$/, (_m, head: string) => head + pick(r, VALUES));
    return ls.join('\n');
  },
  // random references
  (t, r) => {
    const ls = lines(t);
    const idx = ls.map((l, i) => (/^\s*-?\s*[\w.-]+:\s*\S/.test(l) ? i : -1)).filter((i) => i >= 0);
    if (idx.length === 0) return t;
    const i = pick(r, idx);
    ls[i] = ls[i]!.replace(/^(\s*-?\s*[\w.-]+:\s*).*$/, (_m, head: string) => head + pick(r, REFS));
    return ls.join('\n');
  },
  (t, r) => t + `\noutput_dir: ${pick(r, ['${stages.0.output_dir}', 'runs/${stages.1.name}', '${output_dir}', '${vars.x}'])}\n`,
  // deep nesting
  (t, r) => {
    const n = 8 + r.int(r.int(2) === 0 ? 60 : 3000);
    return t + `\nnested: ${'['.repeat(n)}${']'.repeat(n)}\n`;
  },
  (t, r) => {
    const n = 5 + r.int(80);
    return t + '\nnested:\n' + Array.from({ length: n }, (_, i) => `${' '.repeat(2 * (i + 1))}k${i}:`).join('\n') + ' 1\n';
  },
  (t, r) => {
    const n = 2 + r.int(200);
    return t.replace(/vars:\n/, `vars:\n  deep: ${'{a: '.repeat(n)}1${'}'.repeat(n)}\n`);
  },
  // huge numbers
  (t, r) => t.replace(/\b\d+(\.\d+)?(e-?\d+)?\b/, pick(r, ['1e309', '-1e309', '18446744073709551616', '1e-400', '9'.repeat(400), '0.' + '0'.repeat(400) + '1'])),
  // anchors and aliases
  (t, r) => t + '\n' + aliasBomb(2 + r.int(12), 2 + r.int(10)),
  (t, r) => t.replace(/^(vars:)/m, '$1 &v').replace(/\nstages:/, `\nextra: *v\nstages:`) + (r.int(2) ? '\nx: *missing\n' : ''),
  (t, r) => t.replace(/^(\s+)(train|data|lora|loss):\n/m, `$1$2: ${pick(r, ['*nope', '&self [*self]', '&a {}', '!!set {a, b}', '!!omap [a: 1]'])}\n`),
  (t) => t.replace(/^stages:/m, 'common: &c {kind: eval, suite: mmeb, model: m, data: {root: d}}\nstages:\n  - <<: *c\n    name: merged'),
  // encodings and truncation
  (t, r) => (r.int(2) ? t.replace(/\n/g, '\r\n') : '\ufeff' + t),
  (t, r) => t.slice(0, r.int(t.length + 1)),
  (t, r) => {
    const i = r.int(t.length + 1);
    return t.slice(0, i) + String.fromCharCode(r.int(0x3000)) + t.slice(i);
  },
  (t) => t + '\n---\nname: second-doc\n',
];

function randomOverride(r: Rng): string {
  const k = pick(r, OVERRIDE_KEYS);
  const roll = r.int(10);
  if (roll === 0) return k; // no '='
  const v = roll < 4 ? pick(r, REFS) : roll < 8 ? pick(r, VALUES) : pick(r, ['[1,', '{', '*a', '&a x', '[' + '['.repeat(60) + ']'.repeat(61), 'a: b\nc: d']);
  return `${k}=${v}`;
}

test(`fuzz: ${INPUTS} malformed recipes either load or fail with a RecipeError naming the file`, (t) => {
  const rng = new Rng(SEED);
  let loaded = 0;
  let rejected = 0;
  let slowest = 0;
  let slowestInput = -1;
  const started = Date.now();
  for (let i = 0; i < INPUTS; i++) {
    let text = pick(rng, BASES);
    const nMut = 1 + rng.int(3);
    for (let m = 0; m < nMut; m++) text = pick(rng, MUTATORS)(text, rng);
    const overrides = Array.from({ length: rng.int(3) === 0 ? 1 + rng.int(3) : 0 }, () => randomOverride(rng));
    const file = `fuzz-${i}.yaml`;
    const t0 = Date.now();
    try {
      const result = parseRecipe(text, { file, overrides, env: ENV });
      // A recipe that loads must survive its own resolved form.
      const again = parseRecipe(recipeToYaml(result), { file: `${file}.resolved`, env: ENV });
      assert.deepEqual(again.recipe, result.recipe, `round trip of input ${i}`);
      loaded++;
    } catch (e) {
      if (!(e instanceof RecipeError) || !e.message.includes(file)) {
        const shown = text.length > 1500 ? `${text.slice(0, 1500)}...` : text;
        assert.fail(
          `input ${i} threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.stack ?? e}\n--- overrides: ${JSON.stringify(overrides)}\n--- text:\n${shown}`,
        );
      }
      rejected++;
    }
    const ms = Date.now() - t0;
    if (ms > slowest) {
      slowest = ms;
      slowestInput = i;
    }
  }
  const total = Date.now() - started;
  // Both outcomes must actually occur, or the mutations are too weak (or too strong) to test anything.
  assert.ok(loaded > INPUTS * 0.05, `only ${loaded} inputs loaded`);
  assert.ok(rejected > INPUTS * 0.3, `only ${rejected} inputs were rejected`);
  t.diagnostic(`fuzz: ${loaded} loaded, ${rejected} rejected, slowest input ${slowest} ms (#${slowestInput}; UNIME_FUZZ_SEED and the index reproduce it), total ${total} ms`);
});
