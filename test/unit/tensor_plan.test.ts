/**
 * Tensor-parallel plans as data (partitioners/tensor.ts): pattern matching, the GPT plan against
 * GPT's module names, printing, and errors for bad plans. No processes: parallelize itself is
 * tested in test/dist/tp_*.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GPT, gptConfig } from '../../models/index.ts';
import { formatPlan, gptTensorParallelPlan, matchesPattern, matchPlan, planEntry } from '../../partitioners/index.ts';
import { withoutInit } from '../../src/nn/index.ts';

const names = withoutInit(() => new GPT(gptConfig('tiny'))).namedModules().map(([n]) => n);

function throwsWith(fn: () => unknown, text: string): void {
  try {
    fn();
  } catch (e) {
    assert.ok((e as Error).message.includes(text), `"${(e as Error).message}" should include "${text}"`);
    return;
  }
  assert.unreachable(`expected an error with "${text}"`);
}

test('patterns: * is exactly one dotted segment', () => {
  assert.ok(matchesPattern('h.*.mlp.c_fc', 'h.12.mlp.c_fc'));
  assert.ok(matchesPattern('wte', 'wte'));
  assert.not.ok(matchesPattern('h.*', 'h.0.mlp'));
  assert.not.ok(matchesPattern('h.*.mlp', 'h.0.attn'));
  assert.not.ok(matchesPattern('*', 'h.0'));
});

test('GPT plan: Megatron split of every block, vocab-parallel wte, the tied head entered at ln_f', () => {
  const got = matchPlan(gptTensorParallelPlan(), names).map((a) => `${a.name}:${a.entry.style}`);
  assert.equal(got, [
    'wte:vocab', 'h.0.attn:heads', 'h.1.attn:heads', 'h.0.attn.c_attn:colwise', 'h.1.attn.c_attn:colwise', 'h.0.attn.c_proj:rowwise',
    'h.1.attn.c_proj:rowwise', 'h.0.mlp.c_fc:colwise', 'h.1.mlp.c_fc:colwise', 'h.0.mlp.c_proj:rowwise', 'h.1.mlp.c_proj:rowwise', 'ln_f:replicate',
  ]);
  const sp = gptTensorParallelPlan({ sequenceParallel: true });
  assert.ok(sp.sequenceParallel);
  const styles = Object.fromEntries(matchPlan(sp, names).map((a) => [a.name, a.entry]));
  assert.equal(styles['h.0'], { style: 'replicate', input: 'scatterToSequence' });
  assert.equal(styles['h.1.ln_2'], { style: 'sequence' });
  assert.equal(styles.ln_f, { style: 'sequence', output: 'allGatherFromSequence' });
  assert.is(styles['h.1'], undefined);
});

test('formatPlan: one line per pattern, with the modules it selects', () => {
  assert.is(
    formatPlan(gptTensorParallelPlan(), names),
    [
      'tensor-parallel plan:',
      '  wte              vocab                            1 module',
      '  h.*.attn         heads                            2 modules',
      '  h.*.attn.c_attn  colwise (stacked 3)              2 modules',
      '  h.*.attn.c_proj  rowwise                          2 modules',
      '  h.*.mlp.c_fc     colwise                          2 modules',
      '  h.*.mlp.c_proj   rowwise                          2 modules',
      '  ln_f             replicate (output copyToRegion)  1 module',
    ].join('\n'),
  );
  assert.ok(formatPlan({ modules: { 'h.*.mlp.c_fc': { style: 'colwise', gatherOutput: true } } }).includes('h.*.mlp.c_fc  colwise (gatherOutput)'));
});

test('errors: unmatched pattern, double match, unknown style, key and redistribution', () => {
  throwsWith(() => matchPlan({ modules: { 'h.*.mlp.fc': 'colwise' } }, names), '"h.*.mlp.fc" matches no module (modules at that depth: h.0.attn.c_attn, h.0.attn.c_proj, h.0.mlp.c_fc');
  throwsWith(() => matchPlan({ modules: { 'h.*': 'replicate', 'h.1': 'replicate' } }, names), 'module "h.1" matches both "h.*" and "h.1"');
  throwsWith(() => planEntry('colwize' as 'colwise', 'x'), '"x" has style "colwize" (styles: colwise, rowwise, vocab, heads, sequence, replicate)');
  throwsWith(() => planEntry({ style: 'colwise', stack: 3 } as never, 'x'), '"x" has unknown key "stack"');
  throwsWith(() => planEntry({ style: 'replicate', output: 'allReduce' } as never, 'x'), '"x".output is "allReduce" (one of: copyToRegion');
  throwsWith(() => planEntry({ style: 'colwise', stacked: 0 }, 'x'), '"x".stacked must be a positive integer, got 0');
});

test.run();
