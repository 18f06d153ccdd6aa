/**
 * The tasks plugin's process helpers (spawning, finding binaries, resolving packages) over `node:` modules,
 * which Bun and Deno both have, so the workflow and the sandbox read as plain TypeScript on either runtime.
 */
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { which } from '../../src/core/which.ts'

export interface ChildProcess {
  pid: number
  /** Resolves with the exit code (null when killed by a signal); rejects when the command could not start. */
  exited: Promise<number | null>
  stdout: ReadableStream<Uint8Array>
  stderr: ReadableStream<Uint8Array>
  /** Kills the child's whole process group (it is started as a group leader). */
  killGroup(signal?: NodeJS.Signals): void
}

/**
 * Starts `cmd` in a session (and process group) of its own with exactly `env` as its environment.
 * `lowPriority` puts the whole session at the bottom of the CPU: see `lowerSessionPriority`.
 */
export function spawnProcess(
  cmd: string[],
  opts: { cwd: string; env: Record<string, string>; lowPriority?: boolean },
): ChildProcess {
  const child = spawn(cmd[0]!, cmd.slice(1), {
    cwd: opts.cwd,
    env: opts.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  if (opts.lowPriority && child.pid) lowerSessionPriority(child.pid)
  // 'exit', not 'close': the run is over when the process is, even if something it left holds the pipes.
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('exit', (code, signal) => resolve(signal ? null : code))
    child.once('error', reject)
  })
  return {
    pid: child.pid ?? 0,
    exited,
    stdout: webStream(child.stdout!),
    stderr: webStream(child.stderr!),
    killGroup(signal = 'SIGKILL') {
      try {
        if (!child.pid) return
        process.kill(-child.pid, signal)
      } catch {
        child.kill(signal) // already gone, or not a group leader after all
      }
    },
  }
}

/**
 * A detached child starts a new session, and where the kernel groups the scheduler by session (autogroup,
 * `/proc/sys/kernel/sched_autogroup_enabled`, on by default in most distributions) each session gets an
 * equal share of the CPU whatever the niceness of its processes: `nice -n 19` then only orders the run's
 * own processes, and two test runs took two thirds of a 2-core machine from the server and Postgres. The
 * session's own nice value (`/proc/<pid>/autogroup`, which an unprivileged process may raise) weighs the
 * whole session, everything it forks included. The child has called setsid before spawn returns (the
 * parent resumes after its exec), so this lands on the run's session. No such file (autogroup not built
 * in, not Linux): nothing to do, and plain niceness already works there.
 */
export function lowerSessionPriority(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/autogroup`, '19')
  } catch {
    // no autogroup scheduling here, or the run is already gone
  }
}

// node:stream/web's ReadableStream is the global one at run time; only the type declarations differ.
const webStream = (pipe: Readable) => Readable.toWeb(pipe) as unknown as ReadableStream<Uint8Array>

const SYSTEM_PATH = '/usr/local/bin:/usr/bin:/bin'

/** The absolute path of an executable on PATH (or an absolute path that exists), else undefined. */
export function findExecutable(nameOrPath: string): string | undefined {
  if (nameOrPath.startsWith('/')) return which(nameOrPath)
  return which(nameOrPath) ?? which(nameOrPath, SYSTEM_PATH)
}

const require = createRequire(import.meta.url)

/**
 * The `bun` binary generated code and its tests run on: the running one when the server is on Bun, else the
 * `bun` dependency's own binary (the server may run on Deno; the generated code is still Bun code).
 */
export function bunExecutable(): string {
  if (process.versions.bun) return process.execPath
  const dependency = resolvePackageFile('bun/package.json')
  return dependency ? join(dependency, '..', 'bin', 'bun.exe') : process.execPath
}

export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0

/** A file inside an installed package (e.g. `typescript/lib/tsc.js`), or undefined when it is not installed. */
export function resolvePackageFile(spec: string): string | undefined {
  try {
    return require.resolve(spec)
  } catch {
    return undefined
  }
}

/** Runs a short command to completion (start-up probes); returns its exit code and stderr. */
export function runProbe(
  cmd: string[],
  timeoutMs = 5000,
): Promise<{ exitCode: number | null; stderr: string }> {
  return new Promise((resolve) => {
    let stderr = ''
    const child = spawn(cmd[0]!, cmd.slice(1), {
      env: {},
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
    })
    child.stderr!.setEncoding('utf8')
    child.stderr!.on('data', (part: string) => {
      stderr += part
    })
    child.once('error', (err) => resolve({ exitCode: null, stderr: err.message }))
    child.once('close', (code, signal) => resolve({ exitCode: signal ? null : code, stderr }))
  })
}
