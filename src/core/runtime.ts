/**
 * The runtime seam: everything that differs between Bun and Deno (serving and listening, WebSocket upgrade,
 * send, backpressure and heartbeat, the client's address, per-request timeouts, static file responses) sits
 * behind these functions, chosen once at load; runtime/bun.ts and runtime/deno.ts hold the two sides. Package
 * resolution and processes use `node:` modules, which both runtimes have.
 */
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { Elysia } from 'elysia'
import { bunFileResponse, bunFreeLoopbackPort, bunRuntimeName, listenBun } from './runtime/bun.ts'
import { denoFileResponse, denoFreeLoopbackPort, denoRuntimeName, listenDeno } from './runtime/deno.ts'
import type { ListenOptions, ServerHandle } from './runtime/types.ts'

export type {
  ServerHandle,
  SocketHandler,
  SocketPeer,
  UpgradeOptions,
} from './runtime/types.ts'

/** True when running on Deno (Elysia then uses its Web-standard adapter). */
export const onDeno = 'Deno' in globalThis

export const runtimeName = onDeno
  ? denoRuntimeName()
  : typeof Bun !== 'undefined'
    ? bunRuntimeName()
    : 'unknown'

/** Starts serving an Elysia app. Start hooks are the caller's business (see lifecycle in src/server.ts). */
export function listen(app: Elysia<any, any, any, any, any, any, any>, opts: ListenOptions): ServerHandle {
  return onDeno ? listenDeno(app, opts) : listenBun(app, opts)
}

/**
 * A file as a streaming Response with its content type (from the name, as browsers need for ES modules), or 404
 * when it is missing. For a folder of assets, find the file with `fileInFolder` first.
 */
export const fileResponse: (path: string, cacheControl?: string) => Response = onDeno
  ? denoFileResponse
  : bunFileResponse

/** A TCP port on 127.0.0.1 that was free a moment ago (the caller retries if another process takes it). */
export const freeLoopbackPort: () => number = onDeno ? denoFreeLoopbackPort : bunFreeLoopbackPort

/**
 * The folder of an installed npm package (for serving its assets): the nearest node_modules that has it, as
 * Node resolves. By folder rather than `require.resolve`: packages whose `exports` omit package.json refuse that.
 */
export function packageDir(name: string): string {
  for (let dir = import.meta.dirname; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name)
    if (existsSync(join(candidate, 'package.json'))) return candidate
    if (dirname(dir) === dir) throw new Error(`package ${name} is not installed`)
  }
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
