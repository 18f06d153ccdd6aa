/**
 * The tasks plugin's runtime seam: the Bun-only calls it needs (spawning processes, finding binaries) behind
 * small functions, so the workflow and the sandbox read as plain TypeScript.
 */

export interface ChildProcess {
  pid: number
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>
  stdout: ReadableStream<Uint8Array>
  stderr: ReadableStream<Uint8Array>
  /** Kills the child's whole process group (it is started as a group leader). */
  killGroup(signal?: NodeJS.Signals): void
}

/** Starts `cmd` in its own process group with exactly `env` as its environment. */
export function spawnProcess(
  cmd: string[],
  opts: { cwd: string; env: Record<string, string> },
): ChildProcess {
  const child = Bun.spawn(cmd, {
    cwd: opts.cwd,
    env: opts.env,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    detached: true,
  })
  return {
    pid: child.pid,
    exited: child.exited.then(() => (child.signalCode ? null : child.exitCode)),
    stdout: child.stdout,
    stderr: child.stderr,
    killGroup(signal = 'SIGKILL') {
      try {
        process.kill(-child.pid, signal)
      } catch {
        child.kill(signal) // already gone, or not a group leader after all
      }
    },
  }
}

/** The absolute path of an executable on PATH (or an absolute path that exists), else undefined. */
export function findExecutable(nameOrPath: string): string | undefined {
  if (nameOrPath.startsWith('/')) return Bun.which(nameOrPath) ?? undefined
  return Bun.which(nameOrPath) ?? Bun.which(nameOrPath, { PATH: '/usr/local/bin:/usr/bin:/bin' }) ?? undefined
}

/** The running `bun` binary: generated code and its tests run on the same one. */
export const bunExecutable = (): string => process.execPath

export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0

/** A file inside an installed package (e.g. `typescript/lib/tsc.js`), or undefined when it is not installed. */
export function resolvePackageFile(spec: string): string | undefined {
  try {
    return Bun.resolveSync(spec, import.meta.dir)
  } catch {
    return undefined
  }
}

/** Runs a short command to completion (start-up probes); returns its exit code and stderr. */
export async function runProbe(
  cmd: string[],
  timeoutMs = 5000,
): Promise<{ exitCode: number | null; stderr: string }> {
  try {
    const child = Bun.spawn(cmd, {
      env: {},
      stdin: 'ignore',
      stdout: 'ignore',
      stderr: 'pipe',
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
    })
    const [stderr] = await Promise.all([new Response(child.stderr).text(), child.exited])
    return { exitCode: child.signalCode ? null : child.exitCode, stderr }
  } catch (err) {
    return { exitCode: null, stderr: (err as Error).message }
  }
}
