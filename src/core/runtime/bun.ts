/**
 * Bun's side of the runtime seam: Elysia's own Bun adapter serves the app (the fastest path, unchanged), and
 * Bun's `ServerWebSocket` is the socket peer as it is, with no wrapper per connection.
 */
import type { Elysia } from 'elysia'
import type { ListenOptions, ServerHandle } from './types.ts'

export const bunRuntimeName = () => `bun ${Bun.version}`

/** Starts serving an Elysia app. Start hooks are the caller's business (see lifecycle in src/server.ts). */
export function listenBun(app: Elysia<any, any, any, any, any, any, any>, opts: ListenOptions): ServerHandle {
  app.listen({
    port: opts.port,
    hostname: opts.hostname,
    // A second instance on a taken port must fail loudly rather than silently share it.
    reusePort: false,
    // Bun answers bodies past this itself, in plain text; the caller sets it beyond BODY_LIMIT_BYTES so that the
    // HTTP layer's JSON 413 is the one clients see.
    maxRequestBodySize: opts.maxRequestBodySize,
    idleTimeout: opts.idleTimeoutSeconds ?? 60,
    development: false,
  })
  const server = app.server!
  return {
    port: server.port!,
    hostname: server.hostname!,
    requestIP: (request) => server.requestIP(request),
    timeout: (request, seconds) => server.timeout(request, seconds),
    // Elysia's server-wide WebSocket handler calls `ws.data.open(ws)`, `.message(ws, m)`, `.close(ws, code,
    // reason)`, `.pong(ws)` and `.drain(ws)`: with the handler as `ws.data`, they reach it directly. The answer
    // is never sent: Bun has taken the connection over.
    upgrade: (request, handler, options) =>
      server.upgrade(request, { data: handler, headers: options?.headers }) ? '' : undefined,
    // The native fan-out of WS /ws/:id to the sockets that are caught up (plugins/websocket/stream-hub.ts).
    publish: (topic, data) => server.publish(topic, data),
    stop: (force) => server.stop(force),
  }
}

/** A file as a streaming Response; Bun answers 404 itself when it is missing. */
export function bunFileResponse(path: string, cacheControl?: string): Response {
  const file = Bun.file(path)
  return new Response(file, {
    headers: cacheControl
      ? { 'cache-control': cacheControl, 'content-type': file.type }
      : { 'content-type': file.type },
  })
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function bunFreeLoopbackPort(): number {
  const listener = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  const port = listener.port
  listener.stop(true)
  return port
}
