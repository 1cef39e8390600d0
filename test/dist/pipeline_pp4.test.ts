// PipelineEngine on 4 pipeline ranks: GPipe, 1F1B, ZB-H1 (GPT-tiny: 6 layers, one or two per
// stage) and interleaved 1F1B with 2 stages per rank (8 stages: GPT with 4 blocks), each equal to
// single-process training (tolerances in pipeline_common.ts).
import { test } from 'uvu';
import { checkTraining, type Result, runPipeline } from './pipeline_common.ts';

let results: Result[] | null = null;
const run = async () => (results ??= await runPipeline(4, 1, ['gpipe', '1f1b', 'zb-h1', 'interleaved']));

for (const what of ['gpipe', '1f1b', 'zb-h1', 'interleaved']) {
  test(`pipeline pp=4 ${what}: losses, norms and weights equal one process; tied weights identical`, async () => {
    checkTraining(await run(), what, 4);
  });
}

test.run();
