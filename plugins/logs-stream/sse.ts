/**
 * Server-Sent Events responses that behave on long-lived connections: never cut by Bun's idle timeout, a
 * keep-alive comment every 15 s, `X-Accel-Buffering: no` for nginx, closed on shutdown with the other live
 * connections, and closed (the client resumes with Last-Event-ID) when a slow reader lets too much pile up.
 */
import type { Gantry } from '../../src/core/context.ts'
import type { ServerHandle } from '../../src/core/runtime.ts'

export const KEEP_ALIVE_MS = 15_000
/** Bytes queued for a reader that does not keep up before its stream is closed. */
export const MAX_QUEUED_BYTES = 1024 * 1024

export interface SseMessage {
  id?: number | string
  event?: string
  data: string
}

export interface SseSink {
  /** Queues one message; false once the stream is closed (or was just closed for a slow reader). */
  send(message: SseMessage): boolean
  close(): void
  readonly closed: boolean
}

const encoder = new TextEncoder()

/** One SSE message; every line of `data` gets its own `data:` field, so newlines survive. */
export function formatSse({ id, event, data }: SseMessage): string {
  let out = ''
  if (event) out += `event: ${event}\n`
  if (id !== undefined) out += `id: ${id}\n`
  for (const line of data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`
  return `${out}\n`
}

/**
 * Streams events to one client. `start` wires the source and returns its cleanup, which runs once, however the
 * stream ends (client gone, `close()`, shutdown).
 */
export function sseResponse(
  gantry: Gantry,
  request: Request,
  start: (sink: SseSink) => (() => void) | undefined,
): Response {
  // Bun's idle timeout would cut a quiet stream; keep-alives are ours to send.
  ;(gantry.state.get('core:server') as ServerHandle | undefined)?.timeout(request, 0)
  const keepAliveMs = (gantry.state.get('logs-stream:keepAliveMs') as number | undefined) ?? KEEP_ALIVE_MS
  let controller!: ReadableStreamDefaultController<Uint8Array>
  let cleanup: (() => void) | undefined
  let keepAlive: ReturnType<typeof setInterval> | undefined
  let closed = false
  const finish = () => {
    if (closed) return
    closed = true
    clearInterval(keepAlive)
    gantry.connections.delete(closer)
    request.signal?.removeEventListener('abort', finish)
    try {
      cleanup?.()
    } catch (err) {
      gantry.log.error({ err }, 'an SSE cleanup threw')
    }
  }
  const closer = () => {
    finish()
    try {
      controller.close()
    } catch {
      // already closed by the client
    }
  }
  const enqueue = (text: string): boolean => {
    if (closed) return false
    try {
      controller.enqueue(encoder.encode(text))
    } catch {
      finish()
      return false
    }
    if ((controller.desiredSize ?? 0) < -MAX_QUEUED_BYTES) {
      // Close first: this very log line may be headed for this stream (the server log follows itself).
      closer()
      gantry.log.info({ path: new URL(request.url).pathname }, 'slow SSE reader closed')
      return false
    }
    return true
  }
  const sink: SseSink = {
    send: (message) => enqueue(formatSse(message)),
    close: closer,
    get closed() {
      return closed
    },
  }
  const body = new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c
        gantry.connections.add(closer)
        request.signal?.addEventListener('abort', finish)
        // A first comment flushes the headers at once, so clients know the stream is open.
        enqueue(': connected\n\n')
        keepAlive = setInterval(() => enqueue(': keep-alive\n\n'), keepAliveMs)
        cleanup = start(sink) ?? undefined
        if (closed) cleanup?.()
      },
      cancel: finish,
    },
    { highWaterMark: 0, size: (chunk) => chunk?.byteLength ?? 0 },
  )
  return new Response(body, {
    headers: {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    },
  })
}
