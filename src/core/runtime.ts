/**
 * The runtime seam: every Bun-only API the core and plugins need (serving, files, processes, TCP) sits here,
 * behind small functions over Web-standard types, so another runtime (Deno) needs only this file redone.
 */
import { dirname, join } from 'node:path'
import type { Elysia } from 'elysia'

export const runtimeName = typeof Bun !== 'undefined' ? `bun ${Bun.version}` : 'unknown'

export interface ServerHandle {
  port: number
  hostname: string
  requestIP(request: Request): { address: string } | null
  /** Per-request idle timeout in seconds (0 = none), for streams that stay open (SSE). */
  timeout(request: Request, seconds: number): void
  /** Stops accepting; `force` also closes open connections. */
  stop(force: boolean): Promise<void>
}

/** Starts serving an Elysia app. Start hooks are the caller's business (see lifecycle in src/server.ts). */
export function listen(
  app: Elysia<any, any, any, any, any, any, any>,
  opts: { port: number; hostname: string; maxRequestBodySize: number; idleTimeoutSeconds?: number },
): ServerHandle {
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
    stop: (force) => server.stop(force),
  }
}

/** A file as a streaming Response, or 404 when it is missing. */
export function fileResponse(path: string, cacheControl?: string): Response {
  const file = Bun.file(path)
  return new Response(file, {
    headers: cacheControl
      ? { 'cache-control': cacheControl, 'content-type': file.type }
      : { 'content-type': file.type },
  })
}

/** The folder of an installed npm package (for serving its assets). */
export function packageDir(name: string): string {
  return dirname(Bun.resolveSync(join(name, 'package.json'), import.meta.dir))
}

/** True while a process with this pid exists. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the caller retries if another process takes it). */
export function freeLoopbackPort(): number {
  const listener = Bun.listen({
    hostname: '127.0.0.1',
    port: 0,
    socket: { data() {} },
  })
  const port = listener.port
  listener.stop(true)
  return port
}
