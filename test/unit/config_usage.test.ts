// Which zero_optimization keys each stage honours (src/engine/config_usage.ts): every key named
// there exists in the config schema (a renamed key would otherwise drop out silently), and the
// printed list for a stage holds exactly the keys that stage does not use.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfig } from '../../src/engine/config.ts';
import { configDefaultsTable } from '../../src/engine/config_schema.ts';
import { formatZeroKeyUsage, ZERO_KEY_USAGE } from '../../src/engine/config_usage.ts';

test('config usage: every listed key is a zero_optimization key of the schema, listed once', () => {
  const schema = new Set(configDefaultsTable().map((r) => r.path));
  for (const u of ZERO_KEY_USAGE) assert.ok(schema.has(`zero_optimization.${u.key}`), `${u.key} is in the schema`);
  assert.is(new Set(ZERO_KEY_USAGE.map((u) => u.key)).size, ZERO_KEY_USAGE.length);
});

test('config usage: the printed list for each stage names exactly the keys without effect there', () => {
  for (const stage of [0, 1, 2, 3] as const) {
    const text = formatZeroKeyUsage(loadConfig({ train_batch_size: 2, zero_optimization: { stage } }));
    const listed = [...text.matchAll(/^ {2}zero_optimization\.(\S+) +no effect at stage (\d)/gm)];
    assert.ok(listed.every((m) => Number(m[2]) === stage));
    const want = ZERO_KEY_USAGE.filter((u) => !u.stages.includes(stage)).map((u) => u.key);
    assert.equal(listed.map((m) => m[1]), want, `stage ${stage}`);
  }
  const s3 = formatZeroKeyUsage(loadConfig({ train_batch_size: 2, zero_optimization: { stage: 3 } }));
  assert.not.match(s3, /^ {2}zero_optimization\.stage3_/m, 'stage 3 uses the stage3_* keys');
  assert.match(formatZeroKeyUsage(loadConfig({ train_batch_size: 2, zero_optimization: { stage: 1 } })), /reduce_bucket_size +no effect at stage 1/);
});

test.run();
