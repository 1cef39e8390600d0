/**
 * The device ops of one bf16 ResNet-50 training step's forward and backward (CIFAR-shaped batch
 * of 2; the SGD step after it is not counted: bench/gpu_sgd_multi.ts owns its launches), counted
 * by the launch census: batch norm is its 6 kernels per layer and nothing
 * more (16-bit weight and bias read and their gradients written without cast copies,
 * num_batches_tracked counted inside the statistics launch), every ReLU and residual add runs inside
 * batch norm's launches (batchNorm2dRelu: no ReLU kernel either way, no add forward; left: the 16
 * blocks' branch-gradient sums and 2 in the loss), and cuDNN takes 1x1 filters in place
 * (only the 16 3x3 convolutions copy their filter to NHWC: once in forward, kept for backward-data,
 * and the weight gradient back). A change that adds launches to the step fails here; raise the budget only
 * for launches that must be there. Counts are structural: the same on a GPU and on the emulated
 * device (which runs this file with MESHTRAIN_CUDA_EMU_SKIP_WORK=1). Without a device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ResNet } from '../../models/index.ts';
import {
  type CensusEntry, censusTotals, crossEntropy, cudaCensus, cudaIsAvailable, formatCensus, manualSeed, native, nn, noGrad, randn, SGD,
  tensor, tidy,
} from '../../src/index.ts';

const DEV = 'cuda:0';
/**
 * Device ops of forward + backward: 53 batch norms x 6, 158 cuDNN calls, 32 filter copies, 18 element-wise,
 * the rest the head and loss (653 before the ReLU and residual add went into batch norm: 49 ReLUs forward
 * and backward and 16 adds).
 */
const BUDGET = 539;

/** Census of the forward and backward of the second of two training steps (the first allocates and plans). */
function stepCensus(): CensusEntry[] {
  manualSeed(0);
  const model = nn.moduleToDevice(new ResNet(50, { numClasses: 10, dtype: 'bf16' }), DEV);
  const opt = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
  const x = noGrad(() => tidy(() => randn([2, 3, 32, 32]).to('bf16').to(DEV)));
  const y = tensor([1, 7], { dtype: 'i64', device: DEV });
  const forwardBackward = () => tidy(() => crossEntropy(model.forward(x), y).backward());
  forwardBackward();
  opt.step();
  opt.zeroGrad();
  const { entries } = cudaCensus(forwardBackward);
  model.dispose();
  x.dispose();
  y.dispose();
  return entries;
}

const count = (entries: CensusEntry[], keep: (e: CensusEntry) => boolean): number => entries.filter(keep).reduce((n, e) => n + e.count, 0);

if (!cudaIsAvailable()) {
  test('ResNet step census', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_census_resnet: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test(`one bf16 ResNet-50 forward and backward queue at most ${BUDGET} device ops, batch norm and filters without copies, ReLU inside batch norm`, () => {
    const entries = stepCensus();
    const table = formatCensus(entries);
    const t = censusTotals(entries);
    console.log(`  ResNet-50 forward + backward census: ${t.deviceOps} device ops (budget ${BUDGET}): kernels ${t.kernel}, library ${t.library}, memcpy ${t.memcpy}, memset ${t.memset}`);
    const site = (file: string) => (e: CensusEntry) => e.site.startsWith(`cuda/${file}:`);
    const conv = (pass: string) => (e: CensusEntry) => e.kind === 'library' && e.name === `${pass} bf16`;
    const copy = (label: string) => (e: CensusEntry) => site('copy.cu')(e) && e.name.startsWith('copy') && e.label === label;
    assert.is(count(entries, site('batchnorm.cu')), 53 * 6, `batch norm kernels:\n${table}`);
    // Element-wise: each block's input gradient summed from its two branches (16), 2 in the loss; no unary op (ReLU).
    const kernel = (name: string) => (e: CensusEntry) => site('elementwise.cu')(e) && e.name.startsWith(name);
    assert.is(count(entries, kernel('binary')), 16 + 2, `binary element-wise kernels:\n${table}`);
    assert.is(count(entries, kernel('unary')), 0, `unary element-wise kernels (ReLU):\n${table}`);
    assert.is(count(entries, site('elementwise.cu')), 18, `element-wise kernels:\n${table}`);
    assert.is(count(entries, conv('conv2dForward')), 53, table);
    assert.is(count(entries, conv('conv2dBackwardData')), 52, table);
    assert.is(count(entries, conv('conv2dBackwardWeights')), 53, table);
    // The 3x3 filters to cuDNN's NHWC (forward, kept for backward-data) and the weight gradients back; 1x1 filters need none.
    assert.is(count(entries, copy('bf16 strided')), 16 * 2, `filter copies:\n${table}`);
    assert.is(count(entries, copy('bf16')), 0, `flat bf16 copies:\n${table}`);
    // Batch norm's weight/bias casts and the f64 round trip of num_batches_tracked are gone.
    for (const label of ['bf16->f32', 'f32->bf16', 'i64->f64', 'f64->i64']) assert.is(count(entries, copy(label)), 0, `${label} copies:\n${table}`);
    assert.ok(t.deviceOps <= BUDGET, `${t.deviceOps} device ops, budget ${BUDGET}:\n${table}`);
  });
}

test.run();
