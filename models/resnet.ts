/**
 * ResNet 18/34/50/101/152 (He et al. 2015) with torchvision's structure, names and init
 * (v1.5: a bottleneck's stride sits on its 3x3 conv). ImageNet stem: 7x7/2 conv + 3x3/2
 * max-pool; `cifar: true` uses a 3x3/1 conv and no max-pool for 32x32 images.
 * State-dict keys: conv1, bn1, layer1.0.conv1, ..., layerN.0.downsample.{0,1}, fc.
 */
import { type DType, flatten, type Tensor } from '../src/index.ts';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, init, Linear, MaxPool2d, Module, Sequential } from '../src/nn/index.ts';

export interface ResNetOptions {
  /** Output classes (default 1000). */
  numClasses?: number;
  /** 3x3 stride-1 stem without max-pool, for 32x32 inputs (default false: the ImageNet stem). */
  cifar?: boolean;
  /** Start each residual branch's last BatchNorm at zero weight (default false, as torchvision). */
  zeroInitResidual?: boolean;
  dtype?: DType;
}

type BlockKind = 'basic' | 'bottleneck';
const EXPANSION: Record<BlockKind, number> = { basic: 1, bottleneck: 4 };
const DEPTHS: Record<number, [BlockKind, number[]]> = {
  18: ['basic', [2, 2, 2, 2]],
  34: ['basic', [3, 4, 6, 3]],
  50: ['bottleneck', [3, 4, 6, 3]],
  101: ['bottleneck', [3, 4, 23, 3]],
  152: ['bottleneck', [3, 8, 36, 3]],
};
const WIDTHS = [64, 128, 256, 512];

interface Ctx {
  dtype: DType;
}

// torchvision: kaiming-normal (fan-out, relu) conv weights; BatchNorm ones/zeros.
function conv(ctx: Ctx, cin: number, cout: number, k: number, stride: number): Conv2d {
  return new Conv2d(cin, cout, k, {
    stride,
    padding: Math.floor(k / 2),
    bias: false,
    dtype: ctx.dtype,
    initWeight: (w) => init.kaimingNormal_(w, { mode: 'fanOut', nonlinearity: 'relu' }),
  });
}

function bn(ctx: Ctx, c: number): BatchNorm2d {
  return new BatchNorm2d(c, { dtype: ctx.dtype });
}

// Every ReLU follows a batch norm (at a block's end, after the shortcut is added): fused into it
// on CUDA, the separate ops elsewhere (BatchNorm2d.forward's second argument).
const RELU = { relu: true } as const;

/** Two 3x3 convs (ResNet 18/34) plus the shortcut. */
export class BasicBlock extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly downsample: Sequential | null = null;

  constructor(ctx: Ctx, cin: number, planes: number, stride: number) {
    super();
    this.conv1 = this.registerModule('conv1', conv(ctx, cin, planes, 3, stride));
    this.bn1 = this.registerModule('bn1', bn(ctx, planes));
    this.conv2 = this.registerModule('conv2', conv(ctx, planes, planes, 3, 1));
    this.bn2 = this.registerModule('bn2', bn(ctx, planes));
    if (stride !== 1 || cin !== planes) {
      this.downsample = this.registerModule('downsample', new Sequential(conv(ctx, cin, planes, 1, stride), bn(ctx, planes)));
    }
  }

  override forward(x: Tensor): Tensor {
    const out = this.conv2.forward(this.bn1.forward(this.conv1.forward(x), RELU));
    const shortcut = this.downsample ? this.downsample.forward(x) : x;
    return this.bn2.forward(out, { relu: true, residual: shortcut });
  }
}

/** 1x1 reduce, 3x3 (strided), 1x1 expand by 4 (ResNet 50/101/152) plus the shortcut. */
export class Bottleneck extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly downsample: Sequential | null = null;

  constructor(ctx: Ctx, cin: number, planes: number, stride: number) {
    super();
    const cout = planes * EXPANSION.bottleneck;
    this.conv1 = this.registerModule('conv1', conv(ctx, cin, planes, 1, 1));
    this.bn1 = this.registerModule('bn1', bn(ctx, planes));
    this.conv2 = this.registerModule('conv2', conv(ctx, planes, planes, 3, stride));
    this.bn2 = this.registerModule('bn2', bn(ctx, planes));
    this.conv3 = this.registerModule('conv3', conv(ctx, planes, cout, 1, 1));
    this.bn3 = this.registerModule('bn3', bn(ctx, cout));
    if (stride !== 1 || cin !== cout) {
      this.downsample = this.registerModule('downsample', new Sequential(conv(ctx, cin, cout, 1, stride), bn(ctx, cout)));
    }
  }

  override forward(x: Tensor): Tensor {
    let out = this.bn1.forward(this.conv1.forward(x), RELU);
    out = this.conv3.forward(this.bn2.forward(this.conv2.forward(out), RELU));
    const shortcut = this.downsample ? this.downsample.forward(x) : x;
    return this.bn3.forward(out, { relu: true, residual: shortcut });
  }
}

function checkDepth(depth: number): [BlockKind, number[]] {
  const d = DEPTHS[depth];
  if (!d) throw new Error(`ResNet: depth must be one of ${Object.keys(DEPTHS).join(', ')}, got ${depth}`);
  return d;
}

function checkClasses(n: number): number {
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`ResNet: numClasses must be a positive integer, got ${n}`);
  return n;
}

/**
 * images [N, 3, H, W] → logits [N, numClasses].
 * @example
 * const model = new ResNet(101, { numClasses: 10, cifar: true });
 * const loss = crossEntropy(model.forward(images), labels);
 */
export class ResNet extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly maxpool: MaxPool2d | null = null;
  readonly layers: Sequential[];
  readonly avgpool: AdaptiveAvgPool2d;
  readonly fc: Linear;

  /** The width the head sees (512 or 2048): what "auto" ZeRO bucket sizes are derived from. */
  get hiddenSize(): number {
    return this.fc.inFeatures;
  }

  constructor(
    readonly depth: number,
    opts: ResNetOptions = {},
  ) {
    super();
    const [kind, counts] = checkDepth(depth);
    const numClasses = checkClasses(opts.numClasses ?? 1000);
    const ctx: Ctx = { dtype: opts.dtype ?? 'f32' };
    this.conv1 = this.registerModule('conv1', opts.cifar ? conv(ctx, 3, 64, 3, 1) : conv(ctx, 3, 64, 7, 2));
    this.bn1 = this.registerModule('bn1', bn(ctx, 64));
    if (!opts.cifar) this.maxpool = this.registerModule('maxpool', new MaxPool2d(3, { stride: 2, padding: 1 }));
    const Block = kind === 'basic' ? BasicBlock : Bottleneck;
    let cin = 64;
    this.layers = counts.map((n, i) => {
      const blocks: Module[] = [];
      for (let b = 0; b < n; b++) {
        blocks.push(new Block(ctx, cin, WIDTHS[i], b === 0 && i > 0 ? 2 : 1));
        cin = WIDTHS[i] * EXPANSION[kind];
      }
      return this.registerModule(`layer${i + 1}`, new Sequential(...blocks));
    });
    this.avgpool = this.registerModule('avgpool', new AdaptiveAvgPool2d(1));
    this.fc = this.registerModule('fc', new Linear(cin, numClasses, { dtype: ctx.dtype }));
    if (opts.zeroInitResidual) {
      for (const m of this.modules()) {
        if (m instanceof Bottleneck) init.zeros_(m.bn3.weight as Tensor);
        else if (m instanceof BasicBlock) init.zeros_(m.bn2.weight as Tensor);
      }
    }
  }

  override forward(x: Tensor): Tensor {
    let h = this.bn1.forward(this.conv1.forward(x), RELU);
    if (this.maxpool) h = this.maxpool.forward(h);
    for (const layer of this.layers) h = layer.forward(h);
    return this.fc.forward(flatten(this.avgpool.forward(h), 1));
  }
}

/**
 * Parameter count of a ResNet without allocating it (BatchNorm weights and biases included,
 * running statistics not).
 * @example
 * resnetParamCount(101);                      // 44549160
 * resnetParamCount(101, { numClasses: 10 });  // 42520650
 */
export function resnetParamCount(depth: number, opts: Omit<ResNetOptions, 'dtype' | 'zeroInitResidual'> = {}): number {
  const [kind, counts] = checkDepth(depth);
  const numClasses = checkClasses(opts.numClasses ?? 1000);
  const convP = (cin: number, cout: number, k: number) => cin * cout * k * k;
  const bnP = (c: number) => 2 * c;
  let n = convP(3, 64, opts.cifar ? 3 : 7) + bnP(64);
  let cin = 64;
  counts.forEach((blocks, i) => {
    const planes = WIDTHS[i];
    for (let b = 0; b < blocks; b++) {
      const stride = b === 0 && i > 0 ? 2 : 1;
      const cout = planes * EXPANSION[kind];
      if (kind === 'basic') n += convP(cin, planes, 3) + bnP(planes) + convP(planes, planes, 3) + bnP(planes);
      else n += convP(cin, planes, 1) + bnP(planes) + convP(planes, planes, 3) + bnP(planes) + convP(planes, cout, 1) + bnP(cout);
      if (stride !== 1 || cin !== cout) n += convP(cin, cout, 1) + bnP(cout);
      cin = cout;
    }
  });
  return n + cin * numClasses + numClasses;
}

export const resnet18 = (opts: ResNetOptions = {}) => new ResNet(18, opts);
export const resnet34 = (opts: ResNetOptions = {}) => new ResNet(34, opts);
export const resnet50 = (opts: ResNetOptions = {}) => new ResNet(50, opts);
export const resnet101 = (opts: ResNetOptions = {}) => new ResNet(101, opts);
export const resnet152 = (opts: ResNetOptions = {}) => new ResNet(152, opts);
