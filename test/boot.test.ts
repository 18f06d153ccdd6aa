/**
 * The process as a user runs it: `bun src/index.ts` with an environment, observed from outside
 * (exit codes, stderr, signals, files), against PGlite on disk.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawnGantry as spawn } from './gantry-process.ts'
import { tempDir, waitFor } from './helpers.ts'

const ELYSIA = JSON.stringify(import.meta.resolve('elysia'))
const cleanup: string[] = []
afterAll(() => {
  for (const d of cleanup) rmSync(d, { recursive: true, force: true })
})

/** At info level: these tests read the log lines on stdout. */
const start = (env: Record<string, string>) => spawn({ LOG_LEVEL: 'info', ...env })

function workDir(plugins: Record<string, string> = {}) {
  const dir = tempDir('gantry-boot-')
  cleanup.push(dir)
  const pluginsDir = join(dir, 'plugins')
  mkdirSync(pluginsDir)
  for (const [name, source] of Object.entries(plugins)) {
    mkdirSync(join(pluginsDir, name))
    writeFileSync(join(pluginsDir, name, 'index.ts'), source)
  }
  return { dataDir: join(dir, 'data'), pluginsDir, marker: join(dir, 'marker') }
}

describe('start-up errors', () => {
  test.each([
    [{ PORT: '70000' }, 'PORT="70000" is invalid: expected an integer from 0 to 65535'],
    [{ DATABASE_URL: 'mysql://root@localhost/db' }, 'DATABASE_URL'],
    [{ OLLAMA_HOST: 'not a url at all' }, 'OLLAMA_HOST'],
  ])('invalid %o stops with exit 2 naming the variable', async (env, message) => {
    const g = start(env)
    expect(await g.exit()).toBe(2)
    expect(g.stderr()).toContain(message)
  })

  test('database unreachable at start: bounded retries, then exit 1 with a clear message', async () => {
    const started = Date.now()
    const g = start({
      DATABASE_URL: 'postgres://gantry@127.0.0.1:1/gantry',
      DB_CONNECT_TIMEOUT_MS: '1500',
      PORT: '0',
    })
    expect(await g.exit()).toBe(1)
    expect(Date.now() - started).toBeLessThan(20_000)
    expect(g.stderr()).toContain('Could not reach Postgres at 127.0.0.1:1/gantry')
    expect(g.stderr()).not.toContain('gantry@') // no credentials in the message
  })

  test('a broken plugin stops start-up naming it', async () => {
    const { dataDir, pluginsDir } = workDir({ broken: 'export default 1 +' })
    const g = start({ DATA_DIR: dataDir, PLUGINS_DIR: pluginsDir, PORT: '0' })
    expect(await g.exit()).toBe(1)
    expect(g.stderr()).toContain('plugin "broken" cannot load')
  })
})

describe('first start on the embedded database', () => {
  test('prints the URL and a generated admin key once, saved with mode 0600; data persists', async () => {
    const { dataDir, pluginsDir } = workDir()
    const first = start({ DATA_DIR: dataDir, PLUGINS_DIR: pluginsDir, PORT: '0' })
    const url = await first.url()
    const key = await waitFor(() => /^\s+(gk_\S+)$/m.exec(first.stderr())?.[1], 5000, 'the key')
    const file = join(dataDir, 'admin-api-key')
    expect(readFileSync(file, 'utf8').trim()).toBe(key)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const me = await fetch(`${url}/api/me`, { headers: { authorization: `Bearer ${key}` } })
    expect((await me.json()).role).toBe('admin')
    expect(first.stdout()).not.toContain(key) // the JSON log never carries it
    first.proc.kill('SIGTERM')
    expect(await first.exit()).toBe(0)

    const second = start({ DATA_DIR: dataDir, PLUGINS_DIR: pluginsDir, PORT: '0' })
    const url2 = await second.url()
    expect(second.stderr()).not.toContain('admin API key was generated')
    expect((await fetch(`${url2}/api/me`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200)
    // A second process on the same embedded database is refused instead of corrupting it.
    const third = start({ DATA_DIR: dataDir, PLUGINS_DIR: pluginsDir, PORT: '0' })
    expect(await third.exit()).toBe(1)
    expect(third.stderr()).toContain('in use by another Gantry process')
    second.proc.kill('SIGINT')
    expect(await second.exit()).toBe(0)
  })
})

const lifecyclePlugin = (
  name: string,
  marker: string,
  extra = '',
) => `import { appendFileSync } from 'node:fs'
import { Elysia } from ${ELYSIA}
export const meta = ${name === 'b' ? "{ dependsOn: ['a'] }" : '{}'}
export default new Elysia({ name: '${name}' })
  .onStart(() => appendFileSync(${JSON.stringify(marker)}, '${name}-start,'))
  .onStop(async () => { ${extra} appendFileSync(${JSON.stringify(marker)}, '${name}-stop,') })
  .ws('/ws-${name}', {
    open(ws) {
      const gantry = (ws.data as any).gantry
      const close = (code: number, reason: string) => ws.close(code, reason)
      gantry.connections.add(close)
      ws.send('hello')
    },
  })
`

describe('graceful stop', () => {
  test('SIGTERM: onStop in reverse order, WebSockets closed with 1001, exit 0', async () => {
    const dir = workDir()
    const { dataDir, pluginsDir, marker } = dir
    for (const name of ['a', 'b']) {
      mkdirSync(join(pluginsDir, name))
      writeFileSync(join(pluginsDir, name, 'index.ts'), lifecyclePlugin(name, marker))
    }
    const g = start({ DATA_DIR: dataDir, PLUGINS_DIR: pluginsDir, PORT: '0' })
    const url = await g.url()
    const ws = new WebSocket(`${url.replace('http', 'ws')}/ws-b`)
    await new Promise((r) => ws.addEventListener('message', r, { once: true }))
    const closed = new Promise<number>((r) => ws.addEventListener('close', (e) => r(e.code)))
    g.proc.kill('SIGTERM')
    expect(await closed).toBe(1001)
    expect(await g.exit()).toBe(0)
    expect(readFileSync(marker, 'utf8')).toBe('a-start,b-start,b-stop,a-stop,')
    expect(g.stdout()).toContain('"msg":"stopped"')
  })

  test('a stuck onStop is cut off by SHUTDOWN_TIMEOUT_MS (exit 1); a second signal exits at once', async () => {
    const { dataDir, pluginsDir, marker } = workDir()
    mkdirSync(join(pluginsDir, 'a'))
    writeFileSync(join(pluginsDir, 'a', 'index.ts'), lifecyclePlugin('a', marker, 'await Bun.sleep(60_000);'))
    const slow = start({
      DATA_DIR: dataDir,
      PLUGINS_DIR: pluginsDir,
      PORT: '0',
      SHUTDOWN_TIMEOUT_MS: '500',
    })
    await slow.url()
    let t0 = Date.now()
    slow.proc.kill('SIGTERM')
    expect(await slow.exit()).toBe(1)
    expect(Date.now() - t0).toBeLessThan(10_000)
    expect(slow.stdout()).toContain('shutdown timed out')

    const twice = start({
      DATA_DIR: dataDir,
      PLUGINS_DIR: pluginsDir,
      PORT: '0',
      SHUTDOWN_TIMEOUT_MS: '60000',
    })
    await twice.url()
    twice.proc.kill('SIGTERM')
    await Bun.sleep(300)
    t0 = Date.now()
    twice.proc.kill('SIGTERM')
    expect(await twice.exit()).toBe(143)
    expect(Date.now() - t0).toBeLessThan(5_000)
  })
})
