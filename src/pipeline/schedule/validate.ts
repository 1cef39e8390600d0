import { type Action, formatAction, type Schedule, stageRank } from './action.ts';
import { formatGrid } from './format.ts';
import { runSchedule } from './run.ts';

/** The first violation found: where, and a message that ends with the grid. */
export class ScheduleError extends Error {
  constructor(
    readonly rank: number,
    readonly step: number,
    what: string,
    schedule: Schedule,
  ) {
    super(`${schedule.name}: ${what}\n${formatGrid(schedule, { rank, step })}`);
    this.name = 'ScheduleError';
  }
}

/**
 * Checks a schedule (compute-only or lowered) and throws a ScheduleError at the first violation:
 * actions on the wrong rank or out of range; an F before its B, a B before its W; (lowered) an F or
 * B without its receive first, a send without its compute, unmatched sends and receives, a
 * REDUCE_GRAD before the stage's last backward; missing or repeated actions; and a deadlock when
 * the lists are run (buffered sends, blocking receives).
 */
export function validateSchedule(s: Schedule): void {
  const fail = (rank: number, step: number, what: string): never => {
    throw new ScheduleError(rank, step, what, s);
  };
  const last = s.stages - 1;
  const where = new Map<string, { rank: number; step: number }>();
  s.actions.forEach((row, r) => {
    const seen = new Set<string>();
    const need = (step: number, a: Action, kind: string, stage: number, why: string): void => {
      if (!seen.has(`${stage}${kind}${a.microbatch}`)) fail(r, step, `rank ${r} step ${step}: ${formatAction(a)} ${why} ${stage}${kind}${a.microbatch}`);
    };
    row.forEach((a, i) => {
      const name = formatAction(a);
      const at = `rank ${r} step ${i}: ${name}`;
      if (!Number.isInteger(a.stage) || a.stage < 0 || a.stage > last) fail(r, i, `${at}: stage out of range 0..${last}`);
      if (stageRank(s, a.stage) !== r) fail(r, i, `${at}: stage ${a.stage} belongs to rank ${stageRank(s, a.stage)}`);
      if (a.kind === 'REDUCE_GRAD') {
        for (let mb = 0; mb < s.microbatches; mb++) need(i, { ...a, microbatch: mb }, s.splitBackward ? 'W' : 'B', a.stage, 'comes before');
      } else if (!Number.isInteger(a.microbatch) || a.microbatch < 0 || a.microbatch >= s.microbatches) {
        fail(r, i, `${at}: micro-batch out of range 0..${s.microbatches - 1}`);
      }
      if (a.kind === 'W' && !s.splitBackward) fail(r, i, `${at}: W in a schedule whose backward is not split`);
      if (!s.lowered && a.kind !== 'F' && a.kind !== 'B' && a.kind !== 'W') fail(r, i, `${at}: communication in a schedule not marked lowered`);
      const crossPrev = a.stage > 0 && stageRank(s, a.stage - 1) !== r;
      const crossNext = a.stage < last && stageRank(s, a.stage + 1) !== r;
      if (a.kind === 'F' && s.lowered && crossPrev) need(i, a, 'RECV_F', a.stage, 'is not preceded by');
      if (a.kind === 'B') {
        need(i, a, 'F', a.stage, 'comes before');
        if (s.lowered && crossNext) need(i, a, 'RECV_B', a.stage, 'is not preceded by');
      }
      if (a.kind === 'W') need(i, a, 'B', a.stage, 'comes before');
      if (a.kind === 'SEND_F') {
        need(i, a, 'F', a.stage, 'comes before');
        if (!crossNext) fail(r, i, `${at}: no next stage on another rank to send to`);
      }
      if (a.kind === 'SEND_B') {
        need(i, a, 'B', a.stage, 'comes before');
        if (!crossPrev) fail(r, i, `${at}: no previous stage on another rank to send to`);
      }
      if (a.kind === 'RECV_F' && !crossPrev) fail(r, i, `${at}: no previous stage on another rank to receive from`);
      if (a.kind === 'RECV_B' && !crossNext) fail(r, i, `${at}: no next stage on another rank to receive from`);
      const peerStage = a.kind === 'SEND_F' || a.kind === 'RECV_B' ? a.stage + 1 : a.stage - 1;
      if (a.peer !== undefined && a.kind !== 'F' && a.kind !== 'B' && a.kind !== 'W' && a.peer !== stageRank(s, peerStage)) {
        fail(r, i, `${at}: peer ${a.peer} but stage ${peerStage} is on rank ${stageRank(s, peerStage)}`);
      }
      if (seen.has(name)) fail(r, i, `${at}: repeated`);
      seen.add(name);
      where.set(name, { rank: r, step: i });
    });
  });
  // Every stage runs every micro-batch once; every send has its receive and back.
  const kinds = s.splitBackward ? ['F', 'B', 'W'] : ['F', 'B'];
  for (let stage = 0; stage <= last; stage++) {
    const r = stageRank(s, stage);
    for (let mb = 0; mb < s.microbatches; mb++) {
      for (const k of kinds) if (!where.has(`${stage}${k}${mb}`)) fail(r, s.actions[r].length, `stage ${stage} has no ${stage}${k}${mb}`);
    }
  }
  if (s.lowered) {
    const pairs: [string, string, number][] = [['SEND_F', 'RECV_F', 1], ['RECV_F', 'SEND_F', -1], ['SEND_B', 'RECV_B', -1], ['RECV_B', 'SEND_B', 1]];
    for (const [name, at] of where) {
      for (const [kind, other, ds] of pairs) {
        const m = new RegExp(`^(\\d+)${kind}(\\d+)$`).exec(name);
        if (m && !where.has(`${Number(m[1]) + ds}${other}${m[2]}`)) {
          fail(at.rank, at.step, `rank ${at.rank} step ${at.step}: ${name} has no matching ${Number(m[1]) + ds}${other}${m[2]}`);
        }
      }
    }
  }
  const { blocked } = runSchedule(s, { F: 1, B: 1, W: 1, comm: 0 });
  if (blocked.length > 0) {
    const b = blocked[0];
    const waits = blocked.map((x) => `rank ${x.rank} at step ${x.step} (${formatAction(x.action)}) waits for ${x.waitsFor}`).join('; ');
    fail(b.rank, b.step, `deadlock: ${waits}`);
  }
}

/** The validator as a predicate: null when valid, else the error. */
export function checkSchedule(s: Schedule): ScheduleError | null {
  try {
    validateSchedule(s);
    return null;
  } catch (e) {
    if (e instanceof ScheduleError) return e;
    throw e;
  }
}
