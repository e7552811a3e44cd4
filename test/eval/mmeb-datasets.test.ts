import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fixture } from '../helpers.js';
import {
  META_TASKS,
  MMEB_IMAGE_DATASETS,
  MMEB_IMAGE_DATASET_NAMES,
  MMEB_NAME_ALIASES,
  canonicalMmebName,
  findMmebDataset,
  mmebDatasets,
} from '../../src/eval/mmeb-datasets.js';

const report = JSON.parse(readFileSync(fixture('eval', 'mmeb-report-vlm2vec-v2-qwen2vl-2b.json'), 'utf8')) as {
  metrics: { image: Record<string, unknown> };
};

test('the 36 names are exactly the keys of VLM2Vec\'s report, in its order', () => {
  assert.equal(MMEB_IMAGE_DATASETS.length, 36);
  assert.deepEqual([...MMEB_IMAGE_DATASET_NAMES], Object.keys(report.metrics.image));
  assert.equal(new Set(MMEB_IMAGE_DATASET_NAMES).size, 36);
});

test('meta-task and IND/OOD membership follow REFERENCE.md', () => {
  const names = (metaTask: (typeof META_TASKS)[number], distribution: 'IND' | 'OOD') =>
    mmebDatasets({ metaTask, distribution }).map((d) => d.name);
  assert.deepEqual(names('Classification', 'IND'), ['ImageNet-1K', 'N24News', 'HatefulMemes', 'VOC2007', 'SUN397']);
  assert.deepEqual(names('Classification', 'OOD'), ['Place365', 'ImageNet-A', 'ImageNet-R', 'ObjectNet', 'Country211']);
  assert.deepEqual(names('VQA', 'IND'), ['OK-VQA', 'A-OKVQA', 'DocVQA', 'InfographicsVQA', 'ChartQA', 'Visual7W']);
  assert.deepEqual(names('VQA', 'OOD'), ['ScienceQA', 'VizWiz', 'GQA', 'TextVQA']);
  assert.deepEqual(names('Retrieval', 'IND'), [
    'VisDial', 'CIRR', 'VisualNews_t2i', 'VisualNews_i2t', 'MSCOCO_t2i', 'MSCOCO_i2t', 'NIGHTS', 'WebQA',
  ]);
  assert.deepEqual(names('Retrieval', 'OOD'), ['FashionIQ', 'Wiki-SS-NQ', 'OVEN', 'EDIS']);
  assert.deepEqual(names('Grounding', 'IND'), ['MSCOCO']);
  assert.deepEqual(names('Grounding', 'OOD'), ['RefCOCO', 'RefCOCO-Matching', 'Visual7W-Pointing']);
  assert.equal(mmebDatasets({ distribution: 'IND' }).length, 20);
  assert.equal(mmebDatasets({ distribution: 'OOD' }).length, 16);
  assert.deepEqual(META_TASKS.map((t) => mmebDatasets({ metaTask: t }).length), [10, 10, 12, 4]);
});

test('aliases and other spellings resolve to the report key; unknown names do not', () => {
  const cases: [string, string][] = [
    ['ImageNet_1K', 'ImageNet-1K'], // MMEB-train folder name
    ['imagenet-1k', 'ImageNet-1K'],
    ['Places365', 'Place365'],
    ['InfoVQA', 'InfographicsVQA'],
    ['visualnews t2i', 'VisualNews_t2i'],
    ['OKVQA', 'OK-VQA'],
    ['Wiki_SS_NQ', 'Wiki-SS-NQ'],
    ['refcoco-matching', 'RefCOCO-Matching'],
    ['MSCOCO', 'MSCOCO'],
    ['MSCOCO_t2i', 'MSCOCO_t2i'],
  ];
  for (const [alias, name] of cases) assert.equal(canonicalMmebName(alias), name, alias);
  assert.equal(findMmebDataset('MSCOCO')?.metaTask, 'Grounding');
  assert.equal(findMmebDataset('mscoco_i2t')?.metaTask, 'Retrieval');
  for (const unknown of ['ImageNet', 'MSCOCO_t2t', 'K700', '']) assert.equal(canonicalMmebName(unknown), undefined, unknown);
  for (const target of Object.values(MMEB_NAME_ALIASES)) assert.ok(MMEB_IMAGE_DATASET_NAMES.includes(target));
});
