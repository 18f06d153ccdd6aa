import { write, writeSync } from 'node:fs'
import pino, { type DestinationStream, type Logger } from 'pino'
import pretty from 'pino-pretty'
import type { LogLevel } from '../config.ts'

export type { Logger }

/** One parsed log record as the live log stream hands it to subscribers. */
export interface LogRecord {
  level: number
  time: number
  msg?: string
  [key: string]: unknown
}

/**
 * Fans the server's own log records out to live subscribers (the admin log stream).
 * Records are only parsed when someone is listening, so an idle hub costs one branch per line.
 */
export class LogHub {
  private readonly subscribers = new Set<(record: LogRecord) => void>()

  subscribe(listener: (record: LogRecord) => void): () => void {
    this.subscribers.add(listener)
    return () => this.subscribers.delete(listener)
  }

  get size(): number {
    return this.subscribers.size
  }

  /** pino calls this for every line; a plain method, not a Node Writable, keeps the idle cost to one branch. */
  write(line: string): void {
    if (!this.subscribers.size) return
    try {
      const record = JSON.parse(line) as LogRecord
      for (const listener of this.subscribers) listener(record)
    } catch {
      // a line that is not JSON is not a record; nothing to fan out
    }
  }
}

/** How long a log line may wait for company before it is written, and how much text makes it go at once. */
const FLUSH_AFTER_MS = 5
const FLUSH_AT_BYTES = 64 * 1024
/** Beyond this much text waiting (a reader that stopped reading), lines are dropped and counted. */
const QUEUE_LIMIT_BYTES = 64 * 1024 * 1024

/**
 * Log lines to a file descriptor, gathered into one asynchronous write every few milliseconds (or at 64 KB): under
 * load one syscall carries hundreds of lines instead of a few, and a slow reader (a full pipe) makes lines queue in
 * memory rather than block. Beyond 64 MB queued, lines are dropped and counted instead of exhausting memory. A
 * line waits at most FLUSH_AFTER_MS; flushSync writes what waits before exit.
 */
export class LineWriter {
  private pending = ''
  private writing = false
  private timer: ReturnType<typeof setTimeout> | undefined = undefined
  dropped = 0

  constructor(
    private readonly fd: number,
    private readonly flushAfterMs = FLUSH_AFTER_MS,
  ) {}

  write(line: string): boolean {
    if (this.pending.length > QUEUE_LIMIT_BYTES) {
      this.dropped++
      return false
    }
    this.pending += line
    if (this.writing) return true
    if (this.pending.length >= FLUSH_AT_BYTES) this.drain()
    else if (this.timer === undefined) {
      this.timer = setTimeout(this.drainSoon, this.flushAfterMs)
      this.timer.unref?.()
    }
    return true
  }

  private readonly drainSoon = () => {
    this.timer = undefined
    this.drain()
  }

  private drain(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    if (this.writing || !this.pending.length) return
    const chunk = this.pending
    this.pending = ''
    this.writing = true
    write(this.fd, chunk, null, 'utf8', (err, written) => {
      this.writing = false
      if (err) {
        // A full non-blocking pipe: keep the text and try again shortly. Anything else: stdout is gone.
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return
        this.pending = chunk + this.pending
      } else if (written < Buffer.byteLength(chunk)) {
        // A partial write: the rest goes first.
        this.pending = Buffer.from(chunk).subarray(written).toString() + this.pending
      }
      if (this.pending.length && this.timer === undefined) {
        this.timer = setTimeout(this.drainSoon, this.flushAfterMs)
        this.timer.unref?.()
      }
    })
  }

  /** Writes everything queued, synchronously; for the last lines before exit. */
  flushSync(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    if (!this.pending.length) return
    const chunk = this.pending
    this.pending = ''
    try {
      writeSync(this.fd, chunk)
    } catch {
      // stdout gone: nothing left to tell
    }
  }
}

/** Keys whose values never reach a log line, wherever they appear. */
export const REDACTED_PATHS = [
  'authorization',
  'cookie',
  'api_key',
  'apiKey',
  'password',
  'ticket',
  '*.authorization',
  '*.cookie',
  '*.api_key',
  '*.apiKey',
  '*.password',
  '*.ticket',
  'headers.authorization',
  'headers.cookie',
  'req.headers.authorization',
  'req.headers.cookie',
]

/** The one line written per HTTP request. */
export interface RequestLine {
  /** An id as the HTTP layer accepts or makes them: word characters, '.', ':' and '-' only (no JSON escaping). */
  reqId: string
  /** An HTTP method as the server's parser hands it over: an RFC 9110 token, which needs no JSON escaping. */
  method: string
  path: string
  status: number
  ms: number | undefined
  /** The caller, once authentication knows it. */
  userId?: string
}

export interface LoggerHandle {
  log: Logger
  hub: LogHub
  /**
   * Logs one request. The hottest log call of the server, so it skips pino's redaction and fan-out: the line is
   * built here from fields that cannot hold a secret (the path has no query string), in pino's own shape.
   */
  logRequest(line: RequestLine): void
  /** Writes out anything buffered; call before exit. */
  flush(): void
}

const INFO = 30
/** Text that needs no escaping inside a JSON string. */
const PLAIN = /^[ !#-[\]-~]*$/
/**
 * A string as JSON. Request ids, methods and paths (percent-encoded by the URL parser) are plain ASCII almost
 * always: a regex test is a fraction of JSON.stringify's cost, which stays for anything else.
 */
const jsonText = (text: string) => (PLAIN.test(text) ? `"${text}"` : JSON.stringify(text))

/**
 * Builds the pino logger: JSON lines to stdout (pretty on a TTY), every record also offered to the LogHub.
 * `destination` replaces stdout (tests capture lines with it).
 */
export function createLogger(level: LogLevel, destination?: DestinationStream): LoggerHandle {
  const hub = new LogHub()
  let out: DestinationStream
  let flush = () => {}
  if (destination) out = destination
  else if (process.stdout.isTTY) out = pretty({ colorize: true, sync: true, translateTime: 'SYS:HH:MM:ss.l' })
  else {
    const writer = new LineWriter(1)
    out = writer
    flush = () => writer.flushSync()
  }
  const log = pino(
    {
      level,
      base: undefined,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      formatters: { level: (label, number) => ({ level: number, lvl: label }) },
    },
    pino.multistream([
      { stream: out, level: 'trace' },
      { stream: hub, level: 'trace' },
    ]),
  )
  const logRequest = (line: RequestLine) => {
    if (line.status >= 500) {
      log.error(line, 'request')
      return
    }
    // levelVal, not isLevelEnabled(): a property read instead of a lookup by name, on every request.
    if (log.levelVal > INFO) return
    const text = `{"level":${INFO},"lvl":"info","time":${Date.now()},"reqId":"${line.reqId}","method":"${line.method}","path":${jsonText(line.path)},"status":${line.status}${line.ms === undefined ? '' : `,"ms":${line.ms}`}${line.userId === undefined ? '' : `,"userId":${jsonText(line.userId)}`},"msg":"request"}\n`
    out.write(text)
    hub.write(text)
  }
  return { log, hub, logRequest, flush }
}
