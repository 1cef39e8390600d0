import type { ActionKind } from './action.ts';
import type { Simulation } from './simulate.ts';

export const KIND_COLORS: Partial<Record<ActionKind, string>> = { F: '#4e79a7', B: '#59a14f', W: '#f28e2b' };

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * A Gantt chart of a simulation as an SVG string: one row per rank, one rect (class "action") per
 * compute action, colored by kind, its micro-batch inside; a legend (class "legend") below.
 */
export function renderScheduleSvg(sim: Simulation, options: { title?: string; unit?: number } = {}): string {
  const unit = options.unit ?? 24;
  const [rowH, left, top] = [28, 64, options.title ? 28 : 8];
  const width = left + Math.max(1, sim.makespan) * unit + 16;
  const height = top + sim.timelines.length * rowH + 40;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="monospace" font-size="11">`,
  ];
  if (options.title) out.push(`<text x="8" y="18" font-size="13">${esc(options.title)}</text>`);
  sim.timelines.forEach((row, r) => {
    const y = top + r * rowH;
    out.push(`<text x="8" y="${y + 17}">rank ${r}</text>`);
    for (const { action, start, end } of row) {
      const fill = KIND_COLORS[action.kind];
      if (!fill) continue;
      const [x, w] = [left + start * unit, (end - start) * unit];
      out.push(
        `<g><title>${action.stage}${action.kind}${action.microbatch} [${start}, ${end})</title>` +
          `<rect class="action" x="${x}" y="${y + 2}" width="${w}" height="${rowH - 4}" fill="${fill}" stroke="#fff"/>` +
          `<text x="${x + w / 2}" y="${y + 18}" text-anchor="middle" fill="#fff">${action.microbatch}</text></g>`,
      );
    }
  });
  const ly = top + sim.timelines.length * rowH + 12;
  const legend: [string, string][] = [
    ['F', 'forward'],
    ['B', 'backward (input grad when W is split)'],
    ['W', 'weight grad'],
  ];
  legend.forEach(([k, label], i) => {
    const x = left + i * 150;
    out.push(`<rect class="legend" x="${x}" y="${ly}" width="12" height="12" fill="${KIND_COLORS[k as ActionKind]}"/>`);
    out.push(`<text x="${x + 16}" y="${ly + 10}">${k}: ${esc(label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
