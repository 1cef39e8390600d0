/**
 * Training-step benchmark in one process: ResNet-101 on CIFAR-10-shaped batches of 32 (the
 * DeepSpeed example's torchvision model: ImageNet stem, 10 classes) and GPT-2 124M tokens/s, in
 * f32 and bf16. When Debian's python3-torch is installed, the same ResNet-101 step runs in
 * PyTorch in this run, and the ratio ours/theirs is printed (goal >= 1.0 in f32).
 *   npm run bench:train            (or: npx tsx bench/train.ts --quick)
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { GPT, gptConfig, ResNet } from '../models/index.ts';
import { AdamW, crossEntropy, type DType, manualSeed, native, randn, SGD, tensor, tidy, } from '../src/index.ts';
import { timeIt } from './timing.ts';

const quick = process.argv.includes('--quick');
const steps = quick ? 2 : 4;
const threads = native.deviceInfo().threads;

/** Median seconds per step after one warm-up step. */
const timeSteps = (step: () => void) => timeIt(steps, step);

function resnetStep(dtype: DType, batch: number): number {
  manualSeed(0);
  const model = new ResNet(101, { numClasses: 10, dtype });
  const opt = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
  const x = randn([batch, 3, 32, 32]).to(dtype);
  const y = tensor(Array.from({ length: batch }, (_, i) => i % 10), { dtype: 'i64' });
  const secs = timeSteps(() =>
    tidy(() => {
      crossEntropy(model.forward(x), y).backward();
      opt.step();
      opt.zeroGrad();
    }),
  );
  opt.dispose();
  model.dispose();
  x.dispose();
  y.dispose();
  return batch / secs;
}

function gptStep(dtype: DType, batch: number, seq: number): number {
  manualSeed(0);
  const model = new GPT(gptConfig('124M', { dtype }));
  const params = model.parameters();
  const opt = new AdamW(params, { lr: 1e-4 });
  const ids = tensor(Array.from({ length: batch * seq }, (_, i) => (i * 7919) % 50257), { dtype: 'i64', shape: [batch, seq] });
  const targets = tensor(Array.from({ length: batch * seq }, (_, i) => (i * 104729) % 50257), { dtype: 'i64', shape: [batch, seq] });
  const secs = timeSteps(() =>
    tidy(() => {
      crossEntropy(model.forward(ids), targets).backward();
      opt.step();
      opt.zeroGrad();
    }),
  );
  opt.dispose();
  model.dispose();
  ids.dispose();
  targets.dispose();
  return (batch * seq) / secs;
}

/** The same ResNet-101 step in PyTorch (plain torch, no torchvision needed); images/s or null. */
function torchResnet(dtype: 'f32' | 'bf16', batch: number): number | null {
  const py = '/usr/bin/python3';
  if (!existsSync(py)) return null;
  const script = `
import sys, time, torch, torch.nn as nn
torch.set_num_threads(${threads}); torch.manual_seed(0)
class B(nn.Module):
    def __init__(s, cin, w, stride):
        super().__init__()
        s.conv1 = nn.Conv2d(cin, w, 1, bias=False); s.bn1 = nn.BatchNorm2d(w)
        s.conv2 = nn.Conv2d(w, w, 3, stride, 1, bias=False); s.bn2 = nn.BatchNorm2d(w)
        s.conv3 = nn.Conv2d(w, w * 4, 1, bias=False); s.bn3 = nn.BatchNorm2d(w * 4)
        s.down = nn.Sequential(nn.Conv2d(cin, w * 4, 1, stride, bias=False), nn.BatchNorm2d(w * 4)) if stride != 1 or cin != w * 4 else None
    def forward(s, x):
        h = torch.relu(s.bn1(s.conv1(x))); h = torch.relu(s.bn2(s.conv2(h))); h = s.bn3(s.conv3(h))
        return torch.relu(h + (s.down(x) if s.down is not None else x))
layers, cin = [], 64
for i, (n, w) in enumerate(zip([3, 4, 23, 3], [64, 128, 256, 512])):
    for b in range(n):
        layers.append(B(cin, w, 2 if b == 0 and i > 0 else 1)); cin = w * 4
model = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1), *layers,
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 10))
model = model.to(memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
x = torch.randn(${batch}, 3, 32, 32).to(memory_format=torch.channels_last); y = torch.arange(${batch}) % 10
def step():
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=${dtype === 'bf16' ? 'True' : 'False'}):
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward(); opt.step(); opt.zero_grad()
step(); ts = []
for _ in range(${steps}):
    t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0)
ts.sort(); print(${batch} / ts[len(ts) // 2])
`;
  try {
    const out = execFileSync(py, ['-c', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
    return Number(out.trim().split('\n').pop());
  } catch (e) {
    const msg = (e as { stderr?: string }).stderr ?? String(e);
    if (/No module named 'torch'/.test(msg)) return null;
    throw new Error(`the PyTorch peer failed: ${msg.slice(-400)}`);
  }
}

const pad = (s: string | number, n = 14) => String(s).padStart(n);
console.log(`meshtrain training benchmark: ${threads} threads, ${steps} timed steps (median)\n`);
console.log(`${'ResNet-101 CIFAR-10, batch 32'.padEnd(32)}${pad('ours img/s')}${pad('PyTorch img/s')}${pad('ratio')}`);
let torchAbsent = false;
for (const dtype of ['f32', 'bf16'] as const) {
  const ours = resnetStep(dtype, 32);
  const theirs = torchResnet(dtype, 32);
  torchAbsent ||= theirs === null;
  const peer = theirs === null ? 'absent' : theirs.toFixed(1);
  const ratio = theirs === null ? '-' : (ours / theirs).toFixed(2);
  console.log(`${dtype.padEnd(32)}${pad(ours.toFixed(1))}${pad(peer)}${pad(ratio)}`);
}
if (torchAbsent) console.log('(PyTorch column skipped: apt-get install python3-torch to compare)');
const [gb, gs] = quick ? [1, 128] : [2, 256];
console.log(`\n${`GPT-2 124M, batch ${gb} x ${gs} tokens`.padEnd(32)}${pad('tokens/s')}`);
for (const dtype of ['f32', 'bf16'] as const) console.log(`${dtype.padEnd(32)}${pad(gptStep(dtype, gb, gs).toFixed(1))}`);
