import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import {
  ADMIN_KEY,
  createUserKey,
  ROOT,
  startTestServer,
  type TestServer,
  tempDir,
} from '../../test/helpers.ts'

let server: TestServer
beforeAll(async () => {
  server = await startTestServer()
}, 60_000)
afterAll(() => server.stop())

describe('API keys', () => {
  test('missing, malformed and unknown keys → 401', async () => {
    expect((await server.api('/api/me', { key: null })).status).toBe(401)
    expect((await server.api('/api/me', { key: null, headers: { authorization: 'Basic abc' } })).status).toBe(
      401,
    )
    const wrong = await server.api('/api/me', { key: 'gk_00000000_this-is-not-the-right-key' })
    expect(wrong.status).toBe(401)
    expect(wrong.body.error).toBe('unauthorized')
  })

  test('a user key works, cannot reach admin routes (403), and stops working once revoked', async () => {
    const alice = await createUserKey(server, 'alice-revoke')
    const me = await server.api('/api/me', { key: alice.key })
    expect(me.body).toMatchObject({ user: 'alice-revoke', role: 'user', via: 'api_key' })
    const forbidden = await server.api('/api/keys', { key: alice.key })
    expect(forbidden.status).toBe(403)
    expect(forbidden.body.error).toBe('forbidden')
    const revoked = await server.api(`/api/keys/${alice.id}`, { method: 'DELETE' })
    expect(revoked.status).toBe(200)
    expect((await server.api('/api/me', { key: alice.key })).status).toBe(401)
    expect((await server.api(`/api/keys/${alice.id}`, { method: 'DELETE' })).status).toBe(404)
  })

  test('keys are stored hashed: the database never holds the key', async () => {
    const bob = await createUserKey(server, 'bob-hash')
    const rows = await server.running.gantry.store.query<{ hash: string; prefix: string }>(
      'select hash, prefix from api_keys where id = $1',
      [bob.id],
    )
    expect(rows[0]!.hash).toMatch(/^[0-9a-f]{64}$/)
    // gk_<8 hex>_<secret>: the secret may itself hold '_' (base64url), so take all of it.
    const secret = bob.key.slice('gk_'.length + 8 + 1)
    expect(secret.length).toBeGreaterThan(20)
    expect(JSON.stringify(rows)).not.toContain(secret)
    const list = await server.api('/api/keys')
    expect(JSON.stringify(list.body)).not.toContain(bob.key)
  })
})

describe('browser login', () => {
  test('login sets an HttpOnly SameSite=Strict cookie; the cookie authenticates; logout revokes it', async () => {
    const login = await server.api('/api/auth/login', {
      method: 'POST',
      json: { api_key: ADMIN_KEY },
      key: null,
    })
    expect(login.status).toBe(200)
    const setCookie = login.headers.get('set-cookie')!
    expect(setCookie).toContain('HttpOnly')
    expect(setCookie).toContain('SameSite=Strict')
    const cookie = setCookie.split(';')[0]!
    const me = await server.api('/api/me', { key: null, headers: { cookie } })
    expect(me.body).toMatchObject({ role: 'admin', via: 'session' })
    // As the console sends it: a browser names its page's origin on every POST.
    const logout = await server.api('/api/auth/logout', {
      method: 'POST',
      key: null,
      headers: { cookie, origin: server.url },
    })
    expect(logout.body).toEqual({ logged_out: true })
    expect((await server.api('/api/me', { key: null, headers: { cookie } })).status).toBe(401)
  })

  test('repeated failed logins from one address get 429 with Retry-After', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 11; i++) {
      const res = await server.api('/api/auth/login', {
        method: 'POST',
        json: { api_key: `gk_11111111_wrong-key-${i}` },
        key: null,
        headers: { 'x-forwarded-for': '203.0.113.7' },
      })
      statuses.push(res.status)
    }
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(401))
    expect(statuses[10]).toBe(429)
    const locked = await server.api('/api/auth/login', {
      method: 'POST',
      json: { api_key: ADMIN_KEY },
      key: null,
      headers: { 'x-forwarded-for': '203.0.113.7' },
    })
    expect(locked.status).toBe(429)
    expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0)
    // another address is not affected
    const other = await server.api('/api/auth/login', {
      method: 'POST',
      json: { api_key: ADMIN_KEY },
      key: null,
      headers: { 'x-forwarded-for': '203.0.113.8' },
    })
    expect(other.status).toBe(200)
  })
})

describe('npm run keys', () => {
  test('create, list and revoke against the embedded database', async () => {
    const dataDir = tempDir()
    const run = async (...args: string[]) => {
      const proc = Bun.spawn([process.execPath, join(ROOT, 'src/cli/keys.ts'), ...args], {
        env: { PATH: process.env.PATH ?? '', DATA_DIR: dataDir },
        stdout: 'pipe',
        stderr: 'pipe',
      })
      const [out, err, code] = await Promise.all([
        new Response(proc.stdout).text(),
        new Response(proc.stderr).text(),
        proc.exited,
      ])
      return { out, err, code }
    }
    const created = await run('create', '--user', 'carol', '--role', 'admin')
    expect(created.code).toBe(0)
    const key = created.out.trim().split('\n').pop()!
    expect(key).toMatch(/^gk_[0-9a-f]{8}_/)
    const list = await run('list')
    expect(list.out).toContain('carol')
    expect(list.out).not.toContain(key)
    const prefix = key.split('_')[1]!
    expect((await run('revoke', prefix)).code).toBe(0)
    expect((await run('list')).out).toContain('revoked')
    const again = await run('revoke', prefix)
    expect(again.code).toBe(1)
    expect(again.err).toContain('No active key')
    const bad = await run('create')
    expect(bad.code).toBe(2)
    expect(bad.err).toContain('--user')
  })
})
