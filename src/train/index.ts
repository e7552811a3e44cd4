/** The training loop and its parts, shared by every training stage. */
export { AdamW, type AdamWOptions, type AdamWHyper, type AdamWStateJson } from './adamw.js';
export { makeSchedule, warmupStepsFor, type Schedule, type ScheduleKind, type ScheduleOptions } from './schedule.js';
export { NonFiniteError, accumulateGrads, checkGrads, checkLoss, clipGradNorm, globalNorm, gradNorms, scaleGrads, type ClipResult } from './clip.js';
export { ShuffledBatches, type ShuffledBatchesOptions, type ShuffledBatchesState, type TrainData } from './data.js';
export {
  CHECKPOINTS_DIR,
  LATEST_FILE,
  findLatestCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  saveCheckpoint,
  type LoadedCheckpoint,
  type TrainerState,
} from './checkpoints.js';
export { METRICS_FILE, appendMetric, readMetrics, truncateMetrics, type MetricRecord } from './metrics.js';
export { Progress, formatDuration, type ProgressStream } from './progress.js';
export { renderPlotsHtml, writePlots, lineChartSvg } from './plots.js';
export {
  PLOTS_FILE,
  loopOptionsFromRecipe,
  totalStepsFor,
  train,
  type CheckpointInfo,
  type TrainLoopOptions,
  type TrainOptions,
  type TrainResult,
  type TrainStepContext,
  type TrainStepOutput,
} from './trainer.js';
export { gradCacheStep, type GradCacheStepOptions, type GradCacheStepResult, type ChunkEncoder } from './gradcache.js';
export {
  BATCHES_PER_SHARD,
  TEACHER_INDEX,
  distinctTexts,
  readTeacherCache,
  runTeacherEmbed,
  teacherShardName,
  textKey,
  type TeacherCache,
  type TeacherCacheIndex,
  type TeacherEmbedResult,
  type TeacherEmbedStage,
} from './teacher-embed.js';
