import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { createUserKey, startTestServer, type TestServer, waitFor } from '../../test/helpers.ts'
import { purgeIdleSessions } from './retention.ts'

let ollama: MockOllama
let server: TestServer
let bob: { key: string; user_id: string }

beforeAll(async () => {
  ollama = await startMockOllama({
    models: [
      { name: 'llama3.2:latest', capabilities: ['completion', 'tools'], contextLength: 131072 },
      { name: 'tiny:latest', capabilities: ['completion'], contextLength: 1024 },
    ],
  })
  server = await startTestServer({
    OLLAMA_HOST: ollama.url,
    OLLAMA_MODEL: 'llama3.2',
    SESSION_TTL_DAYS: '30',
  })
  bob = await createUserKey(server, 'bob')
}, 60_000)
afterAll(async () => {
  await server?.stop()
  await ollama?.stop()
})
beforeEach(() => ollama.reset())

const finished = (sessionId: string, messageId: string) =>
  waitFor(
    async () => {
      const res = await server.api(`/api/sessions/${sessionId}/messages?limit=200`, { key: bob.key })
      const m = res.body.messages.find((x: any) => x.message_id === messageId)
      return m && !['pending', 'streaming'].includes(m.status) ? m : undefined
    },
    10_000,
    'the answer',
  )

async function chat(sessionId: string, message: string) {
  const res = await server.api(`/api/sessions/${sessionId}/chat`, {
    method: 'POST',
    json: { message },
    key: bob.key,
  })
  expect(res.status).toBe(202)
  return finished(sessionId, res.body.assistant_message_id)
}

describe('agents', () => {
  test('built-ins, plugin agents and your own; create, conflict, unknown tools, delete', async () => {
    const gantry = server.running.gantry
    const unregister = gantry.tools.registerAgent({
      name: 'desktop_test',
      description: 'Drives a desktop',
      systemPrompt: 'You control a desktop.',
      tools: ['computer'],
    })
    try {
      const list = await server.api('/v1/agents', { key: bob.key })
      const names = list.body.agents.map((a: any) => a.name)
      expect(names.slice(0, 3)).toEqual(['assistant', 'researcher', 'coder'])
      expect(list.body.agents.find((a: any) => a.name === 'desktop_test').source).toBe('plugin')
    } finally {
      unregister()
    }
    const create = (json: unknown) => server.api('/v1/agents', { method: 'POST', json, key: bob.key })
    expect((await create({ name: 'poet', system_prompt: 'Answer in verse.' })).status).toBe(201)
    expect((await create({ name: 'poet' })).status).toBe(409)
    expect((await create({ name: 'coder' })).status).toBe(409)
    const badTools = await create({ name: 'toolish', tools: ['nope'] })
    expect(badTools.status).toBe(422)
    expect(badTools.body.message).toContain('nope')
    expect((await create({ name: 'x', unknown: true })).status).toBe(422)
    const carol = await createUserKey(server, 'carol')
    const carolsList = await server.api('/v1/agents', { key: carol.key })
    expect(carolsList.body.agents.map((a: any) => a.name)).not.toContain('poet')
    expect((await server.api('/v1/agents/poet', { method: 'DELETE', key: carol.key })).status).toBe(404)
    expect((await server.api('/v1/agents/poet', { method: 'DELETE', key: bob.key })).status).toBe(200)
    expect((await server.api('/v1/agents/coder', { method: 'DELETE', key: bob.key })).status).toBe(404)
  })
})

describe('history', () => {
  test('earlier turns are sent back; a long history is trimmed to the window, system prompt kept', async () => {
    const s = (
      await server.api('/api/sessions', {
        method: 'POST',
        json: { model: 'tiny', system_prompt: 'You are terse.' },
        key: bob.key,
      })
    ).body
    ollama.script(({ body }) => ({ content: `reply ${body.messages.length}` }))
    for (let i = 0; i < 6; i++) await chat(s.session_id, `question ${i} ${'pad '.repeat(100)}`)
    const requests = ollama.requests.filter((r) => r.path === '/api/chat').map((r) => r.body)
    // First turn: system + user. Later turns carry the conversation until it no longer fits 1024 tokens.
    expect(requests[0].messages.map((m: any) => m.role)).toEqual(['system', 'user'])
    expect(requests[1].messages.map((m: any) => m.role)).toEqual(['system', 'user', 'assistant', 'user'])
    const last = requests.at(-1)
    expect(last.options.num_ctx).toBe(1024)
    expect(last.messages[0]).toEqual({ role: 'system', content: 'You are terse.' })
    expect(last.messages.at(-1).content).toStartWith('question 5')
    expect(last.messages.length).toBeLessThan(12)
    const chars = last.messages.reduce((n: number, m: any) => n + m.content.length, 0)
    expect(chars / 3).toBeLessThan(1024)
  })
})

describe('Ollama down', () => {
  test('before the stream: the answer fails with ollama_unavailable and the session is free again', async () => {
    const down = await startTestServer({ OLLAMA_HOST: 'http://127.0.0.1:9' })
    try {
      const s = (await down.api('/api/sessions', { method: 'POST', json: {} })).body
      const res = await down.api(`/api/sessions/${s.session_id}/chat`, {
        method: 'POST',
        json: { message: 'hi' },
      })
      expect(res.status).toBe(202)
      const m = await waitFor(async () => {
        const r = await down.api(`/api/sessions/${s.session_id}/messages`)
        const a = r.body.messages[1]
        return a && a.status === 'failed' ? a : undefined
      }, 10_000)
      expect(m.error.code).toBe('ollama_unavailable')
      const events = await down.running.gantry.events.readSince(s.session_id, 0)
      expect(events.at(-1)).toMatchObject({ type: 'error', data: { code: 'ollama_unavailable' } })
      expect((await down.api(`/api/sessions/${s.session_id}`)).body.generating).toBe(false)
    } finally {
      await down.stop()
    }
  }, 60_000)

  test('during the stream (connection dropped): the partial answer is kept, marked incomplete', async () => {
    const s = (await server.api('/api/sessions', { method: 'POST', json: {}, key: bob.key })).body
    ollama.enqueue({ content: 'alpha beta gamma delta epsilon', breakConnection: true, failAfterTokens: 2 })
    const m = await chat(s.session_id, 'go')
    expect(m).toMatchObject({ content: 'alpha beta', status: 'incomplete', incomplete: true })
    expect(['ollama_unavailable', 'ollama_error']).toContain(m.error.code)
  })
})

describe('retention', () => {
  test('sessions idle past SESSION_TTL_DAYS go with their messages and events; active ones stay', async () => {
    const gantry = server.running.gantry
    const make = async () =>
      (await server.api('/api/sessions', { method: 'POST', json: {}, key: bob.key })).body.session_id
    const [old, fresh] = [await make(), await make()]
    ollama.enqueue({ content: 'kept?' })
    await chat(old, 'hello')
    await gantry.store.query(
      `update chat_sessions set last_activity_at = now() - interval '31 days' where id = $1`,
      [old],
    )
    const deleted = await purgeIdleSessions(gantry)
    expect(deleted).toBeGreaterThanOrEqual(1)
    expect((await server.api(`/api/sessions/${old}`, { key: bob.key })).status).toBe(404)
    expect(await gantry.store.query('select 1 from chat_messages where session_id = $1', [old])).toHaveLength(
      0,
    )
    expect(await gantry.events.streamInfo(old)).toBeUndefined()
    expect((await server.api(`/api/sessions/${fresh}`, { key: bob.key })).status).toBe(200)
  })
})
