/**
 * The main demo for now: a small MLP learns a fixed random "teacher" network in one process,
 * with plain SGD. Later this becomes the 3D-parallel GPT.
 *   npm start            (or: npx tsx examples/train_mlp.ts --steps 300)
 */
import { addInPlace, linear, manualSeed, mean, memoryStats, noGrad, randn, relu, sub, type Tensor, tidy, zeros } from '../src/index.ts';

const args = process.argv.slice(2);
const steps = Number(args[args.indexOf('--steps') + 1] ?? 0) || 200;
const batch = 64;
const [inF, hidden, outF] = [32, 128, 8];
const lr = 0.05;

manualSeed(0);
// Parameters are long-lived: created outside any scope, tagged 'param'.
const param = (shape: number[], std: number) => {
  const t = randn(shape, { std, tag: 'param' });
  t.requiresGrad = true;
  return t;
};
const teacher = [randn([hidden, inF], { std: 0.3, tag: 'other' }), randn([outF, hidden], { std: 0.3, tag: 'other' })];
const w1 = param([hidden, inF], 1 / Math.sqrt(inF));
const b1 = zeros([hidden], { tag: 'param', requiresGrad: true });
const w2 = param([outF, hidden], 1 / Math.sqrt(hidden));
const b2 = zeros([outF], { tag: 'param', requiresGrad: true });
const params = [w1, b1, w2, b2];

const forward = (x: Tensor) => linear(relu(linear(x, w1, b1)), w2, b2);

const t0 = performance.now();
let first = 0;
let last = 0;
for (let step = 1; step <= steps; step++) {
  last = tidy(() => {
    const x = randn([batch, inF]);
    const y = noGrad(() => linear(relu(linear(x, teacher[0])), teacher[1]));
    const diff = sub(forward(x), y);
    const loss = mean(diff.mul(diff));
    loss.backward();
    noGrad(() => {
      for (const p of params) {
        addInPlace(p, p.grad as Tensor, -lr);
        p.grad?.dispose();
        p.grad = null;
      }
    });
    return loss.item();
  });
  if (step === 1) first = last;
  if (step % 50 === 0 || step === steps) {
    const secs = (performance.now() - t0) / 1000;
    console.log(`step ${String(step).padStart(4)}  loss ${last.toFixed(5)}  ${((step * batch) / secs).toFixed(0)} samples/s`);
  }
}
const mem = memoryStats().cpu;
console.log(`loss ${first.toFixed(4)} -> ${last.toFixed(4)}; memory now: param ${mem.param.current} B, activation ${mem.activation.current} B (peak ${mem.activation.peak} B)`);
if (!(last < first * 0.5)) {
  console.error('the loss did not fall by half: something is wrong');
  process.exit(1);
}
