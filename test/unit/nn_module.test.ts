/**
 * nn.Module: names, shared-parameter dedup, train/eval, state dicts and their errors, forward
 * hooks (order, direct child.forward calls, removal) and gradient-ready hooks.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GPT, gptConfig } from '../../models/index.ts';
import {
  add, copyInPlace, crossEntropy, liveStorages, Module, manualSeed, mean, nn, noGrad, randn, type Tensor, tensor, tidy, zeros,
} from '../../src/index.ts';

class Block extends Module {
  readonly fc: nn.Linear;
  readonly bn: nn.BatchNorm2d;
  constructor() {
    super();
    this.fc = this.registerModule('fc', new nn.Linear(4, 2));
    this.bn = this.registerModule('bn', new nn.BatchNorm2d(3));
  }
  override forward(x: Tensor): Tensor {
    return this.fc.forward(x);
  }
}

/** An embedding whose table is also registered as the head's weight (GPT-style tying). */
class Tied extends Module {
  readonly emb: nn.Embedding;
  readonly headWeight: Tensor;
  constructor() {
    super();
    this.emb = this.registerModule('emb', new nn.Embedding(10, 4));
    this.headWeight = this.registerParameter('head_weight', this.emb.weight);
  }
  override forward(ids: Tensor): Tensor {
    return this.emb.forward(ids);
  }
}

test('names: parameters, buffers, modules in registration order, dotted', () => {
  const m = new nn.Sequential(new Block(), new nn.ReLU());
  assert.equal(
    m.namedParameters().map(([n]) => n),
    ['0.fc.weight', '0.fc.bias', '0.bn.weight', '0.bn.bias'],
  );
  assert.equal(
    m.namedBuffers().map(([n]) => n),
    ['0.bn.running_mean', '0.bn.running_var', '0.bn.num_batches_tracked'],
  );
  assert.equal(
    m.namedModules().map(([n, mod]) => `${n}:${mod.constructor.name}`),
    [':Sequential', '0:Block', '0.fc:Linear', '0.bn:BatchNorm2d', '1:ReLU'],
  );
  assert.equal(m.namedParameters({ prefix: 'model' })[0][0], 'model.0.fc.weight');
  assert.is(m.at(0).namedParameters({ recurse: false }).length, 0);
  assert.is(m.parameters().length, 4);
  assert.is(m.numParameters(), 4 * 2 + 2 + 3 + 3);
  assert.is(m.getParameter('0.fc.bias'), (m.at(0) as Block).fc.bias);
  assert.is(m.getSubmodule('0.bn'), (m.at(0) as Block).bn);
  assert.throws(() => m.getParameter('0.fc.nope'), /no parameter "0.fc.nope"/);
  for (const [, p] of m.namedParameters()) {
    assert.ok(p.requiresGrad && p.isLeaf && p.storage.tag === 'param');
  }
  for (const [, b] of m.namedBuffers()) assert.is(b.storage.tag, 'other');
  m.dispose();
});

test('registration errors: duplicate names, dots, wrong memory tag', () => {
  class Bad extends Module {
    override forward(x: Tensor): Tensor {
      return x;
    }
  }
  const b = new Bad();
  const t = zeros([2], { tag: 'param' });
  b.registerParameter('w', t);
  assert.throws(() => b.registerParameter('w', zeros([2], { tag: 'param' })), /"w" is already registered/);
  assert.throws(() => b.registerModule('a.b', new Bad()), /without dots/);
  const act = randn([2]);
  assert.throws(() => b.registerParameter('v', act), /tagged 'activation'; create parameters with \{ tag: 'param' \}/);
  act.dispose();
  b.dispose();
  assert.ok(t.disposed);
});

test('a shared tensor is one parameter but two state-dict keys', () => {
  const m = new Tied();
  // A module's own parameters come before its children's (PyTorch's order): the first name wins.
  assert.equal(m.namedParameters().map(([n]) => n), ['head_weight']);
  assert.is(m.numParameters(), 40);
  assert.equal(Object.keys(m.stateDict()), ['head_weight', 'emb.weight']);
  m.dispose();
});

test('train() and eval() reach every descendant; dropout follows', () => {
  const m = new nn.Sequential(new nn.Linear(4, 4), new nn.Dropout(0.5), new nn.Sequential(new nn.Dropout(0.5)));
  assert.ok(m.modules().every((x) => x.training));
  assert.is(m.eval(), m);
  assert.ok(m.modules().every((x) => !x.training));
  tidy(() => {
    const x = randn([8, 4]);
    assert.equal(m.at(1).forward(x).toList(), x.toList());
  });
  m.train();
  assert.ok(m.modules().every((x) => x.training));
  tidy(() => {
    const y = m.at(1).forward(randn([64, 4])).toList();
    assert.ok(y.some((v: number) => v === 0));
  });
  m.dispose();
});

test('stateDict round trip copies values (and buffers) into another instance', () => {
  manualSeed(1);
  const a = new Block();
  manualSeed(2);
  const b = new Block();
  noGrad(() => tidy(() => a.bn.forward(randn([2, 3, 4, 4]))));
  assert.not.equal(a.fc.weight.toList(), b.fc.weight.toList());
  const res = b.loadStateDict(a.stateDict());
  assert.equal(res, { missingKeys: [], unexpectedKeys: [] });
  for (const [k, t] of Object.entries(a.stateDict())) assert.equal(b.stateDict()[k].toList(), t.toList(), k);
  assert.is(b.bn.numBatchesTracked?.item(), 1);
  // Copies, not shared storage.
  tidy(() => noGrad(() => copyInPlace(a.fc.bias as Tensor, tensor([9, 9]))));
  assert.not.equal(b.fc.bias?.toList(), [9, 9]);
  a.dispose();
  b.dispose();
});

test('loadStateDict: missing, unexpected (with the closest name) and mis-shaped keys in one error', () => {
  const m = new Block();
  const before = m.fc.weight.toList();
  const good = m.stateDict();
  const sd: Record<string, Tensor> = { ...good };
  delete sd['bn.bias'];
  sd['fc.wieght'] = sd['fc.weight'];
  delete sd['fc.weight'];
  sd['extra.thing'] = zeros([1]);
  sd['fc.bias'] = zeros([3]);
  let msg = '';
  try {
    m.loadStateDict(sd);
  } catch (e) {
    msg = (e as Error).message;
  }
  assert.match(msg, 'loadStateDict into Block');
  assert.match(msg, 'missing key(s) (2): "fc.weight", "bn.bias"');
  assert.match(msg, 'unexpected key(s) (2): "fc.wieght" (did you mean "fc.weight"?), "extra.thing"');
  assert.match(msg, 'shape mismatch (1): "fc.bias": checkpoint [3], model [2]');
  assert.equal(m.fc.weight.toList(), before, 'nothing copied');

  // Not strict: missing and unexpected are reported, shapes still checked.
  const partial = { 'fc.weight': zeros([2, 4]), 'other.w': zeros([1]) };
  const res = m.loadStateDict(partial, { strict: false });
  assert.equal(res.unexpectedKeys, ['other.w']);
  assert.equal(res.missingKeys, ['fc.bias', 'bn.weight', 'bn.bias', 'bn.running_mean', 'bn.running_var', 'bn.num_batches_tracked']);
  assert.ok(m.fc.weight.toList().every((v) => v === 0));
  assert.throws(() => m.loadStateDict({ 'fc.weight': zeros([4, 2]) }, { strict: false }), /"fc.weight": checkpoint \[4, 2\], model \[2, 4\]/);

  // A wrapper's prefix on every key is named as such.
  const prefixed = Object.fromEntries(Object.entries(good).map(([k, v]) => [`module.${k}`, v]));
  assert.throws(() => m.loadStateDict(prefixed), /every checkpoint key has an extra prefix "module\."/);
  // A Map works too.
  m.loadStateDict(new Map(Object.entries(good)));
  for (const t of [...Object.values(partial), sd['extra.thing'], sd['fc.bias']]) t.dispose();
  m.dispose();
});

class Leaf extends Module {
  constructor(
    readonly log: string[],
    readonly name: string,
  ) {
    super();
  }
  override forward(x: Tensor): Tensor {
    this.log.push(`${this.name}.forward`);
    return add(x, 1);
  }
}

class Parent extends Module {
  readonly a: Leaf;
  readonly b: Leaf;
  constructor(readonly log: string[]) {
    super();
    this.a = this.registerModule('a', new Leaf(log, 'a'));
    this.b = this.registerModule('b', new Leaf(log, 'b'));
  }
  override forward(x: Tensor): Tensor {
    this.log.push('parent.forward');
    return this.b.forward(this.a.forward(x)); // direct calls of the children's forward
  }
}

test('forward hooks: order, direct child.forward calls, replacing args and output, remove()', () => {
  const log: string[] = [];
  const p = new Parent(log);
  const hooks = [
    p.registerForwardPreHook(() => void log.push('parent.pre1')),
    p.registerForwardPreHook(() => void log.push('parent.pre2')),
    p.registerForwardHook(() => void log.push('parent.post')),
    p.a.registerForwardPreHook((m) => void log.push(`a.pre(${m === p.a})`)),
    p.a.registerForwardHook(() => void log.push('a.post')),
    p.b.registerForwardPreHook(() => void log.push('b.pre')),
    p.b.registerForwardHook(() => void log.push('b.post')),
  ];
  tidy(() => {
    const y = p.forward(zeros([2]));
    assert.equal(y.toList(), [2, 2]);
  });
  assert.equal(log, [
    'parent.pre1', 'parent.pre2', 'parent.forward', 'a.pre(true)', 'a.forward', 'a.post', 'b.pre', 'b.forward', 'b.post', 'parent.post',
  ]);

  // A pre hook may replace the arguments and a post hook the output.
  const r1 = p.a.registerForwardPreHook((_m, args) => [add(args[0] as Tensor, 10)]);
  const r2 = p.b.registerForwardHook((_m, _args, out) => add(out as Tensor, 100));
  tidy(() => assert.equal(p.forward(zeros([1])).toList(), [112]));
  r1.remove();
  r2.remove();
  r2.remove(); // idempotent
  for (const h of hooks) h.remove();
  log.length = 0;
  tidy(() => assert.equal(p.forward(zeros([1])).toList(), [2]));
  assert.equal(log, ['parent.forward', 'a.forward', 'b.forward']);
});

test('forward hooks: Sequential children and a forward assigned as an instance property', () => {
  const log: string[] = [];
  const seq = new nn.Sequential(new Leaf(log, 'x'), new Leaf(log, 'y'));
  seq.at(1).registerForwardPreHook(() => void log.push('y.pre'));
  class Arrow extends Module {
    override forward = (x: Tensor): Tensor => {
      log.push('arrow.forward');
      return x;
    };
  }
  const arrow = new Arrow();
  arrow.registerForwardHook(() => void log.push('arrow.post'));
  tidy(() => arrow.forward(seq.forward(zeros([1]))));
  assert.equal(log, ['x.forward', 'y.pre', 'y.forward', 'arrow.forward', 'arrow.post']);

  // A reference taken before any hook existed runs hooks registered later; a subclass calling
  // super.forward runs them once.
  class Sub extends Leaf {
    override forward(x: Tensor): Tensor {
      log.push('sub.forward');
      return super.forward(x);
    }
  }
  const sub = new Sub(log, 'sub');
  const early = sub.forward;
  sub.registerForwardPreHook(() => void log.push('sub.pre'));
  log.length = 0;
  tidy(() => early(zeros([1])));
  assert.equal(log, ['sub.pre', 'sub.forward', 'sub.forward']);
});

test('grad-ready hooks fire once per parameter per backward, after the whole gradient (tied wte included)', () => {
  for (const checkpoint of [false, true]) {
    manualSeed(0);
    const model = new GPT(gptConfig('tiny', { checkpoint }));
    const fired = new Map<string, number>();
    const seen = new Map<string, number[]>();
    const handle = model.registerParamGradHook((name, p) => {
      fired.set(name, (fired.get(name) ?? 0) + 1);
      seen.set(name, (p.grad as Tensor).toList());
    });
    const names = model.namedParameters().map(([n]) => n);
    const step = () =>
      tidy(() => {
        const ids = tensor([[1, 2, 3, 4, 5, 6, 7, 8]], { dtype: 'i64' });
        crossEntropy(model.forward(ids), tensor([[2, 3, 4, 5, 6, 7, 8, 9]], { dtype: 'i64' })).backward();
      });
    step();
    assert.equal([...fired.keys()].sort(), [...names].sort(), `checkpoint ${checkpoint}`);
    for (const [name, p] of model.namedParameters()) {
      assert.is(fired.get(name), 1, `${name} once`);
      assert.equal(seen.get(name), (p.grad as Tensor).toList(), `${name}: the hook saw the complete gradient`);
    }
    step(); // gradients accumulate; each hook fires once more
    for (const name of names) assert.is(fired.get(name), 2, name);
    handle.remove();
    step();
    for (const name of names) assert.is(fired.get(name), 2, name);
    model.dispose();
  }
});

test('registerGradReadyHook by name or tensor; removal; non-parameters rejected', () => {
  const m = new Block();
  let byName = 0;
  let byTensor = 0;
  const h1 = m.registerGradReadyHook('fc.weight', (p) => {
    assert.is(p, m.fc.weight);
    byName++;
  });
  m.registerGradReadyHook(m.fc.bias as Tensor, () => byTensor++);
  const run = () => tidy(() => mean(m.forward(randn([3, 4]))).backward());
  run();
  h1.remove();
  run();
  assert.is(byName, 1);
  assert.is(byTensor, 2);
  const stray = zeros([1], { tag: 'param' });
  assert.throws(() => m.registerGradReadyHook(stray, () => {}), /is not a parameter of this Block/);
  assert.throws(() => m.registerGradReadyHook('fc.nope', () => {}), /no parameter "fc.nope"/);
  stray.dispose();
  m.dispose();
});

test('zeroGrad and dispose free what the module owns; parameters survive tidy()', () => {
  const before = liveStorages();
  const m = tidy(() => new Block());
  assert.is(liveStorages() - before, 7); // 4 parameters, 3 buffers
  tidy(() => mean(m.forward(randn([3, 4]))).backward());
  assert.is(liveStorages() - before, 9); // + 2 gradients
  m.zeroGrad();
  assert.ok(m.parameters().every((p) => p.grad === null));
  m.dispose();
  assert.is(liveStorages(), before);
});

test('replaceModule: same name and place, the field re-pointed; ModuleList and Sequential iterate the new child', () => {
  const m = new Block();
  const fc = new nn.Linear(4, 2);
  assert.is(m.replaceModule('fc', fc), fc);
  assert.is(m.fc, fc);
  assert.equal(m.namedChildren().map(([n, c]) => [n, c === fc]), [['fc', true], ['bn', false]]);
  assert.throws(() => m.replaceModule('nope', fc), /Block: no child module "nope" to replace \(children: fc, bn\)/);
  const list = new nn.ModuleList([new nn.Linear(2, 2), new nn.Linear(2, 2)]);
  const second = new nn.Linear(2, 3);
  list.replaceModule('1', second);
  assert.is(list.at(1), second);
  assert.is([...list][1], second);
  const seq = new nn.Sequential({ a: new nn.ReLU(), b: new nn.Linear(2, 2) });
  const b = new nn.Linear(2, 5);
  seq.replaceModule('b', b);
  assert.equal(seq.forward(zeros([1, 2])).shape, [1, 5]);
});

test.run();
