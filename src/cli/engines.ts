/**
 * The stage engines in this build. Each engine module attaches its runner to its stage kind when
 * imported; commands that plan or run recipes load them here, lazily, so other commands start fast.
 */
export async function loadEngines(): Promise<void> {
  await import('../data/synthetic-stage.js');
  await import('../train/teacher-embed.js');
  await import('../train/unime-distill.js');
  await import('../eval/engine.js');
  await import('../eval/run-finisher.js');
  await import('../train/caption-contrastive.js');
  await import('../train/unime-hardneg.js');
  await import('../train/clip-train.js');
  await import('../train/mllm-align.js');
}
