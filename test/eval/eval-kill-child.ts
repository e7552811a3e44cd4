/**
 * Child process of the kill-and-resume test: runs an evaluation with the fake model and SIGKILLs
 * itself inside the embed call number KILL_AT (no finally block, no flush: a real crash).
 */
import { runMmebEval } from '../../src/eval/mmeb-eval.js';
import { fakeModel } from './eval-fixtures.js';
import { TEST_IDENTITY } from './eval-identity.js';

// `node --test dist/test/` runs every file it finds; without arguments this one does nothing.
const [dataRoot, outDir, killAt] = process.argv.slice(2);
if (dataRoot && outDir && killAt) {
  const { load } = fakeModel({
    onCall: (n) => {
      if (n === Number(killAt)) process.kill(process.pid, 'SIGKILL');
    },
  });
  await runMmebEval({
    dataRoot,
    outDir,
    modelName: 'fake',
    loadModel: load,
    cacheDir: `${outDir}/embed-cache`,
    identity: TEST_IDENTITY,
    batchSize: 4,
    log: { info: () => {}, warn: () => {} },
    cacheOptions: { flushRows: 4 },
  });
}
