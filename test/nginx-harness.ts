/**
 * The project's own nginx.conf run through a real nginx on this machine. Only what a test machine lacks is swapped
 * (the upstream addresses, the listen ports, the certificate and log paths); every replacement must hit, so a
 * changed nginx.conf cannot silently escape the tests that use it (test/nginx.test.ts, test/deployment*.test.ts,
 * bench/proxy.bench.ts).
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freeLoopbackPort, ROOT, waitFor } from './helpers.ts'

export const HAVE_NGINX = Boolean(Bun.which('nginx') && Bun.which('openssl'))

function swap(text: string, from: string | RegExp, to: string | ((...match: string[]) => string)): string {
  const hit = typeof from === 'string' ? text.includes(from) : from.test(text)
  if (!hit) throw new Error(`nginx.conf no longer contains ${String(from)}`)
  return typeof from === 'string'
    ? text.replaceAll(from, to as string)
    : text.replace(from, to as (...m: string[]) => string)
}

/** The shipped upstream line: `server gantry:9876 <parameters>;`, the one a deployment lists per instance. */
const UPSTREAM_SERVER = /^(\s*)server gantry:9876( [^;\n]*)?;$/m

export interface NginxPorts {
  /** One loopback port per Gantry instance: each becomes a `server` line of the upstream, with the shipped parameters. */
  upstreams: number[]
  http: number
  https: number
}

export interface NginxOptions {
  /**
   * false lifts the per-client rate limits (the `limit_req zone=api` lines), and only them: a benchmark's load
   * comes from one address and would measure nginx's 429s. Tests keep them.
   */
  rateLimits?: boolean
}

/** nginx.conf for this machine: loopback ports, a test certificate, logs in `dir`. */
export function localConf(dir: string, ports: NginxPorts, opts: NginxOptions = {}): string {
  let conf = readFileSync(join(ROOT, 'nginx.conf'), 'utf8')
  if (opts.rateLimits === false) conf = swap(conf, /^\s*limit_req zone=api [^;\n]*;\n/gm, '')
  conf = swap(conf, UPSTREAM_SERVER, (_line, indent = '', params = '') =>
    ports.upstreams.map((port) => `${indent}server 127.0.0.1:${port}${params};`).join('\n'),
  )
  conf = swap(conf, 'listen 80;', `listen 127.0.0.1:${ports.http};`)
  conf = swap(conf, 'listen 443 ssl http2;', `listen 127.0.0.1:${ports.https} ssl http2;`)
  conf = swap(conf, '/etc/nginx/certs', dir)
  conf = swap(conf, 'access_log    /dev/stdout;', `access_log ${dir}/access.log;`)
  conf = swap(conf, 'error_log     /dev/stderr warn;', `error_log ${dir}/error.log warn;`)
  return conf
}

/** A self-signed certificate for 127.0.0.1 and localhost in `dir` (fullchain.pem, privkey.pem); returns it. */
export function makeCertificate(dir: string): string {
  const made = Bun.spawnSync(
    [
      'openssl',
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout',
      join(dir, 'privkey.pem'),
      '-out',
      join(dir, 'fullchain.pem'),
    ],
    { stderr: 'pipe' },
  )
  if (made.exitCode !== 0) throw new Error(`openssl: ${made.stderr.toString()}`)
  return readFileSync(join(dir, 'fullchain.pem'), 'utf8')
}

/** nginx's -g: no daemon, our pid file, and workers as root when we are root (the temp dir is ours alone). */
export const globals = (dir: string) =>
  `daemon off; pid ${dir}/nginx.pid;${process.getuid?.() === 0 ? ' user root;' : ''}`

export interface RunningNginx {
  proc: ReturnType<typeof Bun.spawn>
  dir: string
  /** `http://127.0.0.1:<port>` (redirects to HTTPS). */
  http: string
  /** `https://127.0.0.1:<port>`. */
  https: string
  /** The certificate, to trust as `tls: { ca }`. */
  ca: string
  /** fetch through nginx over HTTPS, trusting the test certificate. */
  get(path: string, init?: RequestInit): Promise<Response>
  /** `nginx -t` on the written config: stderr and exit code. */
  check(): { stderr: string; exitCode: number }
  accessLog(): string
  errorLog(): string
  stop(): Promise<void>
}

/**
 * Writes nginx.conf for `upstreams` into `dir` (a certificate too), starts nginx on two free loopback ports and
 * waits until GET /health answers 200 through it (so at least one upstream must be up).
 */
export async function startNginx(
  dir: string,
  upstreams: number[],
  opts: NginxOptions = {},
): Promise<RunningNginx> {
  const ca = makeCertificate(dir)
  const ports = { upstreams, http: freeLoopbackPort(), https: freeLoopbackPort() }
  const confPath = join(dir, 'nginx.conf')
  writeFileSync(confPath, localConf(dir, ports, opts))
  const proc = Bun.spawn(['nginx', '-p', dir, '-c', confPath, '-g', globals(dir)], {
    stdout: 'ignore',
    stderr: 'pipe',
  })
  const https = `https://127.0.0.1:${ports.https}`
  const get = (path: string, init: RequestInit = {}) => fetch(https + path, { ...init, tls: { ca } } as any)
  const read = (name: string) => {
    try {
      return readFileSync(join(dir, name), 'utf8')
    } catch {
      return ''
    }
  }
  const stop = async () => {
    if (proc.exitCode === null) proc.kill('SIGTERM')
    await proc.exited
  }
  try {
    await waitFor(
      async () => {
        if (proc.exitCode !== null)
          throw new Error(`nginx exited: ${await new Response(proc.stderr as any).text()}`)
        return (await get('/health').catch(() => undefined))?.status === 200
      },
      10_000,
      'nginx to proxy /health',
    )
  } catch (err) {
    await stop()
    throw err
  }
  return {
    proc,
    dir,
    http: `http://127.0.0.1:${ports.http}`,
    https,
    ca,
    get,
    check() {
      const run = Bun.spawnSync(['nginx', '-t', '-p', dir, '-c', confPath, '-g', `pid ${dir}/t.pid;`], {
        stderr: 'pipe',
      })
      return { stderr: run.stderr.toString(), exitCode: run.exitCode }
    },
    accessLog: () => read('access.log'),
    errorLog: () => read('error.log'),
    stop,
  }
}
