// Reading what fixtures print as "[rank R] <WHAT> <key> <json>" lines, and the checks shared by the
// checkpoint fixtures: round trips (engine_steps.ts straightVsResumed) and a reload at another dp size.
import * as assert from 'uvu/assert';

/** The JSON records of every "<what> <key> <json>" line, per key, in rank order of appearance. */
export function rankRecords<T>(stdout: string, what: string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const [, key, json] of stdout.matchAll(new RegExp(`^\\[rank \\d\\] ${what} (\\S+) (.*)$`, 'gm'))) {
    out.set(key, [...(out.get(key) ?? []), JSON.parse(json) as T]);
  }
  return out;
}

/** One rank's checkpoint round trip: the straight run and each resumed one (by what it loaded into). */
export interface Resumed {
  straight: { losses: number[]; hash: string };
  loaded: Record<string, { losses: number[]; hash: string }>;
}

/** Asserts that, for each key on both of 2 ranks, every resumed run equals the straight one bit for bit (losses and weights). */
export function assertResumedEqualsStraight(stdout: string, keys: string[], intos: number, context: string): void {
  const res = rankRecords<Resumed>(stdout, 'CKPT');
  for (const key of keys) {
    const both = res.get(key);
    assert.ok(both?.length === 2, context);
    for (const [rank, c] of both.entries()) {
      assert.is(Object.keys(c.loaded).length, intos, `${key} rank ${rank}: resumed runs`);
      for (const [into, l] of Object.entries(c.loaded)) {
        assert.equal(l.losses, c.straight.losses, `${key} rank ${rank} loaded into ${into}: losses`);
        assert.is(l.hash, c.straight.hash, `${key} rank ${rank} loaded into ${into}: weights`);
      }
    }
  }
}

/**
 * A checkpoint saved on 4 ranks ("LOSS4 <loss>" after saving) and loaded on 2 ("LOSS4 <loss> <globalSteps>"
 * after loading): the loaded ranks took step 4 and match the saved run's loss within 1e-6 relative.
 */
export function assertReloadedLoss(saved: string, loaded: string, what: string): void {
  const l4 = [...saved.matchAll(/^\[rank \d\] LOSS4 (\S+)$/gm)].map((x) => Number(x[1]));
  const l2 = [...loaded.matchAll(/^\[rank \d\] LOSS4 (\S+) (\d+)$/gm)].map((x) => [Number(x[1]), Number(x[2])]);
  assert.is(l4.length, 4, saved);
  assert.is(l2.length, 2, loaded);
  for (const [loss, steps] of l2) {
    assert.is(steps, 4, 'globalSteps after the loaded step');
    const rel = Math.abs(loss - l4[0]) / Math.abs(l4[0]);
    assert.ok(rel <= 1e-6, `${what}: loaded loss ${loss} vs saved ${l4[0]} (relative ${rel})`);
  }
}
