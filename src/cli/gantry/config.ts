/**
 * Where `gantry` connects and with which key: `--url`/`--key`, else GANTRY_URL/GANTRY_API_KEY, else what
 * `gantry login` stored in $XDG_CONFIG_HOME/gantry/config.json (mode 0600, folder 0700).
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { usageError } from './errors.ts'

export const DEFAULT_URL = 'http://127.0.0.1:9876'

export interface StoredLogin {
  url?: string
  key?: string
}

export interface Connection {
  url: string
  key?: string
  /** Where the URL came from, for error messages: `--url`, `GANTRY_URL`, the config file or the default. */
  urlFrom: string
  keyFrom?: string
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config')
  return join(base, 'gantry', 'config.json')
}

export function readStoredLogin(env: NodeJS.ProcessEnv = process.env): StoredLogin {
  const path = configPath(env)
  if (!existsSync(path)) return {}
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8'))
    return typeof parsed === 'object' && parsed ? parsed : {}
  } catch (err) {
    throw usageError(`${path} is not valid JSON (${(err as Error).message}); fix it or run gantry logout.`)
  }
}

/** Writes the login with owner-only permissions, also when the file or folder already existed. */
export function storeLogin(login: StoredLogin, env: NodeJS.ProcessEnv = process.env): string {
  const path = configPath(env)
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  chmodSync(dirname(path), 0o700)
  writeFileSync(path, `${JSON.stringify(login, null, 2)}\n`, { mode: 0o600 })
  chmodSync(path, 0o600)
  return path
}

export function forgetLogin(env: NodeJS.ProcessEnv = process.env): boolean {
  const path = configPath(env)
  if (!existsSync(path)) return false
  rmSync(path)
  return true
}

export function normalizeUrl(raw: string, from: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`
  let url: URL
  try {
    url = new URL(withScheme)
  } catch {
    throw usageError(`${from} is not a URL: ${JSON.stringify(raw)}`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw usageError(`${from} must be an http:// or https:// URL, not ${url.protocol}`)
  return url.toString().replace(/\/+$/, '')
}

export function resolveConnection(
  flags: { url?: string; key?: string },
  env: NodeJS.ProcessEnv = process.env,
): Connection {
  const stored = flags.url && flags.key ? {} : readStoredLogin(env)
  const [rawUrl, urlFrom] = flags.url
    ? [flags.url, '--url']
    : env.GANTRY_URL
      ? [env.GANTRY_URL, 'GANTRY_URL']
      : stored.url
        ? [stored.url, configPath(env)]
        : [DEFAULT_URL, 'the default URL']
  const [key, keyFrom] = flags.key
    ? [flags.key, '--key']
    : env.GANTRY_API_KEY
      ? [env.GANTRY_API_KEY, 'GANTRY_API_KEY']
      : stored.key
        ? [stored.key, configPath(env)]
        : [undefined, undefined]
  return { url: normalizeUrl(rawUrl, urlFrom), key, urlFrom, keyFrom }
}
