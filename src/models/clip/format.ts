/** How a clip-train model folder is recognised, without loading the runtime (CLI startup stays fast). */
import { existsSync } from 'node:fs';
import * as path from 'node:path';

export const CLIP_SIDE_CONFIG = 'unime_clip.json';
export const CLIP_SIDE_WEIGHTS = 'model.safetensors';
export const CLIP_SIDE_FORMAT = 'unime-clip-side';

/** True when `dir` is the model/ folder of a clip-train stage. */
export function isClipSideModel(dir: string): boolean {
  return existsSync(path.join(dir, CLIP_SIDE_CONFIG));
}
