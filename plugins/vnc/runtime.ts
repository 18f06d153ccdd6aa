/**
 * The vnc plugin's runtime seam: process groups, PATH lookups and loopback TCP, the only Bun-only APIs the
 * plugin uses. Everything else (supervisor, routes, bridge) works on these small functions.
 */

import { readFileSync } from 'node:fs'

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

/**
 * Starts `argv` as the leader of a new process group (setsid). Its output is always drained (a full pipe
 * would stall it) into a short tail kept for error messages.
 */
export function spawnGroup(
  argv: string[],
  opts: { env?: Record<string, string | undefined>; readStdout?: boolean } = {},
): GroupProcess {
  const proc = Bun.spawn(argv, {
    env: opts.env ?? process.env,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    detached: true,
  })
  const tail: string[] = []
  const remember = (line: string) => {
    tail.push(line.length > 300 ? `${line.slice(0, 300)}…` : line)
    if (tail.length > TAIL_LINES) tail.shift()
  }
  const queue = opts.readStdout ? lineQueue() : undefined
  const stdoutDone = drain(proc.stdout, queue ? (line) => queue.push(line) : remember)
  const stderrDone = drain(proc.stderr, remember)
  if (queue) stdoutDone.finally(() => queue.end())
  const exited = proc.exited.then(async (code) => {
    // Let the last words reach the tail before anyone reads why it exited.
    await Promise.race([Promise.all([stdoutDone, stderrDone]), Bun.sleep(200)])
    return code
  })
  return {
    pid: proc.pid,
    exited,
    hasExited: () => proc.exitCode !== null || proc.signalCode !== null,
    signalCode: () => (proc.signalCode === null ? null : String(proc.signalCode)),
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
  return Bun.which(name, { PATH: path })
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
  let queued: Uint8Array[] = []
  let closed = false
  const close = (error?: Error) => {
    if (closed) return
    closed = true
    queued = []
    handlers.close(error)
  }
  const flush = (socket: import('bun').Socket<undefined>) => {
    while (queued.length) {
      const head = queued[0]!
      const written = socket.write(head)
      if (written < head.byteLength) {
        queued[0] = head.subarray(Math.max(written, 0))
        return
      }
      queued.shift()
    }
  }
  return Bun.connect({
    hostname,
    port,
    socket: {
      data: (_s, chunk) => handlers.data(chunk),
      drain: (s) => flush(s),
      close: () => close(),
      error: (_s, err) => close(err),
      connectError: (_s, err) => close(err),
      end: (s) => {
        s.end()
        close()
      },
    },
  }).then((socket) => {
    socket.setNoDelay(true)
    return {
      write(data) {
        if (closed) return
        queued.push(data)
        if (queued.length === 1) flush(socket)
      },
      pause: () => socket.pause(),
      resume: () => socket.resume(),
      end: () => {
        socket.end()
        close()
      },
    }
  })
}

/**
 * Reads the first bytes a TCP server sends on connect (an RFB server's banner), or null when nothing answers
 * within `timeoutMs`.
 */
export async function readBanner(port: number, bytes: number, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    let received = new Uint8Array(0)
    let done = false
    let socketRef: import('bun').Socket<undefined> | undefined
    const finish = (value: string | null) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socketRef?.end()
      resolve(value)
    }
    const timer = setTimeout(() => finish(null), timeoutMs)
    Bun.connect({
      hostname: '127.0.0.1',
      port,
      socket: {
        open: (s) => {
          socketRef = s
        },
        data: (_s, chunk) => {
          const next = new Uint8Array(received.byteLength + chunk.byteLength)
          next.set(received)
          next.set(chunk, received.byteLength)
          received = next
          if (received.byteLength >= bytes) finish(new TextDecoder().decode(received.subarray(0, bytes)))
        },
        close: () => finish(null),
        error: () => finish(null),
        connectError: () => finish(null),
      },
    }).catch(() => finish(null))
  })
}

/** Runs a short command to completion and captures its output (screenshots, xdotool actions). */
export async function runCommand(
  argv: string[],
  opts: { env?: Record<string, string | undefined>; timeoutMs: number; signal?: AbortSignal },
): Promise<{ code: number; stdout: Uint8Array; stderr: string; timedOut: boolean }> {
  const proc = Bun.spawn(argv, {
    env: opts.env ?? process.env,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  let timedOut = false
  const kill = () => proc.kill('SIGKILL')
  const timer = setTimeout(() => {
    timedOut = true
    kill()
  }, opts.timeoutMs)
  opts.signal?.addEventListener('abort', kill, { once: true })
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).arrayBuffer(),
      new Response(proc.stderr).text(),
      proc.exited,
    ])
    return { code, stdout: new Uint8Array(stdout), stderr, timedOut }
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
