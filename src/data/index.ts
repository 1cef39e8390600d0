/**
 * The data pipeline: datasets of typed-array samples, samplers, transforms and a DataLoader that
 * yields batches as tensors, optionally loading them in a piscina worker pool.
 * @example
 * import { DataLoader, DistributedSampler, syntheticCifar10 } from 'meshtrain';
 * const train = syntheticCifar10({ length: 1024 });
 * const sampler = new DistributedSampler(train.length, { numReplicas: 2, rank: 0 });
 * const loader = new DataLoader(train, { batchSize: 32, sampler, numWorkers: 2 });
 * loader.setEpoch(0);
 * for await (const [x, y] of loader) { ... }   // x f32 [32, 3, 32, 32], y i64 [32]
 */

export {CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, CIFAR10_TEST_FILES,CIFAR10_TRAIN_FILES, type Cifar10Options, type Cifar10Sample, 
  cifar10, 
} from './cifar10.ts';
export { type BatchArray, type BatchArrays, type Collate, defaultCollate } from './collate.ts';
export { type Batch, DataLoader, type DataLoaderOptions } from './data_loader.ts';
export { type Dataset, type Field, mapDataset, type Sample, type SampleContext, sampleRng, type Transform } from './dataset.ts';
export { DistributedSampler, type DistributedSamplerOptions } from './distributed_sampler.ts';
export { type NDArray, ndarray, type TypedArray } from './ndarray.ts';
export { portable, type Recipe } from './portable.ts';
export { CounterRng, permutation } from './rng.ts';
export { RandomSampler, type Sampler, SequentialSampler } from './sampler.ts';
export { type SyntheticCifar10Options, syntheticCifar10 } from './synthetic_cifar10.ts';
export { type SyntheticTokensOptions, syntheticTokens } from './synthetic_tokens.ts';
export { type TokenDatasetOptions, type TokenSample, tokenDataset } from './token_dataset.ts';
export { Compose, Normalize, RandomCrop, RandomHorizontalFlip, ToTensor } from './transforms.ts';
