/**
 * `gantry chat` (an interactive prompt, `-m` once, or a message piped on stdin), `gantry sessions` and
 * `gantry agents`. An answer is sent over REST and read from the session's event stream (SSE from the
 * `since` the server hands back), so a dropped connection resumes mid-answer without losing or repeating text.
 */
import { createInterface } from 'node:readline'
import type { Command } from 'commander'
import { call } from '../client.ts'
import { type Context, contextOf, type Run } from '../context.ts'
import { CliError, EXIT, usageError } from '../errors.ts'
import { ago, clip, oneLine, table } from '../output.ts'
import { followStream } from '../stream.ts'

interface ChatFlags {
  session?: string
  agent?: string
  reasoning?: boolean
  message?: string
}

async function openSession(
  ctx: Context,
  flags: ChatFlags,
): Promise<{ id: string; name: string | null; agent: string }> {
  if (flags.session) {
    const found = await ctx.api.api.sessions({ id: flags.session }).get()
    if (found.status === 200 && found.data)
      return { id: found.data.session_id, name: found.data.name, agent: found.data.agent }
    if (found.status !== 404) await call(ctx.connection, Promise.resolve(found))
  }
  const created = await call(
    ctx.connection,
    ctx.api.api.sessions.post({
      ...(flags.session ? { name: flags.session } : {}),
      ...(flags.agent ? { agent: flags.agent } : {}),
    }),
  )
  return { id: created.session_id, name: created.name, agent: created.agent }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

/**
 * Sends one message and prints the answer as it streams: reasoning dimmed, tool calls and results on their
 * own lines. Resolves true when the answer completed, false on an error.
 */
async function ask(
  ctx: Context,
  sessionId: string,
  message: string,
  flags: ChatFlags,
  abort: AbortSignal,
): Promise<boolean> {
  const { out } = ctx
  const c = out.color
  const res = await ctx.api.api.sessions({ id: sessionId }).chat.post({
    message,
    ...(flags.agent ? { agent_name: flags.agent } : {}),
    ...(flags.reasoning ? { enable_reasoning: true } : {}),
  })
  if (res.status === 409)
    throw new CliError('the session is busy answering another message; wait or cancel it', EXIT.failed)
  const accepted = await call(ctx.connection, Promise.resolve(res), { notFound: `no session ${sessionId}` })
  const answerId = accepted.assistant_message_id
  const done = new AbortController()
  abort.addEventListener('abort', () => done.abort(), { once: true })
  let ok = false
  let midLine = false
  let inReasoning = false
  const write = (text: string) => {
    process.stdout.write(text)
    midLine = !text.endsWith('\n')
  }
  const endLine = () => {
    if (midLine) write('\n')
  }
  await followStream(
    ctx.connection,
    sessionId,
    {
      onEvent: (e) => {
        const d = e.data ?? {}
        if (d.message_id !== answerId) return
        if (out.json) out.jsonLine(e)
        switch (e.type) {
          case 'reasoning':
            if (out.json) break
            if (!inReasoning) {
              endLine()
              inReasoning = true
            }
            write(c.dim(String(d.content ?? '')))
            break
          case 'reasoning_complete':
            if (out.json) break
            if (inReasoning) endLine()
            inReasoning = false
            break
          case 'content':
            if (out.json) break
            if (inReasoning) {
              endLine()
              inReasoning = false
            }
            write(String(d.content ?? ''))
            break
          case 'tool_call':
            if (out.json) break
            endLine()
            write(
              `${c.cyan('→')} ${c.bold(String(d.name))}(${clip(JSON.stringify(d.arguments ?? {}), 200)})\n`,
            )
            break
          case 'tool_result':
            if (out.json) break
            endLine()
            write(
              `${d.is_error ? c.red('✗') : c.green('←')} ${d.name}: ${clip(oneLine(String(d.content ?? '')), 200)}\n`,
            )
            break
          case 'notice':
            if (!out.json) {
              endLine()
              out.note(c.yellow(`note: ${d.message ?? d.code}`))
            }
            break
          case 'response':
            if (!out.json) {
              endLine()
              if (d.incomplete) out.note(c.yellow(`(answer ${d.reason ?? 'incomplete'})`))
            }
            ok = !d.incomplete
            done.abort()
            break
          case 'error':
            if (!out.json) {
              endLine()
              out.note(c.red(`error: ${d.message ?? d.code}`))
            }
            done.abort()
            break
        }
      },
      onRetry: ({ delayMs, reason }) =>
        out.note(c.yellow(`connection lost (${reason}); reconnecting in ${(delayMs / 1000).toFixed(1)} s`)),
    },
    { since: accepted.since, signal: done.signal },
  )
  return ok
}

export function registerChatCommands(program: Command, run: Run) {
  program
    .command('chat')
    .description('chat with an agent: an interactive prompt, or one message with -m (or piped on stdin)')
    .option('--session <name>', 'continue (or start) the session of this name; default: a new session')
    .option('--agent <name>', 'the agent to answer (see gantry agents)')
    .option('--reasoning', 'ask the model to think; its reasoning is shown dimmed')
    .option('-m, --message <text>', 'send this one message, print the answer, exit')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const flags = cmd.opts<ChatFlags>()
        let oneShot = flags.message
        if (oneShot === undefined && !process.stdin.isTTY) oneShot = await readStdin()
        if (oneShot !== undefined && !oneShot.trim()) throw usageError('the message is empty')
        const session = await openSession(ctx, flags)
        const never = new AbortController().signal
        if (oneShot !== undefined)
          return (await ask(ctx, session.id, oneShot.trim(), flags, never)) ? EXIT.ok : EXIT.failed

        const c = ctx.out.color
        ctx.out.note(
          c.dim(
            `session ${session.name ?? session.id} with ${flags.agent ?? session.agent}; Ctrl-C stops an answer, Ctrl-D leaves`,
          ),
        )
        const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: true })
        let closed = false
        let waiting: ((line: string | undefined) => void) | undefined
        rl.on('close', () => {
          closed = true
          waiting?.(undefined)
        })
        rl.on('SIGINT', () => rl.close())
        const prompt = () =>
          new Promise<string | undefined>((resolve) => {
            if (closed) return resolve(undefined)
            waiting = resolve
            rl.question(c.bold(c.green('you› ')), (line) => {
              waiting = undefined
              resolve(line)
            })
          })
        const cancelAnswer = () =>
          void ctx.api.api
            .sessions({ id: session.id })
            .cancel.post()
            .catch(() => {})
        for (;;) {
          const line = await prompt()
          if (line === undefined) break
          if (!line.trim()) continue
          // While the answer streams the terminal is back in cooked mode, so Ctrl-C is a real SIGINT: it
          // stops the answer (the partial text is kept) and the prompt comes back.
          rl.pause()
          process.stdin.setRawMode?.(false)
          process.on('SIGINT', cancelAnswer)
          try {
            await ask(ctx, session.id, line.trim(), flags, new AbortController().signal)
          } catch (err) {
            if (!(err instanceof CliError) || err.exitCode === EXIT.usage) throw err
            ctx.out.note(c.red(err.message))
          } finally {
            process.off('SIGINT', cancelAnswer)
            process.stdin.setRawMode?.(true)
            rl.resume()
          }
        }
        rl.close()
      }),
    )

  program
    .command('sessions')
    .description('your chat sessions, most recently active first')
    .option('--limit <n>', 'how many', '20')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const list = await call(
          ctx.connection,
          ctx.api.api.sessions.get({ query: { limit: Number(cmd.opts().limit) } }),
        )
        if (ctx.out.json) return ctx.out.jsonLine(list)
        if (!list.sessions.length) return ctx.out.line('no sessions yet: gantry chat')
        ctx.out.line(
          table(
            ['NAME', 'ID', 'AGENT', 'ACTIVE', 'TITLE'],
            list.sessions.map((s) => [
              s.name ?? '–',
              s.session_id,
              s.agent,
              ago(s.last_activity_at),
              clip(oneLine(s.title ?? ''), 50),
            ]),
            ctx.out.color,
          ),
        )
      }),
    )

  program
    .command('agents')
    .description('the agents you can chat with')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const list = await call(ctx.connection, ctx.api.v1.agents.get())
        if (ctx.out.json) return ctx.out.jsonLine(list)
        ctx.out.line(
          table(
            ['NAME', 'MODEL', 'THINKS', 'TOOLS', 'SOURCE', 'DESCRIPTION'],
            list.agents.map((a) => [
              a.name,
              a.model ?? '(default)',
              a.think ? 'yes' : 'no',
              a.tools.join(',') || '–',
              a.source,
              clip(oneLine(a.description), 60),
            ]),
            ctx.out.color,
          ),
        )
      }),
    )
}
