/** `gantry login`, `logout`, `whoami`, `status`. */
import type { Command } from 'commander'
import { call, createApi } from '../client.ts'
import {
  configPath,
  forgetLogin,
  normalizeUrl,
  readStoredLogin,
  resolveConnection,
  storeLogin,
} from '../config.ts'
import { contextOf, type GlobalFlags, type Run } from '../context.ts'
import { CliError, EXIT, usageError } from '../errors.ts'
import { createOutput } from '../output.ts'

/** Reads a secret from the terminal without echoing it. */
function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin
  process.stderr.write(question)
  return new Promise((resolve, reject) => {
    let value = ''
    stdin.setRawMode(true)
    stdin.resume()
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish(() => resolve(value))
        if (ch === '\u0003') return finish(() => reject(new CliError('login cancelled', EXIT.interrupted)))
        if (ch === '\u0004') return finish(() => resolve(value))
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1)
        else if (ch >= ' ') value += ch
      }
    }
    const finish = (then: () => void) => {
      stdin.off('data', onData)
      stdin.setRawMode(false)
      stdin.pause()
      process.stderr.write('\n')
      then()
    }
    stdin.on('data', onData)
  })
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

export function registerAccountCommands(program: Command, run: Run) {
  program
    .command('login')
    .description(
      `check an API key against the server and save it (with the URL) in ${configPath().replace(process.env.HOME ?? '\0', '~')}, mode 0600`,
    )
    .addHelpText(
      'after',
      '\nThe key comes from --key, else a prompt that does not echo it (on a terminal), else stdin:\n  echo "$KEY" | gantry login --url http://gpu-box:9876',
    )
    .action(
      run(async (cmd) => {
        const flags = cmd.optsWithGlobals<GlobalFlags>()
        const out = createOutput(flags)
        const base = resolveConnection({ url: flags.url })
        let key = flags.key
        if (!key)
          key = process.stdin.isTTY ? await promptHidden(`API key for ${base.url}: `) : await readStdin()
        key = key.trim()
        if (!key)
          throw usageError('no API key given (pass --key, type it at the prompt, or pipe it on stdin)')
        const connection = { ...base, key, keyFrom: 'the key you gave' }
        const me = await call(connection, createApi(connection).api.me.get())
        const path = storeLogin({ url: normalizeUrl(base.url, base.urlFrom), key })
        if (out.json)
          return out.jsonLine({
            url: base.url,
            user: me.user,
            role: me.role,
            key_id: me.key_id,
            config: path,
          })
        out.line(`logged in to ${base.url} as ${me.user} (${me.role}); saved in ${path}`)
      }),
    )

  program
    .command('logout')
    .description('forget the saved URL and key')
    .action(
      run(async (cmd) => {
        const out = createOutput(cmd.optsWithGlobals<GlobalFlags>())
        const had = readStoredLogin()
        const removed = forgetLogin()
        out.line(
          removed
            ? `forgot the key for ${had.url ?? 'the server'} (${configPath()} removed)`
            : 'not logged in; nothing to forget',
        )
      }),
    )

  program
    .command('whoami')
    .description('the user, role and key behind the current credentials')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const me = await call(ctx.connection, ctx.api.api.me.get())
        if (ctx.out.json) return ctx.out.jsonLine({ url: ctx.connection.url, ...me })
        ctx.out.line(
          `${me.user} (${me.role}) at ${ctx.connection.url}, key ${me.key_id ?? '–'}${me.key_name ? ` "${me.key_name}"` : ''}, from ${ctx.connection.keyFrom}`,
        )
      }),
    )

  program
    .command('status')
    .description('the server: version, database, Ollama and its models, plugins, the desktop, you')
    .action(
      run(async (cmd) => {
        const ctx = contextOf(cmd)
        const { api, connection, out } = ctx
        const me = await call(connection, api.api.me.get())
        const [root, ready, models, desktop] = await Promise.all([
          api.get(),
          api.ready.get(),
          api.v1.models.get(),
          api.api.vnc.status.get(),
        ])
        const info = root.data as {
          version?: string
          status?: string
          plugins?: { name: string; status: string; error?: string }[]
        } | null
        // /ready answers 503 with the same body while the database is down.
        const readiness = (ready.data ?? ready.error?.value) as {
          status?: string
          database?: string
          ollama?: string
          plugins?: { name: string; status: string }[]
        } | null
        const ollamaModels =
          models.status === 200
            ? models.data!.data.filter((m) => m.owned_by === 'ollama').map((m) => m.id)
            : null
        const summary = {
          url: connection.url,
          version: info?.version ?? null,
          status: readiness?.status ?? 'unknown',
          database: readiness?.database ?? 'unknown',
          ollama: readiness?.ollama ?? 'unknown',
          models: ollamaModels,
          plugins: info?.plugins ?? readiness?.plugins ?? [],
          desktop: desktop.status === 200 ? desktop.data!.state : null,
          user: { user: me.user, role: me.role },
        }
        if (out.json) out.jsonLine(summary)
        else {
          const c = out.color
          const good = (v: string) => (v === 'ok' || v === 'ready' || v === 'loaded' ? c.green(v) : c.red(v))
          out.line(`${c.bold(`Gantry ${summary.version ?? '?'}`)} at ${summary.url}: ${good(summary.status)}`)
          const rows: [string, string][] = [
            ['database', good(summary.database)],
            [
              'ollama',
              `${good(summary.ollama)}  ${ollamaModels === null ? 'models unknown (the sessions plugin is not loaded)' : `models: ${ollamaModels.join(', ') || 'none installed'}`}`,
            ],
            [
              'plugins',
              summary.plugins
                .map((p) => (p.status === 'loaded' ? p.name : `${p.name} (${p.status})`))
                .join(', ') || 'none',
            ],
            ['desktop', summary.desktop ?? 'not available'],
            ['you', `${me.user} (${me.role})`],
          ]
          for (const [label, value] of rows) out.line(`  ${c.dim(label.padEnd(9))}${value}`)
        }
        return summary.status === 'ready' ? EXIT.ok : EXIT.failed
      }),
    )
}
