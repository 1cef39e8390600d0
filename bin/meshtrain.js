#!/usr/bin/env node
// The `meshtrain` command: runs the TypeScript launcher (or a subcommand) under tsx (no build step).
import { register } from 'tsx/esm/api';

register();
const argv = process.argv.slice(2);
if (argv[0] === 'export') {
  const { exportMain } = await import('../src/cli/export.ts');
  process.exit(await exportMain(argv.slice(1)));
}
if (argv[0] === 'schedule') {
  const { scheduleMain } = await import('../src/cli/schedule.ts');
  process.exit(await scheduleMain(argv.slice(1)));
}
const { main } = await import('../src/cli/launcher.ts');
process.exit(await main(argv));
