// Shared by the unit tests that check an async API's error messages.
import * as assert from 'uvu/assert';

/** Awaits `p`, asserting it rejects with a message matching `re`. */
export async function rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable(`expected a rejection matching ${re}`);
}
