/**
 * Pipeline schedules as data: every generator passes the validator over a grid of sizes (compute
 * lists and lowered ones); broken schedules are rejected with the action named and the grid shown;
 * simulated bubbles against the theory. Cost model: F = B = W = 1 and free communication, where an
 * unsplit backward costs B + W = 2F; then GPipe and 1F1B idle (p−1)·3 per rank, a bubble of
 * (p−1)/(m+p−1) exactly.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  checkSchedule, formatAction, formatGrid, gpipe, interleaved1F1B, lowerSchedule, oneFOneB, parseAction, renderScheduleSvg, type Schedule,
  ScheduleError, simulateSchedule, theoreticalBubble, validateSchedule, zeroBubbleH1,
} from '../../src/pipeline/index.ts';

const near = (a: number, b: number, what: string): void => assert.ok(Math.abs(a - b) <= 1e-12, `${what}: ${a} vs ${b}`);

function* grid(): Generator<[string, Schedule]> {
  for (let p = 1; p <= 8; p++) {
    for (let m = 1; m <= 16; m++) {
      yield [`gpipe p=${p} m=${m}`, gpipe(p, m)];
      yield [`1f1b p=${p} m=${m}`, oneFOneB(p, m)];
      yield [`zb-h1 p=${p} m=${m}`, zeroBubbleH1(p, m)];
      if (m % p === 0) for (let v = 1; v <= 3; v++) yield [`interleaved p=${p} m=${m} v=${v}`, interleaved1F1B(p, m, v)];
    }
  }
}

test('actions print as "2F0" and parse back', () => {
  assert.is(formatAction({ stage: 2, kind: 'F', microbatch: 0 }), '2F0');
  for (const text of ['2F0', '0B13', '3W2', '1SEND_F4', '2RECV_F4', '0SEND_B1', '5RECV_B0', '0REDUCE_GRAD']) {
    assert.is(formatAction(parseAction(text)), text);
  }
  assert.equal(parseAction('1RECV_B3'), { stage: 1, kind: 'RECV_B', microbatch: 3 });
  assert.throws(() => parseAction('2X0'), /not an action/);
  assert.throws(() => parseAction('2F'), /missing micro-batch/);
  assert.throws(() => parseAction('0REDUCE_GRAD1'), /takes no micro-batch/);
});

test('every generator passes the validator, compute-only and lowered (stages 1..8, micro-batches 1..16, v 1..3)', () => {
  let n = 0;
  for (const [name, s] of grid()) {
    const err = checkSchedule(s) ?? checkSchedule(lowerSchedule(s));
    assert.is(err, null, `${name}: ${err?.message}`);
    n++;
  }
  assert.ok(n > 400);
});

test('interleaved: stage of chunk k on rank r is r + k·ranks; micro-batches a multiple of ranks', () => {
  const s = interleaved1F1B(2, 4, 2);
  assert.is(s.stages, 4);
  assert.equal([...new Set(s.actions[1].map((a) => a.stage))].sort(), [1, 3]);
  assert.throws(() => interleaved1F1B(4, 6, 2), /micro-batches \(6\) must be a multiple of the pipeline ranks \(4\)/);
  assert.throws(() => oneFOneB(0, 4), /stages must be a positive integer/);
});

test('lowering: sends and receives between ranks, one REDUCE_GRAD per stage at the end', () => {
  const s = lowerSchedule(oneFOneB(2, 2));
  assert.equal(s.actions.map((row) => row.map(formatAction)), [
    ['0F0', '0SEND_F0', '0F1', '0SEND_F1', '0RECV_B0', '0B0', '0RECV_B1', '0B1', '0REDUCE_GRAD'],
    ['1RECV_F0', '1F0', '1B0', '1SEND_B0', '1RECV_F1', '1F1', '1B1', '1SEND_B1', '1REDUCE_GRAD'],
  ]);
  assert.equal(s.actions[0][1].peer, 1);
  assert.equal(s.actions[1][3].peer, 0);
  // one rank holding every chunk: no communication at all
  const solo = lowerSchedule(interleaved1F1B(1, 2, 2));
  assert.ok(solo.actions[0].every((a) => !a.kind.includes('SEND') && !a.kind.includes('RECV')));
});

test('the Step×Rank grid', () => {
  assert.is(
    formatGrid(oneFOneB(2, 3)),
    [
      'step  rank 0  rank 1',
      '   0  0F0     1F0',
      '   1  0F1     1B0',
      '   2  0B0     1F1',
      '   3  0F2     1B1',
      '   4  0B1     1F2',
      '   5  0B2     1B2',
    ].join('\n'),
  );
});

function rejects(s: Schedule, pattern: RegExp): ScheduleError {
  const err = checkSchedule(s);
  assert.instance(err, ScheduleError);
  assert.match(err!.message, pattern);
  assert.match(err!.message, /\nstep +rank 0 +rank 1\n/); // the grid is printed
  assert.match(err!.message, /\[[^\]]+\]/); // with the offending cell marked
  return err!;
}

test('broken schedules are rejected with the action named and the grid printed', () => {
  // a B before its F
  const early = oneFOneB(2, 2);
  early.actions[0] = [{ stage: 0, kind: 'B', microbatch: 0 }, ...early.actions[0].filter((a) => !(a.kind === 'B' && a.microbatch === 0))];
  const e1 = rejects(early, /rank 0 step 0: 0B0 comes before 0F0/);
  assert.is(e1.rank, 0);
  assert.is(e1.step, 0);
  assert.match(e1.message, /\[0B0\]/);
  // a missing receive
  const noRecv = lowerSchedule(oneFOneB(2, 2));
  noRecv.actions[1] = noRecv.actions[1].filter((a) => formatAction(a) !== '1RECV_F1');
  rejects(noRecv, /1F1 is not preceded by 1RECV_F1/);
  // a send whose receive is gone from the other side
  const noPair = lowerSchedule(oneFOneB(2, 2));
  noPair.actions[0] = noPair.actions[0].filter((a) => formatAction(a) !== '0RECV_B1');
  rejects(noPair, /0B1 is not preceded by 0RECV_B1/);
  // a send/receive deadlock: rank 0 waits for a gradient before sending the activation it needs
  const dead = lowerSchedule(oneFOneB(2, 2));
  const recv = dead.actions[0].find((a) => formatAction(a) === '0RECV_B0')!;
  dead.actions[0] = [recv, ...dead.actions[0].filter((a) => a !== recv)];
  rejects(dead, /deadlock: rank 0 at step 0 \(0RECV_B0\) waits for 1SEND_B0; rank 1 at step 0 \(1RECV_F0\) waits for 0SEND_F0/);
  // a compute-only ordering deadlock (rank 1 runs micro-batch 1 first); an action on the wrong rank; a missing one
  const cross = oneFOneB(2, 2);
  cross.actions[0] = [cross.actions[0][0], cross.actions[0][2], cross.actions[0][1], cross.actions[0][3]]; // 0F0 0B0 0F1 0B1
  cross.actions[1] = [cross.actions[1][2], cross.actions[1][3], cross.actions[1][0], cross.actions[1][1]]; // 1F1 1B1 1F0 1B0
  rejects(cross, /deadlock/);
  const wrongRank = oneFOneB(2, 2);
  wrongRank.actions[0][0] = { stage: 1, kind: 'F', microbatch: 0 };
  rejects(wrongRank, /stage 1 belongs to rank 1/);
  // ZB-H1: a weight gradient before its input gradient
  const wFirst = zeroBubbleH1(2, 2);
  const row = wFirst.actions[1];
  const w = row.findIndex((a) => a.kind === 'W');
  const b = row.findIndex((a) => a.kind === 'B' && a.microbatch === row[w].microbatch);
  [row[w], row[b]] = [row[b], row[w]];
  rejects(wFirst, /1W0 comes before 1B0/);
  const missing = gpipe(2, 2);
  missing.actions[1].pop();
  rejects(missing, /stage 1 has no 1B1/);
  assert.throws(() => validateSchedule(missing), (e: unknown) => e instanceof ScheduleError);
});

test('simulated bubbles: GPipe and 1F1B equal (p−1)/(m+p−1); peaks m and ≤ p', () => {
  for (let p = 1; p <= 8; p++) {
    for (let m = 1; m <= 16; m++) {
      const g = simulateSchedule(gpipe(p, m));
      const o = simulateSchedule(oneFOneB(p, m));
      near(g.bubbleFraction, theoreticalBubble('gpipe', p, m), `gpipe p=${p} m=${m}`);
      near(o.bubbleFraction, theoreticalBubble('1f1b', p, m), `1f1b p=${p} m=${m}`);
      assert.is(g.makespan, 3 * (m + p - 1));
      assert.is(g.peakActivations[0], m);
      assert.is(o.peakActivations[0], Math.min(p, m));
      assert.ok(o.peakActivations.every((a, r) => a === Math.min(p - r, m)), `1f1b peaks ${o.peakActivations}`);
    }
  }
});

test('simulated bubbles: interleaved equals (p−1)/(v·m+p−1) (1F1B\'s divided by about v)', () => {
  for (let p = 1; p <= 8; p++) {
    for (let m = p; m <= 16; m += p) {
      for (let v = 1; v <= 3; v++) {
        const sim = simulateSchedule(interleaved1F1B(p, m, v));
        near(sim.bubbleFraction, theoreticalBubble('interleaved', p, m, v), `interleaved p=${p} m=${m} v=${v}`);
        const one = theoreticalBubble('1f1b', p, m);
        assert.ok(sim.bubbleFraction <= one + 1e-12 && sim.bubbleFraction >= one / v - 1e-12, `interleaved p=${p} m=${m} v=${v}`);
      }
    }
  }
});

test('simulated bubbles: ZB-H1 idles a third of 1F1B (m ≥ p), never more memory than 1F1B', () => {
  for (let p = 1; p <= 8; p++) {
    for (let m = 1; m <= 16; m++) {
      const z = simulateSchedule(zeroBubbleH1(p, m));
      const o = simulateSchedule(oneFOneB(p, m));
      assert.ok(Math.max(...z.peakActivations) <= Math.max(...o.peakActivations), `zb-h1 p=${p} m=${m} peaks ${z.peakActivations}`);
      assert.ok(z.bubbleFraction <= o.bubbleFraction + 1e-12);
      if (m >= p) {
        near(z.bubbleFraction, theoreticalBubble('zb-h1', p, m), `zb-h1 p=${p} m=${m}`);
        near(z.bubbleFraction * z.makespan, (o.bubbleFraction * o.makespan) / 3, `zb-h1 idle vs 1f1b p=${p} m=${m}`);
      }
    }
  }
});

test('simulator: communication latency, timelines and a deadlock', () => {
  const sim = simulateSchedule(oneFOneB(2, 1), { F: 1, B: 2, W: 0, comm: 0.5 });
  // 0F0 [0,1) → 1F0 [1.5,2.5) → 1B0 [2.5,4.5) → 0B0 [5,7)
  assert.is(sim.makespan, 7);
  const b0 = sim.timelines[0].find((t) => formatAction(t.action) === '0B0')!;
  assert.equal([b0.start, b0.end], [5, 7]);
  const dead = lowerSchedule(oneFOneB(2, 1));
  dead.actions[0].reverse();
  assert.throws(() => simulateSchedule(dead), /deadlocks/);
});

/** A tiny well-formedness check: balanced tags, quoted attributes, nothing outside the root. */
function checkXml(xml: string): void {
  const body = xml.trim();
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  for (let m = tag.exec(body); m; m = tag.exec(body)) {
    const between = body.slice(last, m.index);
    assert.not.match(between, /[<>]/, `stray markup before ${m[0]}`);
    if (stack.length === 0) assert.is(between.trim(), '', 'text outside the root');
    if (m[1]) assert.is(stack.pop(), m[2], `</${m[2]}> closes the wrong tag`);
    else if (!m[4]) stack.push(m[2]);
    last = tag.lastIndex;
  }
  assert.is(last, body.length, 'trailing text');
  assert.equal(stack, [], 'unclosed tags');
}

test('SVG Gantt: well-formed, one rect per compute action, a legend', () => {
  for (const s of [oneFOneB(4, 8), zeroBubbleH1(3, 5), interleaved1F1B(2, 4, 2)]) {
    const sim = simulateSchedule(s);
    const svg = renderScheduleSvg(sim, { title: `${s.name} <test> & co` });
    checkXml(svg);
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    const compute = s.actions.flat().length;
    assert.is((svg.match(/<rect class="action"/g) ?? []).length, compute);
    assert.is((svg.match(/<rect class="legend"/g) ?? []).length, 3);
    assert.is((svg.match(/>rank \d+</g) ?? []).length, s.ranks);
    assert.match(svg, /&lt;test&gt; &amp; co/);
  }
});

test('CLI: meshtrain schedule prints the grid and bubble, writes the SVG; usage errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshtrain-schedule-'));
  try {
    const out = join(dir, 's.svg');
    const r = spawnSync(process.execPath, ['bin/meshtrain.js', 'schedule', '--stages', '4', '--microbatches', '8', '--schedule', 'zb-h1', '--out', out], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, /zb-h1: 4 ranks, 8 micro-batches\nstep +rank 0 +rank 1 +rank 2 +rank 3\n +0 +0F0 +1F0 +2F0 +3F0\n/);
    assert.match(r.stdout, /bubble 0\.1111 simulated, 0\.1111 theory/);
    checkXml(readFileSync(out, 'utf8'));
    const bad = spawnSync(process.execPath, ['bin/meshtrain.js', 'schedule', '--stages', '4', '--microbatches', '6', '--schedule', 'interleaved'], { encoding: 'utf8' });
    assert.is(bad.status, 1);
    assert.match(bad.stderr, /must be a multiple of the pipeline ranks/);
    const usage = spawnSync(process.execPath, ['bin/meshtrain.js', 'schedule', '--bogus'], { encoding: 'utf8' });
    assert.is(usage.status, 2);
    assert.match(usage.stderr, /usage: meshtrain schedule/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
