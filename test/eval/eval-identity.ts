import type { ModelIdentity } from '../../src/eval/embed-cache.js';

/** The identity the fake model is cached under in tests. */
export const TEST_IDENTITY: ModelIdentity = { checkpoint: '/fake/model', files: [], adapters: [], settings: { fake: 1 } };
