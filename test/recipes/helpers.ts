import assert from 'node:assert/strict';
import { RecipeError } from '../../src/recipes/index.js';

/** A small valid recipe: one eval stage, nothing else set. */
export const MINIMAL = `name: t
stages:
  - name: s1
    kind: eval
    suite: mmeb
    model: m
    data:
      root: d
`;

/** Run fn, assert it throws a RecipeError, and return it. */
export function recipeError(fn: () => unknown): RecipeError {
  try {
    fn();
  } catch (e) {
    if (e instanceof RecipeError) return e;
    throw e;
  }
  assert.fail('expected a RecipeError, but nothing was thrown');
}

export async function recipeErrorAsync(fn: () => Promise<unknown>): Promise<RecipeError> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof RecipeError) return e;
    throw e;
  }
  assert.fail('expected a RecipeError, but nothing was thrown');
}
