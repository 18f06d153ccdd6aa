/** Starts a bench server in a child process and returns its URL; `stop()` ends it. */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

export async function startServerProcess(
  script: string,
  args: string[] = [],
  env: Record<string, string> = {},
) {
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, '..', script), ...args], {
    stdout: 'pipe',
    stderr: 'inherit',
    env: { ...process.env, ...env },
  })
  const reader = proc.stdout.getReader()
  let buffered = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) throw new Error(`${script} exited before it was ready`)
    buffered += new TextDecoder().decode(value)
    const m = /READY (\S+)(?: (\S+))?\n/.exec(buffered)
    if (m) {
      // Keep draining so the child never blocks on a full pipe.
      ;(async () => {
        for (;;) if ((await reader.read()).done) break
      })()
      return {
        url: m[1]!,
        extra: m[2],
        pid: proc.pid,
        stop: async () => {
          proc.kill('SIGTERM')
          await proc.exited
        },
      }
    }
  }
}

const TICKS_PER_SECOND = 100 // USER_HZ on Linux

/** CPU time (user + system) a process has used so far, in microseconds; undefined off Linux. */
export async function cpuMicros(pid: number): Promise<number | undefined> {
  try {
    // /proc files report size 0, so read them the plain way rather than through Bun.file.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND) * 1e6
  } catch {
    return undefined
  }
}
