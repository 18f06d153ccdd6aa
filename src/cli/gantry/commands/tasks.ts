/** `gantry task "…"`, `gantry tasks`, and `gantry task show|results|logs|cancel|intervene|delete|follow ID`. */
import { type Command, InvalidArgumentError } from 'commander'
import { call } from '../client.ts'
import { type Context, contextOf, type Run } from '../context.ts'
import { usageError } from '../errors.ts'
import { followTask } from '../follow.ts'
import { ago, clip, oneLine, percent, table } from '../output.ts'
import { fetchResults, printResults, writeResults } from '../results.ts'
import { followStream } from '../stream.ts'

const STATUSES = ['queued', 'running', 'completed', 'failed', 'cancelled'] as const
const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const

export const positiveInt = (what: string, max: number) => (raw: string) => {
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw new InvalidArgumentError(`${what} is a whole number from 1 to ${max}.`)
  return n
}
const collect = (value: string, previous: string[]) => [...previous, value]

const notFound = (id: string) => ({ notFound: `no task ${id}` })

export function registerTaskCommands(program: Command, run: Run) {
  const task = program
    .command('task')
    .description('start a coding task and print its id; or act on one (show, results, logs, cancel, …)')
    .argument('[prompt]', 'what to build, e.g. "Build an email validator"')
    .option('--answer <text>', 'an answer to a clarifying question (repeatable)', collect, [])
    .option(
      '--max-iterations <n>',
      'attempts per module (1–20, default 3)',
      positiveInt('--max-iterations', 20),
    )
    .option('--model <model>', 'the Ollama model (default: the server’s OLLAMA_MODEL)')
    .option('--follow', 'watch it live until it finishes (exit 0 completed, 1 failed or cancelled)')
    .option('--out <dir>', 'when it is done, write each module’s code and tests into DIR (implies --follow)')
    .enablePositionalOptions()
    .addHelpText(
      'after',
      `
Examples:
  gantry task "Build an email validator" --answer "Use a regex" --follow --out ./email
  gantry task show task-Xq3…      gantry task logs -f task-Xq3…      gantry task cancel task-Xq3…`,
    )
    .action(
      run(async (cmd) => {
        const prompt = cmd.args[0]
        if (!prompt?.trim())
          throw usageError(
            'say what to build: gantry task "Build an email validator" (see gantry task --help)',
          )
        const opts = cmd.opts<{
          answer: string[]
          maxIterations?: number
          model?: string
          follow?: boolean
          out?: string
        }>()
        const ctx = contextOf(cmd)
        const created = await call(
          ctx.connection,
          ctx.api.tasks.post({
            prompt,
            ...(opts.answer.length ? { answers: opts.answer } : {}),
            ...(opts.maxIterations ? { max_iterations: opts.maxIterations } : {}),
            ...(opts.model ? { model: opts.model } : {}),
          }),
        )
        if (!opts.follow && !opts.out) {
          if (ctx.out.json) ctx.out.jsonLine(created)
          else ctx.out.line(created.task_id)
          if (ctx.out.interactive)
            ctx.out.note(ctx.out.color.dim(`follow it: gantry task follow ${created.task_id}`))
          return
        }
        if (!ctx.out.json && !ctx.out.interactive) ctx.out.line(`${created.task_id} queued`)
        return (await followTask(ctx, created.task_id, { outDir: opts.out })).exitCode
      }),
    )

  task
    .command('follow <id>')
    .description('watch a task live until it finishes (bars on a terminal, lines when piped)')
    .option('--out <dir>', 'when it is done, write each module’s code and tests into DIR')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const id = cmd.args[0]!
        await call(ctx.connection, ctx.api.tasks({ id }).get(), notFound(id))
        return (await followTask(ctx, id, { outDir: cmd.opts().out })).exitCode
      }),
    )

  task
    .command('show <id>')
    .description('a task’s status and progress')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const id = cmd.args[0]!
        const t = await call(ctx.connection, ctx.api.tasks({ id }).get(), notFound(id))
        if (ctx.out.json) return ctx.out.jsonLine(t)
        const c = ctx.out.color
        const rows: [string, string][] = [
          ['task', t.task_id],
          ['status', t.status],
          ['prompt', t.prompt],
          ['model', t.model],
          ['progress', `${t.modules_complete}/${t.total_modules} modules (${percent(t.progress)})`],
          [
            'current',
            t.current_module ? `${t.current_module}.ts, iteration ${t.iteration}/${t.max_iterations}` : '–',
          ],
          ['created', `${t.created_at} (${ago(t.created_at)})`],
          ['finished', t.finished_at ?? '–'],
        ]
        if (t.error) rows.push(['error', t.error])
        for (const [k, v] of rows) ctx.out.line(`${c.dim(k.padEnd(9))} ${v}`)
      }),
    )

  task
    .command('results <id>')
    .description('each module with its quality score and tests (--json: code and tests too)')
    .option('--out <dir>', 'write each module’s code and tests into DIR')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const id = cmd.args[0]!
        if (cmd.opts().out) await writeResults(ctx, id, cmd.opts().out)
        printResults(ctx, await fetchResults(ctx, id))
      }),
    )

  task
    .command('logs <id>')
    .description('a task’s log; -f follows it live until the task ends')
    .option('-f, --follow', 'keep following new lines')
    .option('--level <level>', `minimum level: ${LOG_LEVELS.join(', ')}`, 'debug')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const id = cmd.args[0]!
        const { follow, level } = cmd.opts<{ follow?: boolean; level: string }>()
        if (!(LOG_LEVELS as readonly string[]).includes(level))
          throw usageError(`--level is one of ${LOG_LEVELS.join(', ')}`)
        await call(ctx.connection, ctx.api.tasks({ id }).get(), notFound(id))
        const rank = (l: string) => LOG_LEVELS.indexOf(l.toLowerCase() as never)
        const print = (seq: number, l: string, message: string, timestamp?: string) => {
          if (rank(l) < rank(level)) return
          if (ctx.out.json) return ctx.out.jsonLine({ seq, level: l, message, timestamp })
          const paint =
            l === 'ERROR' ? ctx.out.color.red : l === 'WARN' ? ctx.out.color.yellow : (s: string) => s
          ctx.out.line(paint(`[${l.toUpperCase()}] ${message}`))
        }
        if (follow) {
          await followStream(ctx.connection, id, {
            onEvent: (e) => {
              if (e.type === 'LOG') print(e.seq, String(e.data.level), String(e.data.message), e.timestamp)
            },
            onRetry: ({ delayMs, reason }) =>
              ctx.out.note(`connection lost (${reason}); reconnecting in ${(delayMs / 1000).toFixed(1)} s`),
          })
          return
        }
        let after = 0
        for (;;) {
          const page = await call(
            ctx.connection,
            ctx.api.tasks({ id }).logs.get({ query: { after, limit: 1000 } }),
            notFound(id),
          )
          for (const log of page.logs) print(log.seq, log.level, log.message, log.timestamp)
          if (page.next_after === null || page.next_after === undefined || !page.logs.length) break
          after = page.next_after
        }
      }),
    )

  task
    .command('cancel <id>')
    .description('stop a queued or running task')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const id = cmd.args[0]!
        const res = await ctx.api.tasks({ id }).cancel.post()
        if (res.status === 409) throw usageError(`${id} has already finished; nothing to cancel`)
        const body = await call(ctx.connection, Promise.resolve(res), notFound(id))
        if (ctx.out.json) ctx.out.jsonLine(body)
        else
          ctx.out.line(
            body.status === 'cancelled' ? `${id} cancelled` : `${id} cancelling (it stops within a second)`,
          )
      }),
    )

  task
    .command('intervene <id> <guidance...>')
    .description('steer a running task: guidance used from its next model call')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const [id, ...words] = cmd.args as string[]
        const res = await ctx.api.tasks({ id: id! }).interventions.post({ guidance: words.join(' ') })
        if (res.status === 409) throw usageError(`${id} has finished; guidance is no longer taken`)
        const body = await call(ctx.connection, Promise.resolve(res), notFound(id!))
        if (ctx.out.json) ctx.out.jsonLine(body)
        else
          ctx.out.line(`guidance for ${id} recorded (seq ${body.seq}); it applies from the next model call`)
      }),
    )

  task
    .command('delete <id>')
    .description('delete a finished task with its modules, events and logs')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const id = cmd.args[0]!
        const res = await ctx.api.tasks({ id }).delete()
        if (res.status === 409)
          throw usageError(`${id} is still queued or running; cancel it first (gantry task cancel ${id})`)
        const body = await call(ctx.connection, Promise.resolve(res), notFound(id))
        if (ctx.out.json) ctx.out.jsonLine(body)
        else ctx.out.line(`${id} deleted`)
      }),
    )

  program
    .command('tasks')
    .description('your tasks, newest first')
    .option('--status <status>', `only tasks in this state: ${STATUSES.join(', ')}`)
    .option('--limit <n>', 'how many (1–100, default 20)', positiveInt('--limit', 100), 20)
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const { status, limit } = cmd.opts<{ status?: string; limit: number }>()
        if (status && !(STATUSES as readonly string[]).includes(status))
          throw usageError(`--status is one of ${STATUSES.join(', ')}`)
        const list = await call(
          ctx.connection,
          ctx.api.tasks.get({
            query: { ...(status ? { status: status as (typeof STATUSES)[number] } : {}), limit },
          }),
        )
        if (ctx.out.json) return ctx.out.jsonLine(list)
        if (!list.tasks.length) return ctx.out.line(status ? `no ${status} tasks` : 'no tasks yet')
        const width = Math.max(20, (process.stdout.columns || 120) - 80)
        ctx.out.line(
          table(
            ['ID', 'STATUS', 'MODULES', 'CREATED', 'PROMPT'],
            list.tasks.map((t) => [
              t.task_id,
              t.status,
              `${t.modules_complete}/${t.total_modules}`,
              ago(t.created_at),
              clip(oneLine(t.prompt), width),
            ]),
            ctx.out.color,
          ),
        )
      }),
    )
}

export type { Context }
