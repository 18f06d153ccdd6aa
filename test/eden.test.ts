import { afterAll, beforeAll, expect, test } from 'bun:test'
import { treaty } from '@elysiajs/eden'
import type { App } from '../src/app-type.ts'
import { ADMIN_KEY, startTestServer, type TestServer } from './helpers.ts'

let server: TestServer
beforeAll(async () => {
  server = await startTestServer()
})
afterAll(() => server.stop())

test('an Eden treaty client gets typed core and plugin routes', async () => {
  const api = treaty<App>(server.url, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })
  const health = await api.health.get()
  expect(health.data?.status).toBe('ok')
  const me = await api.api.me.get()
  expect(me.data?.role).toBe('admin')
  const sessions = await api.api.sessions.get()
  expect(sessions.status).toBe(200)
  const tasks = await api.tasks.get()
  expect(tasks.status).toBe(200)
})
