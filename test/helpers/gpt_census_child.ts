/**
 * Child process of test/unit/cuda_emu_skip.test.ts: writes the launch census of one bf16 GPT engine
 * step (bench/gpu_census_gpt.ts) at the shape given as JSON in argv[3] to the file argv[2], so the
 * test can compare a census taken with the kernels running against its own in skip mode.
 *
 * @example
 * node --import tsx test/helpers/gpt_census_child.ts /tmp/census.json '{"layers":2,"seq":16}'
 */
import { writeFileSync } from 'node:fs';
import { type GptCensusOptions, gptStepCensus } from '../../bench/gpu_census_gpt.ts';
import { destroyDistributed, initDistributed } from '../../src/index.ts';

const [file, shape] = process.argv.slice(2);
await initDistributed({ timeoutMs: 30_000 });
writeFileSync(file, JSON.stringify(await gptStepCensus(JSON.parse(shape) as GptCensusOptions)));
await destroyDistributed();
