/**
 * Test kit for the `gantry` client: run the real bin (node bin/gantry.mjs) as a process, piped or inside a
 * tmux pseudo-terminal, against a real server whose model is the simulated Ollama.
 */
import { symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { routeByGoal } from '../../../plugins/tasks/testing.ts'
import { type MockOllama, startMockOllama } from '../../../test/fakes/ollama.ts'
import { ADMIN_KEY, ROOT, startTestServer, type TestServer, tempDir, waitFor } from '../../../test/helpers.ts'

export const GANTRY_BIN = join(ROOT, 'bin/gantry.mjs')
const PLUGINS = ['websocket', 'logs-stream', 'tasks', 'sessions', 'vnc']

/** A plugins folder with the first-party plugins the client talks to, and nothing being built beside them. */
export function clientPluginsDir(): string {
  const dir = tempDir('gantry-cli-plugins-')
  for (const name of PLUGINS) symlinkSync(join(ROOT, 'plugins', name), join(dir, name))
  return dir
}

export interface CliWorld {
  server: TestServer
  mock: MockOllama
  model: ReturnType<typeof routeByGoal>
  /** An environment with only what a user's shell would have: PATH, a private HOME and config folder. */
  env(extra?: Record<string, string>): Record<string, string>
  stop(): Promise<void>
}

export async function startCliWorld(env: Record<string, string> = {}): Promise<CliWorld> {
  const mock = await startMockOllama()
  const model = routeByGoal(mock)
  const server = await startTestServer({
    PLUGINS_DIR: clientPluginsDir(),
    OLLAMA_HOST: mock.url,
    OLLAMA_MODEL: 'llama3.2',
    SANDBOX_TIMEOUT_MS: '15000',
    ...env,
  })
  const home = tempDir('gantry-cli-home-')
  return {
    server,
    mock,
    model,
    env: (extra = {}) => ({
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      XDG_CONFIG_HOME: join(home, '.config'),
      GANTRY_URL: server.url,
      GANTRY_API_KEY: ADMIN_KEY,
      ...extra,
    }),
    async stop() {
      await server.stop()
      await mock.stop()
    },
  }
}

export interface GantryRun {
  proc: ReturnType<typeof Bun.spawn>
  stdout(): string
  stderr(): string
  /** Resolves once stdout has a line matching, with that line. */
  waitForStdout(pattern: RegExp, timeoutMs?: number): Promise<string>
  exit(): Promise<{ code: number; stdout: string; stderr: string }>
}

/** Starts `node bin/gantry.mjs …args` with pipes for stdin, stdout and stderr. */
export function spawnGantryCli(args: string[], env: Record<string, string>, stdin?: string): GantryRun {
  const proc = Bun.spawn(['node', GANTRY_BIN, ...args], {
    cwd: tempDir('gantry-cli-cwd-'),
    env,
    stdin: stdin === undefined ? 'ignore' : new TextEncoder().encode(stdin),
    stdout: 'pipe',
    stderr: 'pipe',
  })
  let stdout = ''
  let stderr = ''
  const pump = async (stream: ReadableStream<Uint8Array>, into: (s: string) => void) => {
    const decoder = new TextDecoder()
    for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>)
      into(decoder.decode(chunk, { stream: true }))
  }
  const drained = Promise.all([
    pump(proc.stdout as ReadableStream<Uint8Array>, (s) => {
      stdout += s
    }),
    pump(proc.stderr as ReadableStream<Uint8Array>, (s) => {
      stderr += s
    }),
  ])
  return {
    proc,
    stdout: () => stdout,
    stderr: () => stderr,
    waitForStdout: (pattern, timeoutMs = 30_000) =>
      waitFor(
        () => stdout.split('\n').find((l) => pattern.test(l)),
        timeoutMs,
        `${pattern} in gantry's output; stdout so far:\n${stdout}\nstderr:\n${stderr}`,
      ),
    async exit() {
      const code = await proc.exited
      await drained
      return { code, stdout, stderr }
    },
  }
}

/** Runs `gantry …args` to its end. */
export const runGantry = (args: string[], env: Record<string, string>, stdin?: string) =>
  spawnGantryCli(args, env, stdin).exit()

const shellQuote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`

/**
 * `gantry` in a tmux pane: a real pseudo-terminal of `width`×`height`, whose screen can be captured as a
 * person would see it, and keys sent to it (Ctrl-C included). Its own tmux server, removed by `close()`.
 */
export async function gantryInTmux(
  args: string[],
  env: Record<string, string>,
  size = { width: 110, height: 30 },
) {
  const socket = `gantry-cli-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  const dir = tempDir('gantry-cli-tmux-')
  const exitFile = join(dir, 'exit-code')
  const exports = Object.entries({ ...env, TERM: 'xterm-256color' })
    .map(([k, v]) => `${k}=${shellQuote(v)}`)
    .join(' ')
  const command = `env -i ${exports} node ${shellQuote(GANTRY_BIN)} ${args.map(shellQuote).join(' ')}; echo $? > ${shellQuote(exitFile)}; sleep 600`
  const tmux = (...a: string[]) =>
    Bun.spawnSync(['tmux', '-L', socket, ...a], { env: { PATH: env.PATH ?? '/usr/bin:/bin', TMUX: '' } })
  const started = tmux(
    'new-session',
    '-d',
    '-x',
    String(size.width),
    '-y',
    String(size.height),
    '-c',
    dir,
    command,
  )
  if (started.exitCode !== 0) throw new Error(`tmux did not start: ${started.stderr.toString()}`)
  return {
    /** The visible screen, as text. */
    capture(): string {
      return tmux('capture-pane', '-p', '-t', '0').stdout.toString()
    },
    /** The screen with its colours, as ANSI escapes. */
    captureAnsi(): string {
      return tmux('capture-pane', '-p', '-e', '-t', '0').stdout.toString()
    },
    sendKeys(...keys: string[]) {
      tmux('send-keys', '-t', '0', ...keys)
    },
    async waitForScreen(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
      let screen = ''
      await waitFor(
        () => {
          screen = this.capture()
          return pattern.test(screen)
        },
        timeoutMs,
        `${pattern} on the tmux screen`,
      ).catch((err) => {
        throw new Error(`${(err as Error).message}; the screen:\n${screen}`)
      })
      return screen
    },
    async exitCode(timeoutMs = 60_000): Promise<number> {
      const text = await waitFor(
        async () => {
          const f = Bun.file(exitFile)
          return (await f.exists()) ? (await f.text()).trim() : ''
        },
        timeoutMs,
        'gantry to exit in tmux',
      )
      return Number(text)
    },
    close() {
      tmux('kill-server')
    },
  }
}
