/**
 * Trains a GPT-2 model in one process on byte-level tokens of a text file, or on the synthetic
 * token stream by default, with AdamW, warmup + cosine decay and gradient clipping.
 *   npx tsx examples/train_gpt.ts --size tiny --steps 200
 *   npx tsx examples/train_gpt.ts --size 124M --batch 4 --seq 256 --text data.txt --metrics gpt.jsonl
 */

import { GPT, gptConfig } from '../models/index.ts';
import { AdamW, clipGradNorm, createLrScheduler, crossEntropy, DataLoader, manualSeed, syntheticTokens, type Tensor, TrainingProgress, tidy, tokenDataset } from '../src/index.ts';
import { parseArgs } from './args.ts';

const args = parseArgs({ size: 'tiny', batch: 8, seq: 16, steps: 200, lr: 3e-3, text: '', metrics: '', checkpoint: false, seed: 0 });
manualSeed(args.seed);

const dataset = args.text
  ? tokenDataset({ file: args.text, seqLen: args.seq })
  : syntheticTokens({ length: 4096, seqLen: args.seq, vocab: 64, seed: args.seed });
const vocab = args.text ? 256 : 64;
const config = gptConfig(args.size, { vocabSize: vocab, nCtx: Math.max(args.seq, 16), checkpoint: args.checkpoint });
const model = new GPT(config);
const params = model.parameters();
const optimizer = new AdamW(params, { lr: args.lr, weightDecay: 0.01 });
const scheduler = createLrScheduler(optimizer, {
  type: 'WarmupCosineLR',
  params: { total_num_steps: args.steps, warmup_num_steps: Math.ceil(args.steps / 10), warmup_type: 'linear' },
});
const loader = new DataLoader(dataset, { batchSize: args.batch, shuffle: true, seed: args.seed, dropLast: true });
console.log(`GPT ${args.size}: ${params.reduce((n, p) => n + p.numel, 0).toLocaleString()} parameters, vocab ${vocab}, ${loader.length} batches an epoch`);

const progress = new TrainingProgress({ total: args.steps, label: `gpt-${args.size}`, metricsFile: args.metrics || undefined });
let step = 0;
let first = Number.NaN;
let last = Number.NaN;
for (let epoch = 0; step < args.steps; epoch++) {
  loader.setEpoch(epoch);
  for (const batch of loader) {
    const [ids, targets] = batch as Tensor[];
    last = tidy(() => {
      const loss = crossEntropy(model.forward(ids), targets);
      loss.backward();
      clipGradNorm(params, 1.0);
      optimizer.step();
      optimizer.zeroGrad();
      scheduler.step();
      return loss.item();
    });
    if (step === 0) first = last;
    progress.update(++step, { loss: last, samples: args.batch, tokens: args.batch * args.seq, lr: scheduler.getLr()[0] });
    if (step >= args.steps) break;
  }
}
progress.finish();
console.log(`loss ${first.toFixed(4)} -> ${last.toFixed(4)} over ${step} steps`);
