/** A task's results: printed, or written as files (`--out DIR`: each module's code and its tests). */
import { mkdirSync, writeFileSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import { call } from './client.ts'
import type { Context } from './context.ts'
import { CliError } from './errors.ts'
import { percent, score, table } from './output.ts'

export async function fetchResults(ctx: Context, taskId: string) {
  return call(ctx.connection, ctx.api.tasks({ id: taskId }).results.get(), { notFound: `no task ${taskId}` })
}

type Results = Awaited<ReturnType<typeof fetchResults>>

/** The file names a module's code and tests are written to: `name.ts` and `name.test.ts`. */
export function moduleFiles(moduleName: string): { code: string; tests: string } {
  const base = basename(moduleName)
  // Module names come from the model (validated by the server); never let one leave the folder.
  if (base !== moduleName || !/^[\w.-]+$/.test(base))
    throw new CliError(`refusing to write module ${JSON.stringify(moduleName)}`)
  const stem = base.replace(/\.ts$/, '')
  return { code: `${stem}.ts`, tests: `${stem}.test.ts` }
}

export async function writeResults(ctx: Context, taskId: string, outDir: string): Promise<string[]> {
  const results = await fetchResults(ctx, taskId)
  const dir = resolve(outDir)
  mkdirSync(dir, { recursive: true })
  const written: string[] = []
  for (const m of results.modules) {
    const files = moduleFiles(m.name)
    if (m.code !== null) {
      writeFileSync(join(dir, files.code), m.code)
      written.push(files.code)
    }
    if (m.tests !== null) {
      writeFileSync(join(dir, files.tests), m.tests)
      written.push(files.tests)
    }
  }
  ctx.out.note(
    `wrote ${written.length} files to ${outDir}: ${written.join(', ') || 'none (no module has code yet)'}`,
  )
  return written
}

export function printResults(ctx: Context, results: Results): void {
  const { out } = ctx
  if (out.json) {
    out.jsonLine(results)
    return
  }
  out.line(`${results.task_id}  ${results.status}`)
  if (!results.modules.length) {
    out.line('no modules yet')
    return
  }
  out.line(
    table(
      ['MODULE', 'STATUS', 'QUALITY', 'TESTS', 'TYPES', 'ITERATIONS'],
      results.modules.map((m) => [
        m.name,
        m.status,
        score(m.quality_score),
        m.test_report
          ? `${m.test_report.passed}/${m.test_report.passed + m.test_report.failed} (${percent(m.test_report.pass_rate)})`
          : '–',
        m.test_report?.type_check === null || m.test_report === null
          ? '–'
          : m.test_report.type_check
            ? 'ok'
            : 'errors',
        String(m.iterations),
      ]),
      out.color,
    ),
  )
}
