/**
 * Trains a ResNet on CIFAR-10 in one process: the binary batches from --data DIR (the official
 * cifar-10-batches-bin), or a deterministic synthetic CIFAR-shaped set by default, with the
 * DeepSpeed example's augmentation (RandomCrop 32/4, flip, Normalize 0.5), SGD with momentum.
 *   npx tsx examples/train_resnet.ts --depth 18 --steps 50
 *   npx tsx examples/train_resnet.ts --depth 101 --data ./data --workers 1 --metrics resnet.jsonl
 */

import { ResNet } from '../models/index.ts';
import {
  Compose, cifar10, crossEntropy, DataLoader, manualSeed,Normalize, RandomCrop, RandomHorizontalFlip, SGD, 
  syntheticCifar10, type Tensor,ToTensor, TrainingProgress, tidy, 
} from '../src/index.ts';
import { parseArgs } from './args.ts';

const args = parseArgs({ depth: 18, batch: 32, steps: 50, lr: 0.05, data: '', workers: 0, metrics: '', imagenetStem: false, seed: 0 });
manualSeed(args.seed);

const transform = Compose([RandomCrop(32, { padding: 4 }), RandomHorizontalFlip(), ToTensor(), Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])]);
const dataset = args.data ? cifar10(args.data, { train: true, transform }) : syntheticCifar10({ length: 50_000, seed: args.seed, transform });
const model = new ResNet(args.depth, { numClasses: 10, cifar: !args.imagenetStem });
const optimizer = new SGD(model.parameters(), { lr: args.lr, momentum: 0.9, weightDecay: 5e-4 });
const loader = new DataLoader(dataset, { batchSize: args.batch, shuffle: true, seed: args.seed, dropLast: true, numWorkers: args.workers });
console.log(`ResNet${args.depth}: ${model.parameters().reduce((n, p) => n + p.numel, 0).toLocaleString()} parameters, ${args.data ? 'CIFAR-10' : 'synthetic CIFAR-10'}, batch ${args.batch}`);

const progress = new TrainingProgress({ total: args.steps, label: `resnet${args.depth}`, metricsFile: args.metrics || undefined });
let step = 0;
let first = Number.NaN;
let last = Number.NaN;
for (let epoch = 0; step < args.steps; epoch++) {
  loader.setEpoch(epoch);
  for await (const batch of loader) {
    const [images, labels] = batch as Tensor[];
    last = tidy(() => {
      const loss = crossEntropy(model.forward(images), labels);
      loss.backward();
      optimizer.step();
      optimizer.zeroGrad();
      return loss.item();
    });
    if (step === 0) first = last;
    progress.update(++step, { loss: last, samples: args.batch });
    if (step >= args.steps) break;
  }
}
progress.finish();
console.log(`loss ${first.toFixed(4)} -> ${last.toFixed(4)} over ${step} steps`);
