/**
 * A few SGD steps of a small ResNet on cuda:0, every loss and every parameter and buffer written
 * to a JSON file, or compared bit for bit with such a file: proves that a change to the device
 * path (batch norm, convolution copies) leaves a training run unchanged on the emulated device.
 *   node --import tsx bench/resnet_bits.ts save|compare FILE [depth 18] [batch 2] [dtype bf16] [steps 3]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { ResNet } from '../models/index.ts';
import { crossEntropy, type DType, manualSeed, nn, noGrad, randn, SGD, tensor, tidy } from '../src/index.ts';

const [mode, file, depthArg = '18', batchArg = '2', dtypeArg = 'bf16', stepsArg = '3'] = process.argv.slice(2);
if ((mode !== 'save' && mode !== 'compare') || !file) {
  console.error('usage: resnet_bits.ts save|compare FILE [depth] [batch] [dtype] [steps]');
  process.exit(2);
}
const depth = Number(depthArg) as 18 | 50;
const batch = Number(batchArg);
const dtype = dtypeArg as DType;
const DEV = 'cuda:0';

manualSeed(3);
const model = nn.moduleToDevice(new ResNet(depth, { numClasses: 10, dtype }), DEV);
const opt = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
const losses: number[] = [];
for (let s = 0; s < Number(stepsArg); s++) {
  tidy(() => {
    const x = noGrad(() => randn([batch, 3, 32, 32]).to(dtype).to(DEV));
    const y = tensor(Array.from({ length: batch }, (_, i) => (i * 3 + s) % 10), { dtype: 'i64', device: DEV });
    const loss = crossEntropy(model.forward(x).to('f32'), y);
    loss.backward();
    opt.step();
    opt.zeroGrad();
    losses.push(loss.item());
  });
}
const state: Record<string, number[]> = {};
for (const [name, t] of model.namedParameters()) state[name] = t.toList() as number[];
for (const [name, t] of model.namedBuffers()) state[name] = t.toList() as number[];
model.dispose();
const run = { depth, batch, dtype, losses, state };

if (mode === 'save') {
  writeFileSync(file, JSON.stringify(run));
  console.log(`saved ${Object.keys(state).length} tensors, losses ${losses.join(' ')}`);
} else {
  const want = JSON.parse(readFileSync(file, 'utf8')) as typeof run;
  const bad: string[] = [];
  want.losses.forEach((l, i) => {
    if (!Object.is(losses[i], l)) bad.push(`loss ${i}: ${losses[i]} now, ${l} saved`);
  });
  for (const [name, w] of Object.entries(want.state)) {
    const got = state[name];
    if (!got || got.length !== w.length) bad.push(`${name}: missing or resized`);
    else {
      const i = w.findIndex((v, j) => !Object.is(v, got[j]));
      if (i >= 0) bad.push(`${name}[${i}]: ${got[i]} now, ${w[i]} saved`);
    }
  }
  console.log(bad.length === 0 ? `bit for bit: ${want.losses.length} losses, ${Object.keys(want.state).length} tensors` : `DIFFERENT:\n${bad.slice(0, 20).join('\n')}`);
  process.exit(bad.length === 0 ? 0 : 1);
}
