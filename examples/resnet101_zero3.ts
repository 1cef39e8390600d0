/**
 * DeepSpeed's ResNet101 / CIFAR-10 ZeRO-3 example (deepspeed_resnet101_train.py), ported line for
 * line: CIFAR-10 with RandomCrop(32, 4) / flip / Normalize(0.5), a DistributedSampler, torchvision's
 * ResNet101 with a 10-class head, CrossEntropyLoss, and initialize() with the DeepSpeed config in
 * examples/configs/resnet101_zero3.json (fp16 with dynamic loss scaling, AdamW, WarmupLR, ZeRO-3
 * with the optimizer offloaded to CPU). Same launch line as DeepSpeed's:
 *   npx meshtrain --num_gpus 8 examples/resnet101_zero3.ts --steps 2
 *   npx meshtrain --num_gpus 8 examples/resnet101_zero3.ts --data ./data --batch_size 128
 * Flags: --data DIR (the cifar-10-batches-bin files; default: a seeded synthetic CIFAR-10),
 * --epochs (10, as the original), --steps N (stop after N optimizer steps; 0: all epochs),
 * --batch_size (per rank; the original's 128 is a GPU's: 4 keeps 8 ranks on 2 CPU cores
 * practical; a train_micro_batch_size_per_gpu in the config wins), --deepspeed_config FILE,
 * --arch resnet18|34|50|101|152 (a smaller model for quick runs), --workers N (data-loading threads),
 * --seed. Debugging aids, printed when used: --zero-stage N, --offload none|cpu|nvme (patch the config).
 */

import { ResNet } from '../models/index.ts';
import {
  Compose, cifar10, crossEntropy, DataLoader, DistributedSampler, destroyDistributed, formatMemoryReport,
  initDistributed, initialize, manualSeed, Normalize, RandomCrop, RandomHorizontalFlip, syntheticCifar10, type Tensor, ToTensor, tidy,
} from '../src/index.ts';
import { parseArgs } from './args.ts';
import { readExampleConfig } from './deepspeed_config.ts';

const args = parseArgs({
  deepspeed_config: new URL('./configs/resnet101_zero3.json', import.meta.url).pathname,
  data: '', epochs: 10, steps: 0, batch_size: 4, arch: 'resnet101', workers: 0, seed: 0, 'zero-stage': -1, offload: '',
});

// deepspeed.init_distributed(); rank and world size from the launcher.
const world = await initDistributed();
const localRank = world.rank;
const worldSize = world.size;
manualSeed(args.seed); // the same initial weights on every rank (torch.manual_seed)

const { config, microBatch, changes } = readExampleConfig(args.deepspeed_config, {
  microBatch: args.batch_size,
  ...(args['zero-stage'] >= 0 ? { zeroStage: args['zero-stage'] } : {}),
  ...(args.offload ? { offload: args.offload } : {}),
});
if (localRank === 0) for (const c of changes) console.log(`config: ${c}`);

// Data: RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize(0.5, 0.5).
const transform = Compose([RandomCrop(32, { padding: 4 }), RandomHorizontalFlip(), ToTensor(), Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])]);
const trainset = args.data ? cifar10(args.data, { train: true, transform }) : syntheticCifar10({ length: 50_000, seed: args.seed, transform });
const trainSampler = new DistributedSampler(trainset, { numReplicas: worldSize, rank: localRank });
const trainloader = new DataLoader(trainset, { batchSize: microBatch, sampler: trainSampler, numWorkers: args.workers });

// torchvision.models.resnet101(pretrained=False) with model.fc = nn.Linear(num_ftrs, 10); built in
// the config's 16-bit dtype (DeepSpeed's fp16 engine runs a .half() model).
const depth = Number(/^resnet(\d+)$/.exec(args.arch)?.[1] ?? Number.NaN);
if (![18, 34, 50, 101, 152].includes(depth)) throw new Error(`--arch: expected resnet18, resnet34, resnet50, resnet101 or resnet152, got "${args.arch}"`);
const fp16 = (config.fp16 as { enabled?: boolean } | undefined)?.enabled === true;
const bf16 = (config.bf16 as { enabled?: boolean } | undefined)?.enabled === true;
const dtype = fp16 ? 'f16' : bf16 ? 'bf16' : 'f32';
const model = new ResNet(depth, { numClasses: 10, dtype });

// criterion = CrossEntropyLoss; trainable parameters to deepspeed.initialize(model, model_parameters, config).
const parameters = model.parameters().filter((p) => p.requiresGrad);
const { engine } = await initialize({ model, modelParameters: parameters, config });
if (engine.config.train_micro_batch_size_per_gpu !== microBatch) {
  throw new Error(`the loader's batch ${microBatch} differs from the engine's train_micro_batch_size_per_gpu ${engine.config.train_micro_batch_size_per_gpu}`);
}
if (localRank === 0) {
  const n = parameters.reduce((s, p) => s + p.numel, 0);
  console.log(`${args.arch}: ${n.toLocaleString()} parameters (${dtype}), ZeRO stage ${engine.stage}, ${worldSize} ranks x batch ${microBatch}, ${args.data ? 'CIFAR-10' : 'synthetic CIFAR-10'}, ${trainloader.length} steps per epoch`);
}

let globalStep = 0;
const done = () => args.steps > 0 && globalStep >= args.steps;
for (let epoch = 0; epoch < args.epochs && !done(); epoch++) {
  trainloader.setEpoch(epoch); // train_sampler.set_epoch(epoch): the loader passes it to the sampler and reseeds the augmentation
  let runningLoss = 0;
  let batches = 0;
  for await (const data of trainloader) {
    const [inputs, labels] = data as Tensor[];
    const t0 = performance.now();
    const skipped = engine.skippedSteps;
    const loss = tidy(() => {
      const outputs = engine.forward(inputs.to(dtype));
      const l = crossEntropy(outputs, labels);
      engine.backward(l);
      return l.item();
    });
    engine.step();
    runningLoss += loss;
    batches++;
    globalStep++;
    if (localRank === 0) {
      const overflow = engine.skippedSteps > skipped ? `  OVERFLOW: step skipped, loss scale now ${engine.lossScale}` : '';
      console.log(`[Epoch ${epoch + 1}, step ${batches}/${trainloader.length}] loss ${loss.toFixed(4)}  ${((performance.now() - t0) / 1000).toFixed(2)} s${overflow}`);
    }
    if (done()) break;
  }
  // The original prints this on every rank: the mean of its own batches' losses.
  const partial = batches < trainloader.length ? ` (mean of the first ${batches} batches)` : '';
  console.log(`[Epoch ${epoch + 1}] Loss: ${runningLoss / batches}${partial}`);
}
console.log('Finished Training');
console.log(formatMemoryReport(engine.memoryReport())); // this rank's bytes by tag next to ZeRO's formula
engine.destroy();
await destroyDistributed();

