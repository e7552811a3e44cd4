/** The recipe system: format (schemas + stage-kind registry), loading, running, bundled recipes. */
import './kinds.js';

export { RecipeError, type RecipeProblem } from './errors.js';
export {
  attachStageRunner,
  getStageKind,
  listStageKinds,
  registerStageKind,
  type RegisteredStageKind,
  type StageContext,
  type StageKindDefinition,
  type StageResult,
  type StageRunner,
} from './registry.js';
export * from './schema.js';
export {
  clipTrainSchema,
  evalSchema,
  EVAL_SUITES,
  PROMPT_TEMPLATES,
  teacherEmbedSchema,
  unimeDistillSchema,
  unimeHardnegSchema,
  type BuiltinStage,
  type ClipTrainStage,
  type EvalStage,
  type TeacherEmbedStage,
  type UnimeDistillStage,
  type UnimeHardnegStage,
} from './kinds.js';
export { loadRecipe, parseRecipe, readRecipeText, recipeToYaml, type LoadedRecipe, type LoadOptions } from './load.js';
export { parseOverrideValue, type AppliedOverride } from './overrides.js';
export {
  formatPlan,
  planRecipe,
  runRecipe,
  stageConfigHash,
  RESOLVED_RECIPE,
  STAGE_MARKER,
  type PlannedStage,
  type RunOptions,
  type RunReport,
  type StageAction,
  type StageMarker,
  type StageOutcome,
} from './runner.js';
export { bundledRecipesDir, listBundledRecipes, validateBundledRecipes, validateRecipeFile, type RecipeFileReport } from './bundled.js';
export { MAX_ALIAS_COUNT, MAX_BYTES, MAX_DEPTH, MAX_NODES } from './source.js';
