import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { existsSync } from 'node:fs'
import { startTestServer, type TestServer, tempDir } from '../../test/helpers.ts'
import { ensureBuilt, isFresh } from './build.ts'
import { CONSOLE_CSP, consolePage } from './page.ts'

const html = { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' }

describe('console plugin: GET / and its assets', () => {
  let server: TestServer
  beforeAll(async () => {
    await ensureBuilt()
    server = await startTestServer()
  }, 120_000)
  afterAll(() => server.stop())

  test('browsers get the console page with its CSP; it is never cached', async () => {
    const res = await fetch(`${server.url}/`, { headers: html })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toContain('text/html')
    expect(res.headers.get('cache-control')).toBe('no-cache')
    const body = await res.text()
    expect(body).toContain('<div id="app"></div>')
    expect(body).toMatch(/<script type="module" crossorigin src="\/console\/[\w-]+\.js"><\/script>/)
    expect(body).not.toContain('The server is up')
    const csp = res.headers.get('content-security-policy')!
    expect(csp).toBe(CONSOLE_CSP)
    expect(csp).toContain("frame-ancestors 'none'")
    expect(csp).toContain("script-src 'self'")
    expect(csp).not.toContain('unsafe-inline')
    expect(csp).not.toContain('unsafe-eval')
    // No inline script for the CSP to forbid: every <script> has a src.
    expect(body.match(/<script(?![^>]*\ssrc=)[^>]*>/g)).toBeNull()
  })

  test('API clients still get the discovery JSON', async () => {
    const res = await server.api('/', { key: null })
    expect(res.status).toBe(200)
    expect(res.body.name).toBe('gantry')
    expect(res.body.plugins).toContainEqual({ name: 'console', status: 'loaded' })
    expect(res.body.endpoints.console).toBe('/')
  })

  test('hashed assets are cached for a year; unknown ones and escapes are a JSON 404', async () => {
    const page = await (await fetch(`${server.url}/`, { headers: html })).text()
    const script = /src="(\/console\/[^"]+\.js)"/.exec(page)![1]!
    const res = await fetch(server.url + script)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toContain('javascript')
    expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable')
    expect((await res.text()).length).toBeGreaterThan(1000)
    for (const path of ['/console/nope-123.js', '/console/..%2f..%2fpackage.json', '/console/../index.ts']) {
      const miss = await server.api(path, { key: null })
      expect(miss.status).toBe(404)
      expect(miss.body.error).toBe('not_found')
    }
  })

  test('the favicon is served for the whole server', async () => {
    const ico = await fetch(`${server.url}/favicon.ico`)
    expect(ico.status).toBe(200)
    expect(ico.headers.get('content-type')).toBe('image/x-icon')
    expect((await ico.arrayBuffer()).byteLength).toBeGreaterThan(100)
    const svg = await fetch(`${server.url}/favicon.svg`)
    expect(svg.headers.get('content-type')).toContain('image/svg+xml')
    expect(await svg.text()).toContain('<svg')
  })
})

describe('console plugin disabled', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startTestServer({ PLUGINS_DISABLED: 'console' })
  }, 60_000)
  afterAll(() => server.stop())

  test('GET / falls back to the placeholder page; the favicon stays', async () => {
    const res = await fetch(`${server.url}/`, { headers: html })
    expect(res.status).toBe(200)
    expect(await res.text()).toContain('The server is up')
    expect(res.headers.get('content-security-policy')).toBeNull()
    expect((await server.api('/', { key: null })).body.plugins).toContainEqual({
      name: 'console',
      status: 'disabled',
    })
    expect((await fetch(`${server.url}/favicon.ico`)).status).toBe(200)
    expect((await server.api('/console/index.js', { key: null })).status).toBe(404)
  })
})

describe('the console page without a build', () => {
  test('a missing build is a 503 page saying what to run, not a 500', async () => {
    const dist = tempDir('gantry-console-')
    const res = await consolePage(dist, () => false)()
    expect(res.status).toBe(503)
    expect(res.headers.get('content-security-policy')).toBe(CONSOLE_CSP)
    const body = await res.text()
    expect(body).toContain('The console is not built')
    expect(body).toContain('npm run build:console')
  })

  test('while a build runs the page says so and reloads by itself', async () => {
    const res = await consolePage(tempDir('gantry-console-'), () => true)()
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('2')
    const body = await res.text()
    expect(body).toContain('being built')
    expect(body).toContain('http-equiv="refresh"')
  })

  test('the build in place matches the sources', () => {
    expect(isFresh()).toBe(true)
    expect(existsSync(`${import.meta.dir}/dist/index.html`)).toBe(true)
  })
})
