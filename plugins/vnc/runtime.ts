/**
 * The vnc plugin's process and network helpers: process groups, PATH lookups and loopback TCP, over `node:`
 * modules that Bun and Deno both have. Everything else (supervisor, routes, bridge) works on these functions.
 */

import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { constants as osConstants } from 'node:os'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { which } from '../../src/core/which.ts'

export { freeLoopbackPort, processAlive } from '../../src/core/runtime.ts'

/** A process started in its own process group, so that stopping it stops everything it started. */
export interface GroupProcess {
  pid: number
  /** Resolves with the exit code (or 128 + signal) once the process is gone. */
  exited: Promise<number>
  /** True once the process has exited. */
  hasExited(): boolean
  /** The signal that ended it, if one did. */
  signalCode(): string | null
  /** The last lines it wrote to stderr (and stdout unless it is read with `lines`), for errors and logs. */
  tail(): string[]
  /** Lines of stdout as they come (only when spawned with `readStdout`). */
  lines?: AsyncIterable<string>
}

const TAIL_LINES = 20

async function drain(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder()
  let pending = ''
  const reader = stream.getReader()
  try {
    for (;;) {
      const { value: chunk, done } = await reader.read()
      if (done) break
      pending += decoder.decode(chunk, { stream: true })
      const parts = pending.split('\n')
      pending = parts.pop() ?? ''
      for (const line of parts) if (line.trim()) onLine(line)
    }
  } catch {
    // the pipe closed with the process
  }
  if (pending.trim()) onLine(pending)
}

/** An async queue of lines that ends when the stream ends. */
function lineQueue() {
  const buffered: string[] = []
  let waiting: ((r: IteratorResult<string>) => void) | undefined
  let ended = false
  return {
    push(line: string) {
      if (waiting) {
        const w = waiting
        waiting = undefined
        w({ value: line, done: false })
      } else if (buffered.length < 1000) buffered.push(line)
    },
    end() {
      ended = true
      waiting?.({ value: undefined, done: true })
      waiting = undefined
    },
    iterable: {
      [Symbol.asyncIterator]: () => ({
        next: () =>
          new Promise<IteratorResult<string>>((resolve) => {
            if (buffered.length) resolve({ value: buffered.shift()!, done: false })
            else if (ended) resolve({ value: undefined, done: true })
            else waiting = resolve
          }),
      }),
    } as AsyncIterable<string>,
  }
}

/** The exit code, or 128 + the signal's number when a signal ended it (the shell's convention). */
function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code
  return 128 + ((signal && osConstants.signals[signal]) || 0)
}

/** An environment without unset entries (`{...process.env, X: undefined}` means "without X"). */
function definedEnv(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(env)) if (value !== undefined) out[key] = value
  return out
}

// node:stream/web's ReadableStream is the global one at run time; only the type declarations differ.
const webStream = (pipe: Readable) => Readable.toWeb(pipe) as unknown as ReadableStream<Uint8Array>

/**
 * Starts `argv` as the leader of a new process group (setsid). Its output is always drained (a full pipe
 * would stall it) into a short tail kept for error messages.
 */
export function spawnGroup(
  argv: string[],
  opts: { env?: Record<string, string | undefined>; readStdout?: boolean } = {},
): GroupProcess {
  const proc = spawn(argv[0]!, argv.slice(1), {
    env: definedEnv(opts.env ?? process.env),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  const tail: string[] = []
  const remember = (line: string) => {
    tail.push(line.length > 300 ? `${line.slice(0, 300)}…` : line)
    if (tail.length > TAIL_LINES) tail.shift()
  }
  const queue = opts.readStdout ? lineQueue() : undefined
  const stdoutDone = drain(webStream(proc.stdout!), queue ? (line) => queue.push(line) : remember)
  const stderrDone = drain(webStream(proc.stderr!), remember)
  if (queue) stdoutDone.finally(() => queue.end())
  let ended = false
  const exited = new Promise<number>((resolve) => {
    proc.once('exit', (code, signal) => {
      ended = true
      resolve(exitStatus(code, signal))
    })
    proc.once('error', (err) => {
      // Could not start (no such binary): an exit like the shell's, with the reason in the tail.
      ended = true
      remember(err.message)
      resolve(127)
    })
  }).then(async (code) => {
    // Let the last words reach the tail before anyone reads why it exited.
    await Promise.race([Promise.all([stdoutDone, stderrDone]), sleep(200)])
    return code
  })
  return {
    pid: proc.pid ?? 0,
    exited,
    hasExited: () => ended || proc.exitCode !== null || proc.signalCode !== null,
    signalCode: () => proc.signalCode ?? null,
    tail: () => [...tail],
    lines: queue?.iterable,
  }
}

/** Sends a signal to a whole process group; false when the group is already gone. */
export function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal)
    return true
  } catch {
    return false
  }
}

/** The absolute path of an executable on `PATH`, or null. */
export function findBinary(name: string, path = process.env.PATH ?? ''): string | null {
  return which(name, path) ?? null
}

export interface TcpConnection {
  /** Writes everything, queueing what the socket does not take at once. */
  write(data: Uint8Array): void
  /** Stops reading until `resume` (backpressure from the other side). */
  pause(): void
  resume(): void
  end(): void
}

/** Connects to a loopback TCP port; handlers see data as it arrives and the close exactly once. */
export function connectTcp(
  port: number,
  handlers: { data(chunk: Uint8Array): void; close(error?: Error): void },
  hostname = '127.0.0.1',
): Promise<TcpConnection> {
  let closed = false
  const close = (error?: Error) => {
    if (closed) return
    closed = true
    handlers.close(error)
  }
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port, noDelay: true })
    socket.on('data', (chunk: Buffer) => handlers.data(chunk))
    socket.once('error', (err) => {
      close(err)
      reject(err)
    })
    // allowHalfOpen is off: the peer's end ends this side too, then 'close' follows.
    socket.once('close', () => close())
    socket.once('connect', () =>
      resolve({
        // node:net queues what the kernel does not take at once, in order.
        write(data) {
          if (!closed) socket.write(data)
        },
        pause: () => socket.pause(),
        resume: () => socket.resume(),
        end: () => {
          socket.end()
          close()
        },
      }),
    )
  })
}

/**
 * Reads the first bytes a TCP server sends on connect (an RFB server's banner), or null when nothing answers
 * within `timeoutMs`.
 */
export async function readBanner(port: number, bytes: number, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    let received = Buffer.alloc(0)
    let done = false
    const socket = connect({ host: '127.0.0.1', port })
    const finish = (value: string | null) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      resolve(value)
    }
    const timer = setTimeout(() => finish(null), timeoutMs)
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      if (received.byteLength >= bytes) finish(received.subarray(0, bytes).toString('utf8'))
    })
    socket.once('close', () => finish(null))
    socket.once('error', () => finish(null))
  })
}

/** Runs a short command to completion and captures its output (screenshots, xdotool actions). */
export async function runCommand(
  argv: string[],
  opts: { env?: Record<string, string | undefined>; timeoutMs: number; signal?: AbortSignal },
): Promise<{ code: number; stdout: Uint8Array; stderr: string; timedOut: boolean }> {
  const proc = spawn(argv[0]!, argv.slice(1), {
    env: definedEnv(opts.env ?? process.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let timedOut = false
  const kill = () => proc.kill('SIGKILL')
  const timer = setTimeout(() => {
    timedOut = true
    kill()
  }, opts.timeoutMs)
  opts.signal?.addEventListener('abort', kill, { once: true })
  const stdout: Buffer[] = []
  let stderr = ''
  proc.stdout!.on('data', (chunk: Buffer) => stdout.push(chunk))
  proc.stderr!.setEncoding('utf8')
  proc.stderr!.on('data', (part: string) => {
    stderr += part
  })
  try {
    // 'close' comes after the exit and after both pipes have ended, so the output is complete.
    const code = await new Promise<number>((resolve, reject) => {
      proc.once('error', reject)
      proc.once('close', (c, signal) => resolve(exitStatus(c, signal)))
    })
    return { code, stdout: new Uint8Array(Buffer.concat(stdout)), stderr, timedOut }
  } finally {
    clearTimeout(timer)
    opts.signal?.removeEventListener('abort', kill)
  }
}

/** Whether a live process has `entry` (NAME=value) in its environment; Linux /proc, false elsewhere. */
export function processHasEnv(pid: number, entry: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(entry)
  } catch {
    return false
  }
}
