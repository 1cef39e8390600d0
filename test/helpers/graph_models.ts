/**
 * The two small models of the CUDA graph tests (cuda_graph, cuda_graph_optimizer) on cuda:0, with
 * their fixed batches and losses: a bf16 GPT tiny (embedding, attention, layer norm, fused GELU
 * linear, cross-entropy) and an f32 conv net (cuDNN convolutions, batch norm, residual add, pooling).
 */
import { GPT, gptConfig } from '../../models/gpt.ts';
import { add, crossEntropy, flatten, type Module, manualSeed, nn, randn, relu, type Tensor, tensor } from '../../src/index.ts';

export const DEV = 'cuda:0';
export const V = 64;
export const [B, T] = [2, 16];

/** Step s's token ids [B, T] and targets [B*T] (host tensors). */
export function gptBatch(s: number): Tensor[] {
  const ids = Array.from({ length: B * T }, (_, i) => (i * 7 + s * 13 + ((i * s) % 5)) % V);
  return [tensor(ids, { dtype: 'i64' }).reshape([B, T]), tensor(ids.map((v) => (v * 3 + 1) % V), { dtype: 'i64' })];
}

/** GPT tiny in bf16 on the device (seeded) and its static inputs holding batch 0. */
export function gptModel(): { model: GPT; inputs: Tensor[] } {
  manualSeed(11);
  const model = new GPT(gptConfig('tiny', { dtype: 'bf16' }));
  nn.moduleToDevice(model, DEV);
  return { model, inputs: gptBatch(0).map((t) => t.to(DEV)) };
}

export const gptLoss = (model: Module, [ids, targets]: Tensor[]) => crossEntropy((model as GPT).forward(ids).reshape([B * T, V]), targets);

export class ConvNet extends nn.Module {
  c1 = this.registerModule('c1', new nn.Conv2d(3, 8, 3, { padding: 1, bias: false }));
  b1 = this.registerModule('b1', new nn.BatchNorm2d(8));
  c2 = this.registerModule('c2', new nn.Conv2d(8, 8, 3, { padding: 1, bias: false }));
  b2 = this.registerModule('b2', new nn.BatchNorm2d(8));
  pool = this.registerModule('pool', new nn.AdaptiveAvgPool2d([1, 1]));
  fc = this.registerModule('fc', new nn.Linear(8, 5));
  override forward(x: Tensor): Tensor {
    const h = relu(this.b1.forward(this.c1.forward(x)));
    const r = relu(add(this.b2.forward(this.c2.forward(h)), h));
    return this.fc.forward(flatten(this.pool.forward(r), 1));
  }
}

/** Step s's images [4, 3, 6, 6] and labels (host tensors). */
export function convBatch(s: number): Tensor[] {
  manualSeed(100 + s);
  return [randn([4, 3, 6, 6]), tensor([s % 5, (s + 1) % 5, (s + 3) % 5, 4], { dtype: 'i64' })];
}

/** The conv net on the device (seeded) and its static inputs holding batch 0. */
export function convModel(): { model: ConvNet; inputs: Tensor[] } {
  manualSeed(5);
  const model = new ConvNet();
  nn.moduleToDevice(model, DEV);
  return { model, inputs: convBatch(0).map((t) => t.to(DEV)) };
}

export const convLoss = (model: Module, [x, y]: Tensor[]) => crossEntropy((model as ConvNet).forward(x), y);
