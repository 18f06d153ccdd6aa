/**
 * How `gantry` writes: on a terminal, colour and progress bars; piped or under CI=true, plain lines and no
 * colour; with --json, JSON only (NDJSON for streams).
 */
import { createColors } from 'picocolors'

export interface Output {
  /** A terminal a person is watching: bars, colour, prompts. */
  readonly interactive: boolean
  readonly json: boolean
  readonly color: ReturnType<typeof createColors>
  line(text?: string): void
  /** Notes and progress for people: stderr, so stdout stays parseable. */
  note(text: string): void
  jsonLine(value: unknown): void
}

const ciSet = (env: NodeJS.ProcessEnv) => Boolean(env.CI) && env.CI !== 'false' && env.CI !== '0'

export function createOutput(opts: { json?: boolean }, env: NodeJS.ProcessEnv = process.env): Output {
  const interactive = Boolean(process.stdout.isTTY) && !ciSet(env) && !opts.json
  const colorOn = interactive && !env.NO_COLOR && env.TERM !== 'dumb'
  return {
    interactive,
    json: Boolean(opts.json),
    color: createColors(colorOn),
    line: (text = '') => process.stdout.write(`${text}\n`),
    note: (text) => process.stderr.write(`${text}\n`),
    jsonLine: (value) => process.stdout.write(`${JSON.stringify(value)}\n`),
  }
}

/** Columns padded to their widest cell; the last column is not padded. */
export function table(headers: string[], rows: string[][], color?: Output['color']): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const fmt = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd()
  const head = fmt(headers)
  return [color ? color.bold(head) : head, ...rows.map(fmt)].join('\n')
}

export const clip = (text: string, max: number) =>
  text.length <= max ? text : `${text.slice(0, Math.max(0, max - 1))}…`

export const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim()

export const percent = (rate: number | null | undefined) =>
  rate === null || rate === undefined ? '–' : `${Math.round(rate * 100)}%`

export const score = (value: number | null | undefined) =>
  value === null || value === undefined ? '–' : value.toFixed(2)

export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '–'
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000))
  if (s < 60) return `${s}s ago`
  if (s < 3600) return `${Math.round(s / 60)}m ago`
  if (s < 86400) return `${Math.round(s / 3600)}h ago`
  return `${Math.round(s / 86400)}d ago`
}
