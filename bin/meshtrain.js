#!/usr/bin/env node
// The `meshtrain` command: runs the TypeScript launcher under tsx (no build step).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/launcher.ts');
process.exit(await main(process.argv.slice(2)));
