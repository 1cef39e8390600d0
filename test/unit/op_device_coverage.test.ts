/**
 * Every function src/ops/index.ts exports is exercised on CUDA by some test/unit/cuda_*.test.ts
 * (those run on the emulated device by cuda_emu and on a GPU), or is exempted below with the reason.
 * CPU only and cheap: it reads the test sources (test/helpers/op_mentions.ts says what counts as a use).
 * A new op fails this test, naming it, until it gets a CUDA case or an exemption.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as ops from '../../src/ops/index.ts';
import { Tensor } from '../../src/tensor/tensor.ts';
import { codeOnly, opsUsedIn } from '../helpers/op_mentions.ts';

const unit = path.resolve(import.meta.dirname);

/**
 * Ops with no CUDA case of their own, and why none is needed. Empty today: every exported op has
 * device behaviour (a kernel, a copy, or a gradient that runs kernels on the operand's device), and
 * each is named in a cuda_* file. An entry needs a reason a reviewer can check, e.g. "pure
 * bookkeeping on the host, no kernel and no gradient".
 */
const EXEMPT: Record<string, string> = {};

const exported = new Set(Object.entries(ops).filter(([, v]) => typeof v === 'function').map(([k]) => k));
const methods = new Set(Object.getOwnPropertyNames(Tensor.prototype));
const cudaFiles = readdirSync(unit).filter((f) => /^cuda_.*\.test\.ts$/.test(f));

/** The ops of `all` that no cuda_* file uses and EXEMPT does not list, sorted. */
function missingOnCuda(all: ReadonlySet<string>): string[] {
  const used = new Set<string>();
  for (const f of cudaFiles) for (const op of opsUsedIn(readFileSync(path.join(unit, f), 'utf8'), all, methods)) used.add(op);
  return [...all].filter((op) => !used.has(op) && !(op in EXEMPT)).sort();
}

test('every exported op is exercised by a cuda_* test file or exempted with a reason', () => {
  assert.ok(exported.size > 50, `src/ops/index.ts exports ${exported.size} functions`);
  const missing = missingOnCuda(exported);
  assert.equal(missing, [], `ops with no CUDA case in test/unit/cuda_*.test.ts and no exemption: ${missing.join(', ')}`);
});

test('the exemption list names only exported ops, each with a reason', () => {
  const stale = Object.keys(EXEMPT).filter((op) => !exported.has(op));
  assert.equal(stale, [], `exempted but not exported by src/ops/index.ts: ${stale.join(', ')}`);
  for (const [op, why] of Object.entries(EXEMPT)) assert.ok(why.trim().length > 10, `${op}: the exemption needs a reason`);
});

test('what counts as a use: code that names an imported op or calls a Tensor method, not comments, strings or imports', () => {
  const all = new Set(['add', 'mul', 'neg', 'narrow', 'gelu', 'exp', 'sum', 'relu', 'tanh', 'newOp']);
  const src = [
    "import { add, mul as times, neg, gelu, exp, relu, tanh, newOp } from '../../src/index.ts';",
    "import { sum } from './local.ts';",
    "// newOp(x) in a comment; /* gelu(x) */",
    "test('exp of x', () => { parity('neg', neg, () => [times(a, 2).narrow(0, 1, 1)]); sum(x); });",
    // biome-ignore lint/suspicious/noTemplateCurlyInString: this is test source holding a template literal
    'assert.throws(() => f(), /relu: bad \'input/); const y = `tanh(${z})`; add(y, 1);',
  ].join('\n');
  assert.equal([...opsUsedIn(src, all, new Set(['narrow', 'sum']))].sort(), ['add', 'mul', 'narrow', 'neg']);
  assert.is(codeOnly("a('x // y'); b(/'/); // c\nd"), "a('      '); b(/ /);     \nd");
});

test('an op added to the exports with no CUDA case is reported by name', () => {
  assert.ok(missingOnCuda(new Set([...exported, 'hbNotYetOnCuda'])).includes('hbNotYetOnCuda'));
});

test.run();
