/**
 * GradCache runs each chunk's forward twice (the cache pass without a tape, then the backprop pass);
 * dropout must draw the same masks both times. Entering a chunk's key saves the dropout stream's state
 * the first time and restores it the second; clear() forgets the previous step's chunks.
 */
import type { Rng, RngState } from '../runtime/rng.js';
import type { TrainResult } from './trainer.js';

export class DropoutReplay {
  private readonly states = new Map<string, RngState>();

  /** rng: the dropout stream (a LoRA adapter's dropoutRng); null when nothing draws masks. */
  constructor(private readonly rng: Rng | null) {}

  enter(key: string): void {
    if (this.rng === null) return;
    const saved = this.states.get(key);
    if (saved === undefined) this.states.set(key, this.rng.getState());
    else this.rng.setState(saved);
  }

  clear(): void {
    this.states.clear();
  }
}

/** The loss summary every training stage returns for stage.json. */
export function lossSummary(result: TrainResult): { steps: number; first_loss: number | null; final_loss: number | null; losses: number[] } {
  const losses = result.losses;
  return { steps: result.step, first_loss: losses[0] ?? null, final_loss: losses[losses.length - 1] ?? null, losses };
}
