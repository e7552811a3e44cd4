/** Schedules against transformers' formulas (optimization.py), evaluated independently here. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeSchedule, warmupStepsFor } from '../../src/train/schedule.js';

// transformers: _get_linear_schedule_with_warmup_lr_lambda etc., written out as in the library.
function hfLinear(step: number, warm: number, total: number): number {
  if (step < warm) return step / Math.max(1, warm);
  return Math.max(0, (total - step) / Math.max(1, total - warm));
}
function hfCosine(step: number, warm: number, total: number, cycles = 0.5): number {
  if (step < warm) return step / Math.max(1.0, warm);
  const progress = (step - warm) / Math.max(1, total - warm);
  return Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * cycles * 2.0 * progress)));
}
function hfConstant(step: number, warm: number): number {
  return step < warm ? step / Math.max(1.0, warm) : 1.0;
}

test('warmup steps: explicit steps (0 included) win, else ceil(total * ratio) as TrainingArguments.get_warmup_steps', () => {
  assert.equal(warmupStepsFor(1000, 200, 0.5), 200);
  assert.equal(warmupStepsFor(1000, null, 0.1), 100);
  assert.equal(warmupStepsFor(7, null, 0.1), 1);
  assert.equal(warmupStepsFor(7, 0, 0.3), 0);
  assert.equal(warmupStepsFor(7, undefined, 0.3), 3);
  assert.equal(warmupStepsFor(7, null, 0), 0);
});

test('linear, cosine and constant schedules equal the transformers lambdas at every step', () => {
  for (const total of [1, 2, 7, 100, 1000]) {
    for (const ratio of [0, 0.03, 0.1, 0.5]) {
      const lr = 2e-5;
      const warm = Math.ceil(total * ratio);
      const lin = makeSchedule({ kind: 'linear', lr, totalSteps: total, warmupRatio: ratio });
      const cos = makeSchedule({ kind: 'cosine', lr, totalSteps: total, warmupRatio: ratio });
      const con = makeSchedule({ kind: 'constant', lr, totalSteps: total, warmupRatio: ratio });
      assert.equal(lin.warmupSteps, warm);
      for (let s = 0; s <= total + 1; s++) {
        assert.equal(lin.lrAt(s), lr * hfLinear(s, warm, total), `linear total ${total} ratio ${ratio} step ${s}`);
        assert.equal(cos.lrAt(s), lr * hfCosine(s, warm, total), `cosine total ${total} ratio ${ratio} step ${s}`);
        assert.equal(con.lrAt(s), lr * hfConstant(s, warm), `constant total ${total} ratio ${ratio} step ${s}`);
      }
    }
  }
});

test('schedule landmarks: the first update has lr 0 under warmup, peak after warmup, zero at the end', () => {
  const s = makeSchedule({ kind: 'cosine', lr: 1e-4, totalSteps: 1000, warmupSteps: 200 });
  assert.equal(s.lrAt(0), 0);
  assert.equal(s.lrAt(100), 5e-5);
  assert.equal(s.lrAt(200), 1e-4);
  assert.ok(Math.abs(s.lrAt(600) - 5e-5) < 1e-18);
  assert.equal(s.lrAt(1000), 0);
  const l = makeSchedule({ kind: 'linear', lr: 1e-4, totalSteps: 10 });
  assert.equal(l.lrAt(0), 1e-4);
  assert.equal(l.lrAt(5), 5e-5);
  assert.throws(() => makeSchedule({ kind: 'linear', lr: 1e-4, totalSteps: 0 }), /totalSteps/);
  assert.throws(() => makeSchedule({ kind: 'linear', lr: -1, totalSteps: 10 }), /lr/);
});
