import { resolve } from 'node:path'

/**
 * Gantry's settings, read from the environment once at start.
 * Every variable is listed (with its default and what it accepts) in `.env.example`.
 */
export interface Config {
  port: number
  host: string
  databaseUrl: string | undefined
  dataDir: string
  ollamaHost: string
  ollamaModel: string
  adminApiKey: string | undefined
  logLevel: LogLevel
  pluginsDisabled: string[]
  pluginsDir: string
  corsOrigins: string[]
  taskConcurrency: number
  heartbeatIntervalMs: number
  shutdownTimeoutMs: number
  bodyLimitBytes: number
  trustedProxies: string[]
  dbConnectTimeoutMs: number
  codeExecution: 'sandbox' | 'unsandboxed' | 'off'
  /** bubblewrap's name on PATH or its absolute path (CODE_EXECUTION=sandbox). */
  sandboxBwrap: string
  /** Wall-clock limit for one run of generated code (tests or type check). */
  sandboxTimeoutMs: number
  /** Lease of a running task/generation job: another instance takes it over this long after its runner died. */
  jobLeaseMs: number
  sessionTtlDays: number
  /** Finished tasks older than this many days are deleted with their events, logs and modules; 0 keeps all. */
  taskTtlDays: number
  /** Roles that may view and drive the agent desktop (VNC). */
  vncAllowedRoles: Array<'admin' | 'user'>
  /** A bearer token Prometheus may scrape GET /metrics with (admins may always). */
  metricsToken: string | undefined
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** Thrown when one or more variables are invalid; `problems` names each variable and what it accepts. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
  }
}

type Env = Record<string, string | undefined>
type Parser<T> = (raw: string) => T

const integer =
  (min: number, max: number): Parser<number> =>
  (raw) => {
    if (!/^-?\d+$/.test(raw.trim())) throw new Error(`an integer from ${min} to ${max}`)
    const n = Number(raw)
    if (n < min || n > max) throw new Error(`an integer from ${min} to ${max}`)
    return n
  }

const oneOf =
  <T extends string>(values: readonly T[]): Parser<T> =>
  (raw) => {
    const v = raw.trim().toLowerCase() as T
    if (!values.includes(v)) throw new Error(`one of ${values.join(', ')}`)
    return v
  }

const list: Parser<string[]> = (raw) =>
  raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)

const roles: Parser<Array<'admin' | 'user'>> = (raw) => {
  const items = list(raw)
  for (const item of items)
    if (item !== 'admin' && item !== 'user')
      throw new Error(`a comma list of roles (admin, user); "${item}" is not one`)
  return items as Array<'admin' | 'user'>
}

const postgresUrl: Parser<string> = (raw) => {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new Error('a postgres:// or postgresql:// URL, e.g. postgres://user:pass@127.0.0.1:5432/gantry')
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:')
    throw new Error('a postgres:// or postgresql:// URL, e.g. postgres://user:pass@127.0.0.1:5432/gantry')
  return raw
}

/** Ollama itself accepts `host:port` without a scheme; so do we. */
const httpUrl: Parser<string> = (raw) => {
  const withScheme = /^[a-z]+:\/\//i.test(raw) ? raw : `http://${raw}`
  let url: URL
  try {
    url = new URL(withScheme)
  } catch {
    throw new Error('an http(s) URL or host:port, e.g. http://127.0.0.1:11434')
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname)
    throw new Error('an http(s) URL or host:port, e.g. http://127.0.0.1:11434')
  return withScheme.replace(/\/+$/, '')
}

const origins: Parser<string[]> = (raw) => {
  const items = list(raw)
  for (const item of items) {
    if (item === '*') continue
    try {
      const u = new URL(item)
      if (u.origin !== item.replace(/\/$/, '')) throw new Error()
    } catch {
      throw new Error(`a comma list of origins like https://gantry.lan:8443 (or *); "${item}" is not one`)
    }
  }
  return items.map((o) => o.replace(/\/$/, ''))
}

const apiKey: Parser<string> = (raw) => {
  if (raw.length < 16 || /\s/.test(raw)) throw new Error('at least 16 characters with no spaces')
  return raw
}

const nonEmpty: Parser<string> = (raw) => {
  if (!raw.trim()) throw new Error('a non-empty value')
  return raw.trim()
}

/**
 * Parses the environment. Throws a ConfigError listing every invalid variable.
 * @example loadConfig({ PORT: '0', DATA_DIR: '/tmp/g' })
 */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = []
  function read<T>(name: string, parse: Parser<T>, fallback: T): T {
    const raw = env[name]
    if (raw === undefined || raw === '') return fallback
    try {
      return parse(raw)
    } catch (err) {
      problems.push(`${name}=${JSON.stringify(raw)} is invalid: expected ${(err as Error).message}`)
      return fallback
    }
  }
  const root = resolve(import.meta.dirname, '..')
  const config: Config = {
    port: read('PORT', integer(0, 65535), 9876),
    host: read('HOST', nonEmpty, '0.0.0.0'),
    databaseUrl: read<string | undefined>('DATABASE_URL', postgresUrl, undefined),
    dataDir: resolve(read('DATA_DIR', nonEmpty, './data')),
    ollamaHost: read('OLLAMA_HOST', httpUrl, 'http://127.0.0.1:11434'),
    ollamaModel: read('OLLAMA_MODEL', nonEmpty, 'llama3.2'),
    adminApiKey: read<string | undefined>('ADMIN_API_KEY', apiKey, undefined),
    logLevel: read('LOG_LEVEL', oneOf(LOG_LEVELS), 'info'),
    pluginsDisabled: read('PLUGINS_DISABLED', list, []),
    pluginsDir: resolve(read('PLUGINS_DIR', nonEmpty, resolve(root, 'plugins'))),
    corsOrigins: read('CORS_ORIGINS', origins, []),
    taskConcurrency: read('TASK_CONCURRENCY', integer(1, 256), 4),
    heartbeatIntervalMs: read('HEARTBEAT_INTERVAL_MS', integer(100, 600_000), 30_000),
    shutdownTimeoutMs: read('SHUTDOWN_TIMEOUT_MS', integer(100, 600_000), 10_000),
    bodyLimitBytes: read('BODY_LIMIT_BYTES', integer(1024, 512 * 1024 * 1024), 1024 * 1024),
    trustedProxies: read('TRUSTED_PROXIES', list, ['loopback']),
    dbConnectTimeoutMs: read('DB_CONNECT_TIMEOUT_MS', integer(0, 3_600_000), 30_000),
    codeExecution: read('CODE_EXECUTION', oneOf(['sandbox', 'unsandboxed', 'off'] as const), 'sandbox'),
    sandboxBwrap: read('SANDBOX_BWRAP', nonEmpty, 'bwrap'),
    sandboxTimeoutMs: read('SANDBOX_TIMEOUT_MS', integer(1000, 600_000), 30_000),
    jobLeaseMs: read('JOB_LEASE_MS', integer(300, 600_000), 30_000),
    sessionTtlDays: read('SESSION_TTL_DAYS', integer(0, 36_500), 30),
    taskTtlDays: read('TASK_TTL_DAYS', integer(0, 36_500), 0),
    vncAllowedRoles: read('VNC_ALLOWED_ROLES', roles, ['admin']),
    metricsToken: read<string | undefined>('METRICS_TOKEN', apiKey, undefined),
  }
  if (problems.length) throw new ConfigError(problems)
  return config
}
