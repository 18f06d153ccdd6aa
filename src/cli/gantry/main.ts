/**
 * `gantry`: Gantry from the terminal. bin/gantry.mjs runs this file under the package's own Bun. Exit codes:
 * 0 done (a followed task completed), 1 failed, cancelled or not found, 2 usage, connection or auth errors,
 * 130 stopped watching.
 */
import { Command, CommanderError, Option } from 'commander'
import { VERSION } from '../../version.ts'
import { registerAccountCommands } from './commands/account.ts'
import { registerAdminCommands } from './commands/admin.ts'
import { registerChatCommands } from './commands/chat.ts'
import { registerTaskCommands } from './commands/tasks.ts'
import { contextOf, type Run } from './context.ts'
import { CliError, EXIT, usageError } from './errors.ts'

/** Runs a command's action; its number, if any, becomes the exit code. */
const run: Run =
  (fn) =>
  async (...args) => {
    const code = await fn(args.at(-1) as Command)
    if (typeof code === 'number') process.exitCode = code
  }

export function buildProgram(): Command {
  const program = new Command('gantry')
    .description(
      'Gantry from the terminal: coding tasks with live progress, chat with agents, the server’s state',
    )
    .version(VERSION, '-V, --version')
    .addOption(new Option('--url <url>', 'the server (else GANTRY_URL, else what gantry login saved)'))
    .addOption(new Option('--key <key>', 'an API key (else GANTRY_API_KEY, else what gantry login saved)'))
    .option('--json', 'JSON output: NDJSON events when following, else the JSON result')
    .showHelpAfterError('(gantry --help lists the commands; gantry <command> --help explains one)')
    .exitOverride()
    .addHelpText(
      'after',
      `
Exit codes: 0 done, 1 failed, cancelled or not found, 2 usage, connection or auth error, 130 stopped watching.
Output that is not a terminal (or CI=true) has no colour or bars: one line per event.`,
    )

  registerAccountCommands(program, run)
  registerTaskCommands(program, run)
  registerChatCommands(program, run)
  registerAdminCommands(program, run)

  program
    .command('mcp')
    .description('a stdio MCP server for Claude Desktop, Claude Code, Cursor: relays to this Gantry’s /mcp')
    .action(
      run(async (cmd) => {
        const { connection } = contextOf(cmd)
        if (!connection.key)
          throw usageError('gantry mcp needs an API key: gantry login, --key or GANTRY_API_KEY')
        const { runMcpBridge } = await import('../mcp-bridge.ts')
        await runMcpBridge({ url: connection.url, key: connection.key })
      }),
    )
  return program
}

/** The reader went away (`gantry … | head`): stop quietly, as Unix tools do. */
const readerGone = (err: unknown) => (err as { code?: string })?.code === 'EPIPE'

async function main(argv: string[]): Promise<number> {
  const program = buildProgram()
  process.stdout.on('error', (err) => {
    if (readerGone(err)) process.exit(EXIT.ok)
  })
  try {
    await program.parseAsync(argv)
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok
  } catch (err) {
    if (readerGone(err)) return EXIT.ok
    if (err instanceof CommanderError)
      // Help and --version "fail" with exit code 0; every real parse error is a usage error.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage
    if (err instanceof CliError) {
      process.stderr.write(`gantry: ${err.message}\n`)
      return err.exitCode
    }
    process.stderr.write(`gantry: unexpected error: ${(err as Error)?.stack ?? err}\n`)
    return EXIT.failed
  }
}

if (import.meta.main) {
  const code = await main(process.argv)
  // Open keep-alive sockets must not hold the process; stdout is flushed by then (writes are synchronous).
  process.exit(code)
}
