/**
 * What people read about the settings, derived from their declarations (src/core/settings.ts,
 * src/server/config.ts): the options part of `wsds serve --help` and the settings table in
 * README.md (rewritten by `npm run docs:settings`, checked by test/settings.test.ts).
 * Declarations write literal values in backticks: kept in Markdown, dropped on a terminal.
 */

/** What the text needs of a setting (every Setting of src/core/settings.ts has it). */
export interface DescribedSetting {
  env: string
  flag: string
  default: string | null | object
  defaultText?: string | undefined
  help: string
  more?: string | undefined
  negate?: 'switch' | 'off' | undefined
}

/** Marks the generated table in README.md; everything between them is replaced. */
export const TABLE_BEGIN = '<!-- settings-table:begin (generated from src/server/config.ts by npm run docs:settings; edit there) -->'
export const TABLE_END = '<!-- settings-table:end -->'

const plain = (markdown: string): string => markdown.replace(/`/g, '')

/** The default in Markdown: the declared text, or the literal default. */
export function defaultMarkdown(s: DescribedSetting): string {
  if (s.defaultText !== undefined) return s.defaultText
  if (typeof s.default === 'string') return s.default === '' ? 'empty' : `\`${s.default}\``
  if (s.default === null) return 'none'
  // A computed or required default must say in words what it is: there is no literal to show.
  throw new Error(`${s.env}: a computed or required default needs defaultText`)
}

/** The flag forms: `--port <value>`, `--demo, --no-demo`, `--rate-limit <value>, --no-rate-limit`. */
function flagForms(s: DescribedSetting, value: string): string[] {
  const negative = `--no-${s.flag.slice(2)}`
  if (s.negate === 'switch') return [s.flag, negative]
  return s.negate === 'off' ? [`${s.flag} ${value}`, negative] : [`${s.flag} ${value}`]
}

/** The options lines of `wsds serve --help`: flags, help, default, variable. */
export function formatHelp(list: readonly DescribedSetting[]): string {
  const width = 30
  return list
    .map((s) => {
      const flags = flagForms(s, '<value>').join(', ')
      const text = `${plain(s.help)} (default: ${plain(defaultMarkdown(s))}) [${s.env}]`
      return flags.length < width ? `  ${flags.padEnd(width)} ${text}` : `  ${flags}\n  ${''.padEnd(width)} ${text}`
    })
    .join('\n')
}

// A `|` inside a cell would end it, even within backticks (GitHub Flavored Markdown tables).
const cell = (markdown: string): string => markdown.replace(/\|/g, '\\|')

/** The README table, markers included. */
export function formatTable(list: readonly DescribedSetting[]): string {
  const rows = list.map((s) => {
    const flags = flagForms(s, '').map((f) => `\`${f.trim()}\``).join(', ')
    const meaning = s.more === undefined ? s.help : `${s.help} ${s.more}`
    return `| \`${s.env}\` | ${flags} | ${cell(defaultMarkdown(s))} | ${cell(meaning)} |`
  })
  return [TABLE_BEGIN, '| variable | flag | default | meaning |', '| --- | --- | --- | --- |', ...rows, TABLE_END].join('\n')
}

/** README text with its table replaced by `table`; throws when the markers are missing. */
export function replaceTable(readme: string, table: string): string {
  const begin = readme.indexOf(TABLE_BEGIN)
  const end = readme.indexOf(TABLE_END)
  if (begin === -1 || end === -1 || end < begin) throw new Error(`README.md has no settings table markers (${TABLE_BEGIN} ... ${TABLE_END})`)
  return readme.slice(0, begin) + table + readme.slice(end + TABLE_END.length)
}
