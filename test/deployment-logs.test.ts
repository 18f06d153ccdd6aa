/**
 * What an operator greps for in the JSON log: each request's line carries its request id and, once the caller
 * is known, its user id; a session's (or task's) lines carry the stream id its clients follow.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import { createUserKey, startTestServer, type TestServer, waitFor } from './helpers.ts'

let server: TestServer
let ollama: MockOllama

beforeAll(async () => {
  ollama = await startMockOllama()
  server = await startTestServer({ OLLAMA_HOST: ollama.url, OLLAMA_MODEL: 'llama3.2', CODE_EXECUTION: 'off' })
}, 30_000)
afterAll(async () => {
  await server?.stop()
  await ollama?.stop()
})

const requestLine = (reqId: string) =>
  waitFor(
    () => server.log.records().find((r) => r.msg === 'request' && r.reqId === reqId),
    3000,
    `the request line ${reqId}`,
  )

test('a request line has its request id, and the user id once the caller is known', async () => {
  const alice = await createUserKey(server, 'log-alice')
  const anonymous = await server.api('/health', { key: null })
  const mine = await server.api('/api/me', { key: alice.key })
  const missing = await server.api('/tasks/task-not-there', { key: alice.key })
  expect([anonymous.status, mine.status, missing.status]).toEqual([200, 200, 404])

  const line = await requestLine(anonymous.headers.get('x-request-id')!)
  expect(line).toMatchObject({ path: '/health', status: 200 })
  expect(line.userId).toBeUndefined()
  expect(await requestLine(mine.headers.get('x-request-id')!)).toMatchObject({
    path: '/api/me',
    userId: alice.user_id,
  })
  // A refusal after authentication still names who was refused.
  expect(await requestLine(missing.headers.get('x-request-id')!)).toMatchObject({
    status: 404,
    userId: alice.user_id,
  })
  // Someone else's key never lends its user to an unauthenticated line.
  const bad = await server.api('/api/me', { key: 'gk_not_a_key_at_all_0000' })
  expect(bad.status).toBe(401)
  expect((await requestLine(bad.headers.get('x-request-id')!)).userId).toBeUndefined()
})

test('a session’s log lines carry its stream id (a tool that fails mid-answer)', async () => {
  const unregister = server.running.gantry.tools.register({
    name: 'log_probe_tool',
    description: 'Always fails',
    parameters: { type: 'object', properties: {} },
    run: async () => {
      throw new Error('the probe tool broke')
    },
  })
  try {
    const agent = await server.api('/v1/agents', {
      method: 'POST',
      json: { name: 'log-prober', model: 'llama3.2', tools: ['log_probe_tool'] },
    })
    expect(agent.status).toBe(201)
    ollama.script(({ body }) =>
      body.messages.some((m: any) => m.role === 'tool')
        ? { content: 'The tool failed.' }
        : { tool_calls: [{ name: 'log_probe_tool', arguments: {} }] },
    )
    const session = await server.api('/api/sessions', {
      method: 'POST',
      json: { name: 'logs', agent: 'log-prober' },
    })
    expect(session.status).toBe(201)
    const sessionId = session.body.session_id as string
    const chat = await server.api(`/api/sessions/${sessionId}/chat`, {
      method: 'POST',
      json: { message: 'use the probe', agent_name: 'log-prober' },
    })
    expect(chat.status).toBe(202)
    const line = await waitFor(
      () => server.log.records().find((r) => r.msg === 'tool failed' && r.tool === 'log_probe_tool'),
      15_000,
      'the tool failure line',
    )
    expect(line.stream).toBe(sessionId)
  } finally {
    unregister()
  }
}, 30_000)
