/**
 * Command line overrides: `key.path=value`, applied to the raw recipe tree before interpolation and
 * validation. Values are YAML (`3`, `true`, `null`, `[1, 2]`, `{a: 1}`, `text`); paths use dots,
 * list indices (`stages.0` or `stages[0]`) and stage names (`stages.distill.train.lr`).
 */
import { parseDocument } from 'yaml';
import { RecipeError } from './errors.js';
import { formatPath, parsePathExpr, suggestion, type PathSeg } from './paths.js';
import { getOwn, isPlainObject, MAX_ALIAS_COUNT, setOwn, toPlainTree } from './source.js';

export interface AppliedOverride {
  /** As typed on the command line. */
  text: string;
  /** The field it set, with stage names turned into indices. */
  path: PathSeg[];
}

/** Parse an override value as YAML; an empty value is the empty string. */
export function parseOverrideValue(raw: string, file: string, override: string): unknown {
  if (raw === '') return '';
  const doc = parseDocument(raw, { prettyErrors: false, uniqueKeys: true, merge: true, logLevel: 'error' });
  if (doc.errors.length > 0) {
    throw new RecipeError(`the value is not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`, {
      file,
      override,
      fix: 'quote a value with YAML syntax in it, e.g. key=\'"[not a list"\' (shell quotes around YAML quotes)',
    });
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (e) {
    throw new RecipeError(`the value is not usable YAML: ${e instanceof Error ? e.message : String(e)}`, { file, override });
  }
  return toPlainTree(value === undefined ? null : value, { file, what: 'override value', override });
}

function stageNames(stages: unknown[]): string[] {
  return stages.map((s) => (isPlainObject(s) ? getOwn(s, 'name') : undefined)).filter((n): n is string => typeof n === 'string');
}

/** Apply overrides in order (later ones win) to `tree` in place. */
export function applyOverrides(tree: Record<string, unknown>, overrides: readonly string[], file: string): AppliedOverride[] {
  const applied: AppliedOverride[] = [];
  for (const text of overrides) {
    const fail = (problem: string, fix?: string): never => {
      throw new RecipeError(problem, { file, override: text, fix });
    };
    const eq = text.indexOf('=');
    if (eq < 0) fail('expected key=value (e.g. stages.distill.train.lr=1e-4)');
    const keyText = text.slice(0, eq).trim();
    const tokens = parsePathExpr(keyText);
    if (typeof tokens === 'string') return fail(tokens);
    const value = parseOverrideValue(text.slice(eq + 1), file, text);

    let cur: unknown = tree;
    const path: PathSeg[] = [];
    for (let t = 0; t < tokens.length; t++) {
      const tok = tokens[t]!;
      const last = t === tokens.length - 1;
      let seg: PathSeg;
      if (Array.isArray(cur)) {
        const isIndex = tok.index !== undefined || /^\d+$/.test(tok.text);
        if (isIndex) {
          const i = tok.index ?? Number(tok.text);
          if (!Number.isSafeInteger(i) || i >= cur.length) {
            fail(`${formatPath(path)} has ${cur.length} item${cur.length === 1 ? '' : 's'}; index ${tok.text} is out of range`, 'to replace the whole list, set it: key=[a, b]');
          }
          seg = i;
        } else if (path.length === 1 && path[0] === 'stages') {
          const names = stageNames(cur);
          const i = cur.findIndex((s) => isPlainObject(s) && getOwn(s, 'name') === tok.text);
          if (i < 0) fail(`no stage named \`${tok.text}\`${suggestion(tok.text, names)}; stages: ${names.join(', ') || '(none named)'}`);
          seg = i;
        } else {
          return fail(`${formatPath(path)} is a list; select an item by index (${formatPath(path)}.0), not \`${tok.text}\``);
        }
        if (last) cur[seg as number] = value;
        else cur = cur[seg as number];
      } else if (isPlainObject(cur)) {
        if (tok.index !== undefined) fail(`${formatPath(path)} is a mapping, not a list; \`[${tok.index}]\` cannot select in it`);
        seg = tok.text;
        if (last) {
          setOwn(cur, seg, value);
        } else {
          const next = getOwn(cur, seg);
          if (next === undefined || next === null) {
            const following = tokens[t + 1]!;
            if (following.index !== undefined) fail(`${formatPath([...path, seg])} does not exist, so it has no item ${following.index}`);
            const fresh: Record<string, unknown> = {};
            setOwn(cur, seg, fresh);
            cur = fresh;
          } else {
            cur = next;
          }
        }
      } else {
        const what = typeof cur === 'string' ? 'a string' : typeof cur === 'number' ? 'a number' : typeof cur === 'boolean' ? 'a boolean' : 'not a mapping';
        return fail(`${formatPath(path)} is ${what}, so it has no field \`${tok.text}\``, `to replace it, set ${formatPath(path)}={...}`);
      }
      path.push(seg);
    }
    applied.push({ text, path });
  }
  return applied;
}
