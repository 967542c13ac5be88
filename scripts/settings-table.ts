/**
 * Rewrites the settings table in README.md from the declarations (src/server/config.ts), so
 * the table cannot drift from what `wsds serve` reads. `npm run docs:settings` writes it;
 * with `--check` it only reports whether README.md is current (exit 1 when not).
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { SETTINGS } from '../src/server/config.ts'
import { formatTable, replaceTable } from '../src/server/settings-text.ts'

const path = new URL('../README.md', import.meta.url)
const readme = readFileSync(path, 'utf8')
const updated = replaceTable(readme, formatTable(SETTINGS))
if (process.argv.includes('--check')) {
  if (updated !== readme) {
    process.stderr.write('README.md: the settings table differs from src/server/config.ts; run npm run docs:settings\n')
    process.exit(1)
  }
  process.stdout.write('README.md: settings table is current\n')
} else if (updated === readme) {
  process.stdout.write('README.md: settings table already current\n')
} else {
  writeFileSync(path, updated)
  process.stdout.write(`README.md: settings table rewritten (${SETTINGS.length} settings)\n`)
}
