/** Watching one sandboxed (or limits-only) run: its output, truncated; its wall clock; its cancellation. */
import { recordSandboxRun } from '../../src/core/metrics.ts'
import type { ChildProcess } from './runtime.ts'
import type { ExecResult, SandboxLimits } from './sandbox.ts'

/** Collects truncated output and enforces the wall clock and cancellation on a started child. */
export async function supervise(
  child: ChildProcess,
  limits: SandboxLimits,
  signal?: AbortSignal,
): Promise<ExecResult> {
  const started = performance.now()
  let timedOut = false
  let cancelled = false
  const chunks: Uint8Array[] = []
  let kept = 0
  let dropped = 0
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const reader = stream.getReader()
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) return
        const room = limits.outputBytes - kept
        if (room > 0) {
          const part = value.byteLength > room ? value.subarray(0, room) : value
          chunks.push(part)
          kept += part.byteLength
        }
        dropped += Math.max(0, value.byteLength - Math.max(0, room))
      }
    } catch {
      // the pipe broke when the process was killed
    }
  }
  const kill = () => child.killGroup('SIGKILL')
  const onAbort = () => {
    cancelled = true
    kill()
  }
  if (signal?.aborted) onAbort()
  signal?.addEventListener('abort', onAbort, { once: true })
  const timer = setTimeout(() => {
    timedOut = true
    kill()
  }, limits.wallClockMs)
  const reading = Promise.all([collect(child.stdout), collect(child.stderr)])
  const exitCode = await child.exited
  // Whatever it left behind in its process group goes too; then the pipes close.
  kill()
  await Promise.race([reading, new Promise((r) => setTimeout(r, 1000))])
  clearTimeout(timer)
  signal?.removeEventListener('abort', onAbort)
  let output = Buffer.concat(chunks).toString('utf8')
  if (dropped > 0) output += `\n… [output truncated: ${dropped} more bytes]`
  recordSandboxRun({ exitCode, timedOut, cancelled, truncated: dropped > 0 }, started)
  return {
    exitCode,
    timedOut,
    cancelled,
    output,
    truncated: dropped > 0,
    durationMs: Math.round(performance.now() - started),
  }
}
