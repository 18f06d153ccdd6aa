/** `gantry keys` (admins), `gantry desktop status|start|stop`, `gantry logs -f` (the server log, admins). */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Command } from 'commander'
import { authHeaders, call, connectionFetch, httpError, Unreachable } from '../client.ts'
import { type Context, contextOf, type Run } from '../context.ts'
import { CliError, usageError } from '../errors.ts'
import { ago, table } from '../output.ts'
import { SseParser } from '../stream.ts'
import { positiveInt } from './tasks.ts'

const SERVER_LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const
const PINO_NAMES: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
}

/** One server log record (pino JSON) as a line: time, level, message, the other fields dimmed. */
function printRecord(ctx: Context, data: string) {
  if (ctx.out.json) return ctx.out.line(data)
  const c = ctx.out.color
  const { level, time, msg, pid: _pid, hostname: _host, ...rest } = JSON.parse(data) as Record<string, any>
  const paint = level >= 50 ? c.red : level >= 40 ? c.yellow : c.dim
  const extra = Object.keys(rest).length ? ` ${c.dim(JSON.stringify(rest))}` : ''
  ctx.out.line(
    `${new Date(time ?? Date.now()).toISOString()} ${paint((PINO_NAMES[level] ?? String(level)).padEnd(5))} ${msg ?? ''}${extra}`,
  )
}

export function registerAdminCommands(program: Command, run: Run) {
  const keys = program.command('keys').description('API keys and users (admins)')
  keys
    .command('list', { isDefault: true })
    .description('every key with its user; never a secret')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const list = await call(ctx.connection, ctx.api.api.keys.get())
        if (ctx.out.json) return ctx.out.jsonLine(list)
        ctx.out.line(
          table(
            ['ID', 'PREFIX', 'USER', 'ROLE', 'NAME', 'LAST USED', 'REVOKED'],
            list.map((k) => [
              k.id,
              k.prefix,
              k.user,
              k.role,
              k.name,
              ago(k.last_used_at),
              k.revoked_at ? ago(k.revoked_at) : '–',
            ]),
            ctx.out.color,
          ),
        )
      }),
    )
  keys
    .command('create')
    .description('create a user and a key for it; the new key is shown once')
    .requiredOption('--user <name>', 'the new user')
    .option('--role <role>', 'user or admin', 'user')
    .option('--name <label>', 'a label for the key')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const { user, role, name } = cmd.opts<{ user: string; role: string; name?: string }>()
        if (role !== 'user' && role !== 'admin') throw usageError('--role is user or admin')
        const created = await call(
          ctx.connection,
          ctx.api.api.keys.post({ user, role, ...(name ? { name } : {}) }),
        )
        if (ctx.out.json) return ctx.out.jsonLine(created)
        ctx.out.note(
          `created ${created.id} for ${created.user} (${created.role}); the key is shown only now:`,
        )
        ctx.out.line(created.key)
      }),
    )
  keys
    .command('revoke <id>')
    .description('revoke a key by id or prefix; its login sessions end too')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const id = cmd.args[0]!
        const res = await call(ctx.connection, ctx.api.api.keys({ id }).delete(), {
          notFound: `no active key ${id}`,
        })
        if (ctx.out.json) return ctx.out.jsonLine(res)
        ctx.out.line(`${res.revoked} revoked`)
      }),
    )

  const desktop = program.command('desktop').description('the agent’s virtual desktop (VNC)')
  const showDesktop = (
    cmd: Command,
    d: {
      state: string
      display?: unknown
      width?: unknown
      height?: unknown
      viewer_url?: unknown
      message?: unknown
      missing?: unknown
      last_error?: unknown
    },
  ) => {
    const ctx = contextOf(cmd)
    if (ctx.out.json) return ctx.out.jsonLine({ ...d, password: undefined })
    if (d.message) ctx.out.line(String(d.message))
    ctx.out.line(
      `desktop: ${d.state}${d.state === 'running' && d.width ? ` ${d.width}×${d.height}` : ''}${d.state === 'running' && d.display ? ` on display ${d.display}` : ''}`,
    )
    if (d.viewer_url && d.state === 'running') ctx.out.line(`viewer: ${d.viewer_url}`)
    const missing = d.missing as { binary: string; package: string }[] | undefined
    if (missing?.length)
      ctx.out.line(`missing: ${missing.map((m) => `${m.binary} (apt-get install ${m.package})`).join(', ')}`)
    if (d.last_error) ctx.out.line(`last error: ${d.last_error}`)
  }
  desktop
    .command('status', { isDefault: true })
    .description('whether it runs, its size and viewer URL')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        showDesktop(
          cmd,
          await call(ctx.connection, ctx.api.api.vnc.status.get(), {
            notFound: 'the server has no desktop (vnc plugin not loaded)',
          }),
        )
      }),
    )
  desktop
    .command('start')
    .description('start the desktop (idempotent)')
    .option('--width <px>', 'screen width', positiveInt('--width', 7680))
    .option('--height <px>', 'screen height', positiveInt('--height', 4320))
    .option('--view-only', 'viewers watch, only the agent acts')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const o = cmd.opts<{ width?: number; height?: number; viewOnly?: boolean }>()
        const body = {
          ...(o.width ? { width: o.width } : {}),
          ...(o.height ? { height: o.height } : {}),
          ...(o.viewOnly ? { view_only: true } : {}),
        }
        showDesktop(
          cmd,
          await call(ctx.connection, ctx.api.api.vnc.connect.post(body), {
            notFound: 'the server has no desktop (vnc plugin not loaded)',
          }),
        )
      }),
    )
  desktop
    .command('stop')
    .description('stop every process of the desktop')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        showDesktop(
          cmd,
          await call(ctx.connection, ctx.api.api.vnc.disconnect.post(), {
            notFound: 'the server has no desktop (vnc plugin not loaded)',
          }),
        )
      }),
    )

  program
    .command('logs')
    .description('the server’s own log, live (admins); it has no history: lines from now on')
    .option('-f, --follow', 'follow (the default: the server log is live only)')
    .option('--level <level>', `minimum level: ${SERVER_LOG_LEVELS.join(', ')}`, 'info')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const { level } = cmd.opts<{ level: string }>()
        if (!(SERVER_LOG_LEVELS as readonly string[]).includes(level))
          throw usageError(`--level is one of ${SERVER_LOG_LEVELS.join(', ')}`)
        const c = ctx.out.color
        const fetcher = connectionFetch(ctx.connection)
        let everConnected = false
        let attempt = 0
        for (;;) {
          try {
            const res = await fetcher(`${ctx.connection.url}/api/logs/stream?level=${level}`, {
              headers: authHeaders(ctx.connection),
            })
            if (!res.ok) throw httpError(ctx.connection, res.status, await res.json().catch(() => null))
            if (everConnected) ctx.out.note(c.yellow('reconnected; lines logged while away are not replayed'))
            everConnected = true
            attempt = 0
            const parser = new SseParser()
            const decoder = new TextDecoder()
            for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>)
              for (const message of parser.push(decoder.decode(chunk, { stream: true })))
                printRecord(ctx, message.data)
          } catch (err) {
            // Refusals end it; a lost connection is retried, but an address that never answered is a usage error.
            if (err instanceof CliError && (!(err instanceof Unreachable) || !everConnected)) throw err
          }
          const delay = Math.min(5000, 250 * 2 ** attempt++)
          ctx.out.note(c.yellow(`server log stream lost; reconnecting in ${(delay / 1000).toFixed(1)} s`))
          await sleep(delay)
        }
      }),
    )
}
