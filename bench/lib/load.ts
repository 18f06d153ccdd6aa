/**
 * Load generation for the benches: wrk when installed (Debian package `wrk`), else a keep-alive fetch loop in
 * a separate Bun process. Either way the load runs in its own process, so server and client each get a core.
 */
import { join } from 'node:path'

export interface LoadResult {
  tool: string
  requests: number
  seconds: number
  rps: number
  p50Ms?: number
  p99Ms?: number
  errors: number
}

export const hasWrk = Bun.which('wrk') !== null

export async function runLoad(opts: {
  url: string
  headers?: Record<string, string>
  connections?: number
  seconds?: number
}): Promise<LoadResult> {
  const connections = opts.connections ?? 64
  const seconds = opts.seconds ?? 5
  if (hasWrk) return runWrk(opts.url, opts.headers ?? {}, connections, seconds)
  const proc = Bun.spawn(
    [
      process.execPath,
      join(import.meta.dir, 'fetch-loop.ts'),
      opts.url,
      JSON.stringify(opts.headers ?? {}),
      String(connections),
      String(seconds),
    ],
    { stdout: 'pipe', stderr: 'inherit' },
  )
  const out = await new Response(proc.stdout).text()
  await proc.exited
  return JSON.parse(out) as LoadResult
}

async function runWrk(
  url: string,
  headers: Record<string, string>,
  connections: number,
  seconds: number,
): Promise<LoadResult> {
  const args = ['wrk', '-t1', `-c${connections}`, `-d${seconds}s`, '--latency']
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`)
  args.push(url)
  const proc = Bun.spawn(args, { stdout: 'pipe', stderr: 'pipe' })
  const out = await new Response(proc.stdout).text()
  await proc.exited
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? Number.NaN)
  const latency = (pct: string) => {
    const m = new RegExp(`${pct}%\\s+([\\d.]+)(us|ms|s)`).exec(out)
    if (!m) return undefined
    const v = Number(m[1])
    return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v
  }
  const requests = num(/(\d+) requests in/)
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0)
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const errors = non2xx + (socketErrors ? socketErrors.slice(1).reduce((a, b) => a + Number(b), 0) : 0)
  return {
    tool: 'wrk',
    requests,
    seconds,
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50Ms: latency('50'),
    p99Ms: latency('99'),
    errors,
  }
}
