import { Elysia } from 'elysia'
import type { Config } from '../config.ts'
import type { Database, Store } from './db.ts'
import type { EventLog } from './events.ts'
import type { Logger, LogHub, RequestLine } from './logger.ts'
import type { ToolRegistry } from './tools.ts'

/** What the loader knows about one plugin; listed by `GET /` and `GET /ready`. */
export interface PluginStatus {
  name: string
  status: 'loaded' | 'failed' | 'disabled'
  optional: boolean
  dependsOn: string[]
  description?: string
  entryPoints?: Record<string, string>
  error?: string
}

/** Closes a live connection (WebSocket, SSE stream) when the server shuts down. */
export type Closer = (code: number, reason: string) => void

/**
 * Everything an app instance owns, handed to plugins as the `gantry` decorator.
 * One per app, so two apps in one process (tests, benchmarks) never share state.
 */
export interface Gantry {
  config: Config
  log: Logger
  logHub: LogHub
  /** One line per HTTP request (the fast path of the logger). */
  logRequest(line: RequestLine): void
  store: Store
  db: Database
  /** The durable event log of task and session streams (append, replay, live subscribe). */
  events: EventLog
  plugins: PluginStatus[]
  /** Live connections to close with 1001 on shutdown. */
  connections: Set<Closer>
  /** Tools (and built-in agents) that plugins offer to models. */
  tools: ToolRegistry
  /** Per-plugin state (runners, caches) keyed by plugin name; set in onStart, cleared in onStop. */
  state: Map<string, unknown>
  /** The public origin of this server as seen by clients (for absolute URLs), when no proxy says otherwise. */
  version: string
  startedAt: Date
  /** Set while shutting down: long-running work stops at a safe point. */
  stopping: boolean
}

/**
 * Named placeholder that types the `gantry` decorator for plugins; `createApp` decorates the real one
 * on the root app before any plugin is used, and Elysia keeps the root's value.
 */
export const gantryContext = new Elysia({ name: 'gantry:context' }).decorate(
  'gantry',
  null as unknown as Gantry,
)

/** The Gantry of an app, for onStart/onStop hooks that receive the app rather than a request context. */
export function gantryOf(app: { decorator: unknown }): Gantry {
  return (app.decorator as { gantry: Gantry }).gantry
}
