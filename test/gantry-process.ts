/**
 * Gantry as a user runs it: `bun src/index.ts` in its own process with the environment given, observed from
 * outside (its stdout and stderr, its exit code, the URL from its start banner). Shared by the tests and
 * benches that need real processes: start-up, takeover between instances, the desktop's life.
 */
import { join } from 'node:path'
import { ROOT, waitFor } from './helpers.ts'

export interface GantryProcess {
  proc: ReturnType<typeof Bun.spawn>
  pid: number
  stdout(): string
  stderr(): string
  /** The URL from the start banner (`… is up: http://…`), once it is printed. */
  url(timeoutMs?: number): Promise<string>
  /** The exit code, once both output streams are drained. */
  exit(): Promise<number>
  /**
   * Signals the process and everything it started (its own process group): `npm run start:deno`'s command is a
   * Node wrapper around Deno, and SIGKILL, which the wrapper cannot pass on, would leave Deno serving.
   */
  kill(signal: NodeJS.Signals): void
}

/**
 * Starts `bun src/index.ts` (or `command`, e.g. the server on Deno) on loopback. Defaults: a free port, LOG_LEVEL=warn, HOME = DATA_DIR (or the
 * caller's); `env` overrides them. Both streams are drained so a chatty server never blocks on a full pipe.
 */
export function spawnGantry(
  env: Record<string, string>,
  command: string[] = [process.execPath, join(ROOT, 'src/index.ts')],
): GantryProcess {
  const proc = Bun.spawn(command, {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: env.DATA_DIR ?? process.env.HOME ?? '/tmp',
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'warn',
      ...env,
    },
    stdout: 'pipe',
    stderr: 'pipe',
    detached: true,
  })
  let stdout = ''
  let stderr = ''
  const pump = async (stream: ReadableStream<Uint8Array>, into: (s: string) => void) => {
    const decoder = new TextDecoder()
    const reader = stream.getReader()
    for (let r = await reader.read(); !r.done; r = await reader.read())
      into(decoder.decode(r.value, { stream: true }))
  }
  const drained = Promise.all([
    pump(proc.stdout, (s) => {
      stdout += s
    }),
    pump(proc.stderr, (s) => {
      stderr += s
    }),
  ])
  return {
    proc,
    pid: proc.pid,
    stdout: () => stdout,
    stderr: () => stderr,
    async url(timeoutMs = 30_000) {
      const banner = await waitFor(
        () => {
          const up = /is up: (http:\/\/\S+)/.exec(stderr)?.[1]
          if (!up && proc.exitCode !== null)
            throw new Error(`gantry exited (${proc.exitCode}) before it was up:\n${stderr}`)
          return up
        },
        timeoutMs,
        'the start banner',
      )
      return banner!
    },
    async exit() {
      const code = await proc.exited
      await drained
      return code
    },
    kill(signal) {
      try {
        process.kill(-proc.pid, signal)
      } catch {
        proc.kill(signal) // the group is gone already, or was never made
      }
    },
  }
}
