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
export { type Dataset, type Sample, type Field, type SampleContext, type Transform, mapDataset, sampleRng } from './dataset.ts';
export { type NDArray, type TypedArray, ndarray } from './ndarray.ts';
export { type Recipe, portable } from './portable.ts';
export { CounterRng, permutation } from './rng.ts';
export { type Sampler, SequentialSampler, RandomSampler } from './sampler.ts';
export { DistributedSampler, type DistributedSamplerOptions } from './distributed_sampler.ts';
export { type BatchArray, type BatchArrays, type Collate, defaultCollate } from './collate.ts';
export { DataLoader, type DataLoaderOptions, type Batch } from './data_loader.ts';
export { RandomCrop, RandomHorizontalFlip, ToTensor, Normalize, Compose } from './transforms.ts';
export {
  cifar10, type Cifar10Options, type Cifar10Sample, CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILES,
} from './cifar10.ts';
export { syntheticCifar10, type SyntheticCifar10Options } from './synthetic_cifar10.ts';
export { tokenDataset, type TokenDatasetOptions, type TokenSample } from './token_dataset.ts';
export { syntheticTokens, type SyntheticTokensOptions } from './synthetic_tokens.ts';
