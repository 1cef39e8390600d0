// Reading what fixtures print as "[rank R] <WHAT> <key> <json>" lines, and the check shared by the
// checkpoint round-trip fixtures (engine_steps.ts straightVsResumed).
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
