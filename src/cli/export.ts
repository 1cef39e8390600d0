/** `meshtrain export DIR --out model.safetensors [--tag T]`: a checkpoint as one safetensors file. */
import { exportSafetensors } from '../engine/checkpoint/safetensors.ts';

export const EXPORT_USAGE = `usage: meshtrain export DIR --out FILE.safetensors [--tag TAG]

Consolidates the sharded checkpoint DIR/TAG (default: the tag in DIR/latest), saved under any
layout, into one safetensors file of the model's tensors (PyTorch's safetensors reads it).
`;

/** Runs the subcommand; returns the exit code (usage errors: 2). */
export async function exportMain(argv: string[]): Promise<number> {
  let dir: string | undefined;
  let out: string | undefined;
  let tag: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const key = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const value = (): string | undefined => (a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : argv[++i]);
    if (key === '-h' || key === '--help') {
      process.stdout.write(EXPORT_USAGE);
      return 0;
    } else if (key === '--out' || key === '-o') out = value();
    else if (key === '--tag') tag = value();
    else if (a.startsWith('-') || dir !== undefined) {
      process.stderr.write(`meshtrain export: unexpected argument ${a}\n\n${EXPORT_USAGE}`);
      return 2;
    } else dir = a;
  }
  if (!dir || !out) {
    process.stderr.write(`meshtrain export: ${!dir ? 'no checkpoint DIR' : 'no --out FILE'} given\n\n${EXPORT_USAGE}`);
    return 2;
  }
  try {
    const { tag: t, count } = exportSafetensors(dir, { tag }, out);
    process.stdout.write(`wrote ${count} tensors of ${dir}/${t} to ${out}\n`);
    return 0;
  } catch (e) {
    process.stderr.write(`meshtrain export: ${(e as Error).message}\n`);
    return 1;
  }
}
