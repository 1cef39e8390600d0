/** `meshtrain schedule`: prints a pipeline schedule's grid and simulated bubble, writes its Gantt SVG. */
import { writeFileSync } from 'node:fs';
import {
  formatGrid, gpipe, interleaved1F1B, oneFOneB, 
  renderScheduleSvg,type Schedule, simulateSchedule, theoreticalBubble, validateSchedule, zeroBubbleH1,
} from '../pipeline/index.ts';

export const SCHEDULE_USAGE = `usage: meshtrain schedule --stages P --microbatches M --schedule 1f1b|gpipe|interleaved|zb-h1
                         [--virtual V] [--out FILE.svg]

Prints the Step×Rank grid of the schedule, its simulated bubble fraction (F = B = W = 1, free
communication; an unsplit backward costs 2) next to the theory, and peak in-flight activations
per rank; with --out, writes a Gantt chart as SVG. Interleaved: P ranks × V chunks, M a multiple of P.
`;

export async function scheduleMain(argv: string[]): Promise<number> {
  const opts: Record<string, string | undefined> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      process.stdout.write(SCHEDULE_USAGE);
      return 0;
    }
    const eq = a.indexOf('=');
    const key = eq > 0 ? a.slice(0, eq) : a;
    if (!['--stages', '--microbatches', '--schedule', '--virtual', '--out'].includes(key)) {
      process.stderr.write(`meshtrain schedule: unexpected argument ${a}\n\n${SCHEDULE_USAGE}`);
      return 2;
    }
    opts[key.slice(2)] = eq > 0 ? a.slice(eq + 1) : argv[++i];
  }
  const p = Number(opts.stages ?? 4);
  const m = Number(opts.microbatches ?? 8);
  const v = Number(opts.virtual ?? 2);
  const name = opts.schedule ?? '1f1b';
  try {
    let s: Schedule;
    if (name === '1f1b') s = oneFOneB(p, m);
    else if (name === 'gpipe') s = gpipe(p, m);
    else if (name === 'interleaved') s = interleaved1F1B(p, m, v);
    else if (name === 'zb-h1') s = zeroBubbleH1(p, m);
    else {
      process.stderr.write(`meshtrain schedule: unknown schedule '${name}'\n\n${SCHEDULE_USAGE}`);
      return 2;
    }
    validateSchedule(s);
    const sim = simulateSchedule(s);
    const theory = theoreticalBubble(s.name, s.ranks, m, s.virtualStages);
    const virt = s.virtualStages > 1 ? ` × ${s.virtualStages} virtual` : '';
    process.stdout.write(`${s.name}: ${s.ranks} ranks${virt}, ${m} micro-batches\n${formatGrid(s)}\n`);
    process.stdout.write(`bubble ${sim.bubbleFraction.toFixed(4)} simulated, ${theory.toFixed(4)} theory; makespan ${sim.makespan}; peak activations per rank [${sim.peakActivations.join(', ')}]\n`);
    if (opts.out) {
      writeFileSync(opts.out, renderScheduleSvg(sim, { title: `${s.name} p=${s.ranks}${virt} m=${m}: bubble ${sim.bubbleFraction.toFixed(3)}` }));
      process.stdout.write(`wrote ${opts.out}\n`);
    }
    return 0;
  } catch (e) {
    process.stderr.write(`meshtrain schedule: ${(e as Error).message}\n`);
    return 1;
  }
}
