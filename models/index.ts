/**
 * Model zoo (plain model code, no parallelism): `import { resnet101, GPT, gptConfig } from 'meshtrain/models'`.
 * @example
 * const model = resnet101({ numClasses: 10 });
 * const gpt = new GPT(gptConfig('124M'));
 */

export { GPT, GPT_SIZES, type GPTConfig, type GPTSize, gptConfig, gptKeyFromFlatName, gptParamCount } from './gpt.ts';
export { GPTPositions, gptPipelineLayers } from './gpt_pipeline.ts';
export { blockTensorParallelPlan, type GPT3DLayers, gptTensorParallelPipelineLayers } from './gpt_pipeline_tp.ts';
export { paddedVocabSize, realLogits, VocabEmbedding } from './gpt_vocab.ts';
export { type MLPOptions, mlp } from './mlp.ts';
export {
  BasicBlock, Bottleneck, ResNet, type ResNetOptions,resnet18, resnet34, resnet50, resnet101, resnet152, resnetParamCount, 
} from './resnet.ts';
