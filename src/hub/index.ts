/**
 * The Hugging Face Hub side of unime: pulling models and datasets into the shared HF cache,
 * resolving a recipe's model reference to a local directory, pushing checkpoints with a model card.
 */
export { pull, resolveModelPath, filesMatching, type PullOptions, type PullResult, type PulledFile, type ResolveModelOptions } from './download.js';
export { push, planPush, type PushOptions, type PushPlan, type PushResult, type PlannedFile } from './upload.js';
export {
  buildModelCard,
  modelCardMetadata,
  modelCardInputFromCheckpoint,
  parseEvalResults,
  summarizeRecipe,
  findEvalResults,
  type EvalResults,
  type ModelCardInput,
  type RecipeSummary,
} from './model-card.js';
export { RepoCache, blobKey, type TreeEntry } from './cache.js';
export { hubCacheDir, hubEndpoint, hfHome, isOfflineMode, tokenPath, DEFAULT_ENDPOINT, type Env } from './env.js';
export { HubError, type RetryOptions } from './http.js';
export { DEFAULT_MODEL_PATTERNS, DEFAULT_DATASET_PATTERNS, matchesGlob, keepPath } from './patterns.js';
export { createProgress, formatBytes, type Progress, type ProgressOptions } from './progress.js';
export { parseRepoId, looksLikeRepoId, repoFolderName, type RepoRef, type RepoType } from './repo.js';
export { readToken, redact, redactError, registerSecret, type HubToken } from './token.js';
