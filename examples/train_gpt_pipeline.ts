/**
 * Trains GPT on synthetic tokens (or a text file's bytes) as a pipeline over pp × dp ranks: the
 * layers cut into stages, micro-batches scheduled by GPipe, 1F1B, interleaved 1F1B or ZB-H1,
 * gradients averaged over dp (plain or ZeRO 1/2) once per step, AdamW with warmup + cosine decay,
 * clipping over the whole model. Rank 0 prints the partition, the loss per step and the measured
 * bubble; `--svg DIR` writes the planned and the measured Gantt charts of the last step.
 *   npx meshtrain --num_procs 4 examples/train_gpt_pipeline.ts --pp 4 --schedule 1f1b --steps 20
 *   npx meshtrain --num_procs 4 examples/train_gpt_pipeline.ts --pp 2 --dp 2 --zero 2 --virtual 2 --schedule interleaved
 */
import fs from 'node:fs';
import path from 'node:path';
import { gptConfig, gptPipelineLayers } from '../models/index.ts';
import {
  AdamW, createLrScheduler, crossEntropy, DeviceMesh, destroyDistributed, gatherTimelines, initDistributed, manualSeed, measuredSimulation,
  PipelineEngine, PipelineModule, renderScheduleSvg, type ScheduleName, simulateSchedule, type Tensor,
} from '../src/index.ts';
import { parseArgs } from './args.ts';
import { microBatchStream, timedTrainBatch } from './micro_batches.ts';

const args = parseArgs({
  size: 'tiny', layers: 4, pp: 2, dp: 1, virtual: 1, schedule: '1f1b', microBatches: 4, micro: 4, seq: 16, steps: 20, lr: 3e-3,
  zero: 0, recompute: 0, partition: 'type:TransformerBlock', text: '', svg: '', seed: 0,
});
const world = await initDistributed();
const mesh = await DeviceMesh.init({ pp: args.pp, dp: args.dp });
const { dp: dpRank } = mesh.coords();
const log = (s: string) => world.rank === 0 && console.log(s);

const vocab = args.text ? 256 : 64;
const config = gptConfig(args.size, { vocabSize: vocab, nCtx: Math.max(args.seq, 16), nLayer: args.layers });
manualSeed(args.seed);
const pipe = new PipelineModule({
  layers: gptPipelineLayers(config).layers, numStages: args.pp * args.virtual, partitionMethod: args.partition, group: mesh.group('pp'),
  activationCheckpointInterval: args.recompute, lossFn: (logits: Tensor, y: Tensor) => crossEntropy(logits.reshape([-1, vocab]), y.reshape([-1])),
});
log(`${mesh}\n${pipe.describe()}`);
const optimizer = args.zero ? null : new AdamW(pipe.parameters(), { lr: args.lr, weightDecay: 0.01 });
const engine = await PipelineEngine.create({
  module: pipe, microBatches: args.microBatches, schedule: args.schedule as ScheduleName, dpGroup: mesh.group('dp'), gradientClipping: 1.0,
  ...(optimizer
    ? {
        optimizer,
        lrScheduler: createLrScheduler(optimizer, { type: 'WarmupCosineLR', params: { total_num_steps: args.steps, warmup_num_steps: Math.ceil(args.steps / 10) } }),
      }
    : { zero: { stage: args.zero as 1 | 2 | 3, optimizer: { type: 'AdamW', lr: args.lr, weightDecay: 0.01 } } }),
});

const stream = microBatchStream({ text: args.text, seq: args.seq, vocab, seed: args.seed, micro: args.micro, replicas: args.dp, rank: dpRank });
const tokens = args.micro * args.seq * args.microBatches * args.dp;
for (let step = 1; step <= args.steps; step++) {
  const { loss, ms } = timedTrainBatch(engine, stream, args.microBatches);
  const sim = measuredSimulation(gatherTimelines(mesh.group('pp'), engine.schedule, engine.timeline), engine.schedule.splitBackward);
  log(`step ${step}: loss ${loss.toFixed(4)}  ${ms.toFixed(0)} ms  ${((tokens / ms) * 1000).toFixed(0)} tokens/s  measured bubble ${(100 * sim.bubbleFraction).toFixed(1)}%`);
  if (step === args.steps && args.svg && dpRank === 0 && mesh.group('pp').rank === 0) {
    fs.mkdirSync(args.svg, { recursive: true });
    fs.writeFileSync(path.join(args.svg, 'measured.svg'), renderScheduleSvg(sim, { title: `${engine.schedule.name}: measured (ms)`, unit: 4 }));
    fs.writeFileSync(path.join(args.svg, 'planned.svg'), renderScheduleSvg(simulateSchedule(engine.schedule), { title: `${engine.schedule.name}: planned` }));
    log(`wrote ${args.svg}/planned.svg and ${args.svg}/measured.svg`);
  }
}
mesh.destroy();
destroyDistributed();
