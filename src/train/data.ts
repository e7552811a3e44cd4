/**
 * The trainer reads batches from a resumable stream: `next()` gives the next batch (crossing epochs
 * on its own), and getState()/setState() capture and restore the position, so a resumed run sees
 * exactly the batches the interrupted one would have.
 */
import { Rng, type RngState } from '../runtime/rng.js';
import { UnimeError } from '../errors.js';
import type { MmebTrainData } from '../recipes/schema.js';

export interface TrainData<B> {
  next(): B | Promise<B>;
  /** JSON-serialisable position (saved in every checkpoint). */
  getState(): unknown;
  setState(state: unknown): void;
  /** Batches in one pass over the data; needed to train for a number of epochs. */
  readonly batchesPerEpoch?: number;
}

export interface ShuffledBatchesState {
  epoch: number;
  /** Items of the current epoch's order already handed out. */
  position: number;
  /** The RNG state the current epoch's order was drawn from. */
  rng: RngState;
}

export interface ShuffledBatchesOptions {
  shuffle?: boolean;
  /** Drop the last, short batch of each epoch (default true: contrastive batches should be full). */
  dropLast?: boolean;
}

/** Fixed-size batches over an in-memory list, reshuffled every epoch from a seeded RNG. */
export class ShuffledBatches<T> implements TrainData<T[]> {
  readonly batchesPerEpoch: number;
  epoch = 0;
  private position = 0;
  private order: number[] = [];
  private epochStart: RngState;
  private readonly shuffle: boolean;
  private readonly dropLast: boolean;

  constructor(
    private readonly items: readonly T[],
    private readonly batchSize: number,
    private readonly rng: Rng,
    options: ShuffledBatchesOptions = {},
  ) {
    this.shuffle = options.shuffle ?? true;
    this.dropLast = options.dropLast ?? true;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new UnimeError(`batch size must be a positive integer, got ${batchSize}`);
    if (items.length === 0 || (this.dropLast && items.length < batchSize)) {
      throw new UnimeError(`the data has ${items.length} samples, fewer than one batch of ${batchSize}`, { fix: 'lower train.batch_size or add data' });
    }
    this.batchesPerEpoch = this.dropLast ? Math.floor(items.length / batchSize) : Math.ceil(items.length / batchSize);
    this.epochStart = rng.getState();
    this.startEpoch();
  }

  private startEpoch(): void {
    this.epochStart = this.rng.getState();
    const n = this.items.length;
    this.order = this.shuffle ? this.rng.permutation(n) : Array.from({ length: n }, (_, i) => i);
    this.position = 0;
  }

  next(): T[] {
    const need = this.dropLast ? this.batchSize : 1;
    if (this.position + need > this.items.length) {
      this.epoch += 1;
      this.startEpoch();
    }
    const idx = this.order.slice(this.position, this.position + this.batchSize);
    this.position += idx.length;
    return idx.map((i) => this.items[i]!);
  }

  getState(): ShuffledBatchesState {
    return { epoch: this.epoch, position: this.position, rng: { s: [...this.epochStart.s], spare: this.epochStart.spare } };
  }

  setState(state: unknown): void {
    const s = state as ShuffledBatchesState;
    if (!s || !Number.isInteger(s.epoch) || !Number.isInteger(s.position) || s.position < 0 || s.position > this.items.length) {
      throw new UnimeError(`invalid data position ${JSON.stringify(state)}`, { fix: 'resume with the same data as the run that wrote the checkpoint' });
    }
    this.rng.setState(s.rng);
    this.startEpoch();
    this.epoch = s.epoch;
    this.position = s.position;
  }
}

export interface SubsetBatchesState {
  picker: RngState;
  groups: ShuffledBatchesState[];
}

/**
 * Batches made of sub-batches that each come from one group (one MMEB-train subset), as VLM2Vec-V2
 * draws them: each sub-batch picks its group with probability proportional to the group's size
 * times its weight (1 unless given), then takes that group's next shuffled rows. An epoch is total
 * rows / batch size batches, whatever the weights.
 */
export class SubsetBatches<T> implements TrainData<T[]> {
  readonly batchesPerEpoch: number;
  private readonly streams: ShuffledBatches<T>[];
  private readonly picker: Rng;
  private readonly weights: number[];
  private readonly totalWeight: number;
  /** Index (among the groups given) of each stream's group. */
  private readonly usable: number[];
  private readonly groupCount: number;

  constructor(
    groups: readonly (readonly T[])[],
    private readonly batchSize: number,
    private readonly subBatchSize: number,
    rng: Rng,
    groupWeights?: readonly number[],
  ) {
    if (groupWeights !== undefined && (groupWeights.length !== groups.length || !groupWeights.every((w) => Number.isFinite(w) && w > 0))) {
      throw new UnimeError(`SubsetBatches: expected ${groups.length} positive group weights, got [${groupWeights.join(', ')}]`);
    }
    if (!Number.isInteger(subBatchSize) || subBatchSize < 1 || batchSize % subBatchSize !== 0) {
      throw new UnimeError(`train.batch_size ${batchSize} is not a multiple of data.sub_batch_size ${subBatchSize}`, {
        field: 'data.sub_batch_size',
        fix: 'choose a sub-batch size that divides the batch size',
      });
    }
    const usable = groups.map((g, i) => ({ g, i })).filter(({ g }) => g.length >= subBatchSize);
    if (usable.length === 0) {
      throw new UnimeError(`no subset has ${subBatchSize} rows for one sub-batch`, { field: 'data.sub_batch_size', fix: 'lower data.sub_batch_size' });
    }
    this.streams = usable.map(({ g, i }) => new ShuffledBatches(g, subBatchSize, rng.fork(`group:${i}`)));
    this.usable = usable.map(({ i }) => i);
    this.groupCount = groups.length;
    this.weights = usable.map(({ g, i }) => g.length * (groupWeights?.[i] ?? 1));
    this.totalWeight = this.weights.reduce((a, b) => a + b, 0);
    this.picker = rng.fork('picker');
    const rows = usable.reduce((a, { g }) => a + g.length, 0);
    this.batchesPerEpoch = Math.max(1, Math.floor(rows / batchSize));
  }

  /** Each group's share of the sub-batches (groups too small for one sub-batch get 0). */
  get shares(): number[] {
    const out = new Array<number>(this.groupCount).fill(0);
    this.usable.forEach((g, k) => (out[g] = this.weights[k]! / this.totalWeight));
    return out;
  }

  next(): T[] {
    const out: T[] = [];
    while (out.length < this.batchSize) {
      let r = this.picker.uniform() * this.totalWeight;
      let g = 0;
      while (g < this.weights.length - 1 && r >= this.weights[g]!) r -= this.weights[g++]!;
      out.push(...this.streams[g]!.next());
    }
    return out;
  }

  getState(): SubsetBatchesState {
    return { picker: this.picker.getState(), groups: this.streams.map((s) => s.getState()) };
  }

  setState(state: unknown): void {
    const s = state as SubsetBatchesState;
    if (!s || !Array.isArray(s.groups) || s.groups.length !== this.streams.length) {
      throw new UnimeError(`invalid data position ${JSON.stringify(state)?.slice(0, 200)}`, { fix: 'resume with the same data as the run that wrote the checkpoint' });
    }
    this.picker.setState(s.picker);
    s.groups.forEach((g, i) => this.streams[i]!.setState(g));
  }
}

/** Each selected subset's sampling weight (data.subset_weights; 1 when not named), checked against the selection. */
export function subsetWeights(data: MmebTrainData, names: readonly string[]): number[] {
  const given = Object.keys(data.subset_weights);
  if (given.length > 0 && data.sub_batch_size === null) {
    throw new UnimeError('weights subsets, but batches mix subsets', {
      field: 'data.subset_weights',
      fix: 'set data.sub_batch_size (each sub-batch then comes from one subset, drawn by weight), or drop data.subset_weights',
    });
  }
  const unknown = given.filter((n) => !names.includes(n));
  if (unknown.length > 0) {
    throw new UnimeError(`names ${unknown.map((n) => JSON.stringify(n)).join(', ')}, which ${unknown.length === 1 ? 'is' : 'are'} not among the selected subsets`, {
      field: `data.subset_weights.${unknown[0]}`,
      fix: `use the subsets' folder names: ${names.join(', ')}`,
    });
  }
  return names.map((n) => data.subset_weights[n] ?? 1);
}
