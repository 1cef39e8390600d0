/** Writes docs/config.md from the config schema (`npm run docs:config`); a unit test checks it is current. */
import { writeFileSync } from 'node:fs';
import { configDefaultsMarkdown } from '../src/engine/config_schema.ts';

const out = new URL('../docs/config.md', import.meta.url);
writeFileSync(out, configDefaultsMarkdown());
console.log(`wrote ${out.pathname}`);
