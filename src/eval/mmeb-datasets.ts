/**
 * The 36 image datasets of MMEB (VLM2Vec's Massive Multimodal Embedding Benchmark), each with its
 * meta-task and whether it is in-distribution (IND: its training split is part of MMEB-train) or
 * out-of-distribution (OOD: evaluation only).
 *
 * Names are spelled exactly as the keys of VLM2Vec's score reports (`metrics.image.<dataset>`),
 * which are also the subset names of TIGER-Lab/MMEB-eval. Other spellings met in the wild (the
 * MMEB-train folder `ImageNet_1K`, `Places365`, different case or separators) resolve through
 * {@link canonicalMmebName}.
 */

export const META_TASKS = ['Classification', 'VQA', 'Retrieval', 'Grounding'] as const;
export type MetaTask = (typeof META_TASKS)[number];

/** The column headers papers use for the meta-tasks. */
export const META_TASK_SHORT: Readonly<Record<MetaTask, string>> = {
  Classification: 'Cls',
  VQA: 'VQA',
  Retrieval: 'Ret',
  Grounding: 'Grd',
};

export const DISTRIBUTIONS = ['IND', 'OOD'] as const;
export type Distribution = (typeof DISTRIBUTIONS)[number];

export interface MmebDatasetInfo {
  /** The report key / MMEB-eval subset name. */
  readonly name: string;
  readonly metaTask: MetaTask;
  readonly distribution: Distribution;
}

const d = (name: string, metaTask: MetaTask, distribution: Distribution): MmebDatasetInfo =>
  Object.freeze({ name, metaTask, distribution });

/** All 36, in the order of VLM2Vec's reports (by meta-task, IND before OOD). */
export const MMEB_IMAGE_DATASETS: readonly MmebDatasetInfo[] = Object.freeze([
  d('ImageNet-1K', 'Classification', 'IND'),
  d('N24News', 'Classification', 'IND'),
  d('HatefulMemes', 'Classification', 'IND'),
  d('VOC2007', 'Classification', 'IND'),
  d('SUN397', 'Classification', 'IND'),
  d('Place365', 'Classification', 'OOD'),
  d('ImageNet-A', 'Classification', 'OOD'),
  d('ImageNet-R', 'Classification', 'OOD'),
  d('ObjectNet', 'Classification', 'OOD'),
  d('Country211', 'Classification', 'OOD'),

  d('OK-VQA', 'VQA', 'IND'),
  d('A-OKVQA', 'VQA', 'IND'),
  d('DocVQA', 'VQA', 'IND'),
  d('InfographicsVQA', 'VQA', 'IND'),
  d('ChartQA', 'VQA', 'IND'),
  d('Visual7W', 'VQA', 'IND'),
  d('ScienceQA', 'VQA', 'OOD'),
  d('VizWiz', 'VQA', 'OOD'),
  d('GQA', 'VQA', 'OOD'),
  d('TextVQA', 'VQA', 'OOD'),

  d('VisDial', 'Retrieval', 'IND'),
  d('CIRR', 'Retrieval', 'IND'),
  d('VisualNews_t2i', 'Retrieval', 'IND'),
  d('VisualNews_i2t', 'Retrieval', 'IND'),
  d('MSCOCO_t2i', 'Retrieval', 'IND'),
  d('MSCOCO_i2t', 'Retrieval', 'IND'),
  d('NIGHTS', 'Retrieval', 'IND'),
  d('WebQA', 'Retrieval', 'IND'),
  d('FashionIQ', 'Retrieval', 'OOD'),
  d('Wiki-SS-NQ', 'Retrieval', 'OOD'),
  d('OVEN', 'Retrieval', 'OOD'),
  d('EDIS', 'Retrieval', 'OOD'),

  // Grounding's IND dataset is the MSCOCO *grounding* subset, not the two retrieval ones above.
  d('MSCOCO', 'Grounding', 'IND'),
  d('RefCOCO', 'Grounding', 'OOD'),
  d('RefCOCO-Matching', 'Grounding', 'OOD'),
  d('Visual7W-Pointing', 'Grounding', 'OOD'),
]);

export const MMEB_IMAGE_DATASET_NAMES: readonly string[] = Object.freeze(MMEB_IMAGE_DATASETS.map((x) => x.name));

/**
 * Spellings that do not reduce to a canonical name by {@link normalizeName} alone. `ImageNet_1K`
 * (the MMEB-train folder) needs no entry: it normalises to the same key as `ImageNet-1K`.
 */
export const MMEB_NAME_ALIASES: Readonly<Record<string, string>> = Object.freeze({
  Places365: 'Place365',
  'Places-365': 'Place365',
  InfoVQA: 'InfographicsVQA',
  InfographicVQA: 'InfographicsVQA',
  WikiSS: 'Wiki-SS-NQ',
  'Visual7W-Point': 'Visual7W-Pointing',
});

/** Case-, dash-, underscore-, dot- and space-insensitive key. */
function normalizeName(name: string): string {
  return name.toLowerCase().replace(/[\s_.\-]+/g, '');
}

const BY_NAME = new Map<string, MmebDatasetInfo>(MMEB_IMAGE_DATASETS.map((x) => [x.name, x]));
const BY_KEY = buildKeyIndex();

function buildKeyIndex(): Map<string, MmebDatasetInfo> {
  const index = new Map<string, MmebDatasetInfo>();
  const add = (spelling: string, info: MmebDatasetInfo) => {
    const key = normalizeName(spelling);
    const prev = index.get(key);
    // A collision would make an alias ambiguous; the table above is built so none exists.
    if (prev && prev !== info) throw new Error(`mmeb-datasets: "${spelling}" collides with "${prev.name}"`);
    index.set(key, info);
  };
  for (const info of MMEB_IMAGE_DATASETS) add(info.name, info);
  for (const [alias, name] of Object.entries(MMEB_NAME_ALIASES)) {
    const info = BY_NAME.get(name);
    if (!info) throw new Error(`mmeb-datasets: alias "${alias}" points at unknown dataset "${name}"`);
    add(alias, info);
  }
  return index;
}

/** The dataset a name (canonical or alias) refers to, or undefined. */
export function findMmebDataset(name: string): MmebDatasetInfo | undefined {
  return BY_NAME.get(name) ?? BY_KEY.get(normalizeName(name));
}

/** The report-key spelling of a dataset name, or undefined when it is not one of the 36. */
export function canonicalMmebName(name: string): string | undefined {
  return findMmebDataset(name)?.name;
}

/** The datasets of one meta-task and/or distribution, in report order. */
export function mmebDatasets(filter: { metaTask?: MetaTask; distribution?: Distribution } = {}): MmebDatasetInfo[] {
  return MMEB_IMAGE_DATASETS.filter(
    (x) =>
      (filter.metaTask === undefined || x.metaTask === filter.metaTask) &&
      (filter.distribution === undefined || x.distribution === filter.distribution),
  );
}
