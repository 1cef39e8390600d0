/**
 * Trains GPT-2 with tensor parallelism (Megatron's split, gptTensorParallelPlan) over the tp axis of
 * a dp × tp mesh, data parallelism over dp, on the synthetic token stream: every rank draws the same
 * global batch and keeps its dp share of the rows. Rank 0 prints the plan, the split model and the
 * progress; every rank prints its memory by tag at the end.
 *   npx meshtrain --num_procs 4 examples/train_gpt_tp.ts --tp 2 --sp --steps 50
 */
import { GPT, gptConfig } from '../models/index.ts';
import {
  AdamW, createLrScheduler, DataLoader, DataParallel, DeviceMesh, destroyDistributed, initDistributed, manualSeed, memoryStats, narrow,
  syntheticTokens, type Tensor, TrainingProgress, tidy,
} from '../src/index.ts';
import {
  allReduceSequenceParallelGrads, clipGradNormTensorParallel, formatPlan, gptTensorParallelPlan, parallelize, vocabParallelCrossEntropy,
} from '../src/tensor_parallel/index.ts';
import { parseArgs } from './args.ts';

const args = parseArgs({ size: 'tiny', batch: 8, seq: 16, steps: 100, lr: 3e-3, tp: 0, sp: false, seed: 0 });
const world = await initDistributed();
const tpSize = args.tp || world.size;
if (world.size % tpSize !== 0) throw new Error(`--tp ${tpSize} does not divide the ${world.size} ranks`);
const mesh = await DeviceMesh.init({ dp: world.size / tpSize, tp: tpSize });
const [tp, dpGroup] = [mesh.group('tp'), mesh.group('dp')];
if (args.batch % dpGroup.size !== 0) throw new Error(`--batch ${args.batch} does not divide over dp = ${dpGroup.size}`);
const main = world.rank === 0;

manualSeed(args.seed);                                      // the same full weights on every rank, then each keeps its shards
const plan = gptTensorParallelPlan({ sequenceParallel: args.sp });
const full = new GPT(gptConfig(args.size, { vocabSize: 64, nCtx: Math.max(args.seq, 16) }));
if (main) console.log(`${mesh}\n${formatPlan(plan, full.namedModules().map(([n]) => n))}`);
const model = parallelize(full, plan, mesh);
if (main) console.log(String(model));
const dp = dpGroup.size > 1 ? new DataParallel(model, { group: dpGroup }) : null;
const optimizer = new AdamW(model.parameters(), { lr: args.lr, weightDecay: 0.01 });
const scheduler = createLrScheduler(optimizer, { type: 'WarmupLR', params: { warmup_max_lr: args.lr, warmup_num_steps: Math.ceil(args.steps / 10) } });
const loader = new DataLoader(syntheticTokens({ length: 4096, seqLen: args.seq, vocab: 64, seed: args.seed }), {
  batchSize: args.batch, shuffle: true, seed: args.seed, dropLast: true,
});

const share = args.batch / dpGroup.size;
const progress = main ? new TrainingProgress({ total: args.steps, label: `gpt-${args.size} tp=${tpSize}${args.sp ? '+sp' : ''} dp=${dpGroup.size}` }) : null;
let step = 0;
let [first, last] = [Number.NaN, Number.NaN];
for (let epoch = 0; step < args.steps; epoch++) {
  loader.setEpoch(epoch);
  for (const batch of loader) {
    const [ids, targets] = batch as Tensor[];
    last = tidy(() => {
      const x = narrow(ids, 0, dpGroup.rank * share, share);
      const y = narrow(targets, 0, dpGroup.rank * share, share);
      const logits = (dp ?? model).forward(x) as Tensor;        // [share, seq, vocab / tp]
      const loss = vocabParallelCrossEntropy(logits.reshape([share * args.seq, logits.shape[2]]), y.reshape([share * args.seq]), tp);
      if (dp) dp.backward(loss);
      else loss.backward();
      allReduceSequenceParallelGrads(model, tp);
      clipGradNormTensorParallel(model, 1.0, tp);
      optimizer.step();
      optimizer.zeroGrad();
      scheduler.step();
      return loss.item();
    });
    if (step === 0) first = last;
    step++;
    progress?.update(step, { loss: last, samples: args.batch, tokens: args.batch * args.seq, lr: scheduler.getLr()[0] });
    if (step >= args.steps) break;
  }
}
progress?.finish();
if (main) console.log(`loss ${first.toFixed(4)} -> ${last.toFixed(4)} over ${step} steps (rank 0's dp share)`);
const mem = memoryStats().cpu;
const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;
console.log(`memory (tp ${tp.rank}, dp ${dpGroup.rank}): ${Object.entries(mem).map(([tag, s]) => `${tag} ${mib(s.current)} (peak ${mib(s.peak)})`).join(', ')}`);
mesh.destroy();
await destroyDistributed();
