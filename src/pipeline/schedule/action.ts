/**
 * Schedules are data: a list of actions per rank, each printed like PyTorch pipelining's "2F0"
 * (stage 2, forward, micro-batch 0). Stage s lives on rank s % ranks.
 */

export const ACTION_KINDS = ['F', 'B', 'W', 'SEND_F', 'RECV_F', 'SEND_B', 'RECV_B', 'REDUCE_GRAD'] as const;
export type ActionKind = (typeof ACTION_KINDS)[number];

/**
 * One step of a rank. B is the input-gradient backward when the schedule splits the backward
 * (W then computes the weight gradients), else the whole backward. REDUCE_GRAD has micro-batch -1.
 * For communication, stage is this rank's stage and peer the other rank.
 */
export interface Action {
  stage: number;
  kind: ActionKind;
  microbatch: number;
  peer?: number;
}

export interface Schedule {
  name: string;
  /** Pipeline ranks (devices). */
  ranks: number;
  /** Model stages: ranks × virtualStages. */
  stages: number;
  virtualStages: number;
  microbatches: number;
  /** Whether the backward is split into B (input gradient) and W (weight gradient). */
  splitBackward: boolean;
  /** Whether sends and receives have been inserted (see lowerSchedule). */
  lowered: boolean;
  actions: Action[][];
}

export const isCompute = (k: ActionKind): boolean => k === 'F' || k === 'B' || k === 'W';

/** The rank that holds a stage. */
export const stageRank = (s: Schedule, stage: number): number => stage % s.ranks;

export function formatAction(a: Action): string {
  return a.kind === 'REDUCE_GRAD' ? `${a.stage}REDUCE_GRAD` : `${a.stage}${a.kind}${a.microbatch}`;
}

const ACTION_RE = /^(\d+)(SEND_F|RECV_F|SEND_B|RECV_B|REDUCE_GRAD|F|B|W)(\d*)$/;

/** Parses "2F0", "1SEND_B3", "0REDUCE_GRAD" (the inverse of formatAction; peers are not printed). */
export function parseAction(text: string): Action {
  const m = ACTION_RE.exec(text.trim());
  if (!m) throw new Error(`parseAction: '${text}' is not an action like 2F0, 1RECV_B3 or 0REDUCE_GRAD`);
  const kind = m[2] as ActionKind;
  if ((kind === 'REDUCE_GRAD') !== (m[3] === '')) {
    throw new Error(`parseAction: '${text}': ${kind === 'REDUCE_GRAD' ? 'REDUCE_GRAD takes no micro-batch' : 'missing micro-batch'}`);
  }
  return { stage: Number(m[1]), kind, microbatch: m[3] === '' ? -1 : Number(m[3]) };
}

/** Shorthand for generators. */
export const act = (stage: number, kind: ActionKind, microbatch: number): Action => ({ stage, kind, microbatch });

export function checkCounts(what: string, ranks: number, microbatches: number, virtualStages = 1): void {
  for (const [name, v] of [['stages', ranks], ['microbatches', microbatches], ['virtual stages', virtualStages]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${what}: ${name} must be a positive integer, got ${v}`);
  }
}
