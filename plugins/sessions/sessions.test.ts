import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { createUserKey, startTestServer, type TestServer, waitFor } from '../../test/helpers.ts'

let ollama: MockOllama
let server: TestServer
let bob: { key: string; user_id: string }
let carol: { key: string; user_id: string }

beforeAll(async () => {
  ollama = await startMockOllama()
  server = await startTestServer({ OLLAMA_HOST: ollama.url, OLLAMA_MODEL: 'llama3.2' })
  bob = await createUserKey(server, 'bob')
  carol = await createUserKey(server, 'carol')
}, 60_000)
afterAll(async () => {
  await server?.stop()
  await ollama?.stop()
})
beforeEach(() => ollama.reset())

const newSession = async (key: string, json: Record<string, unknown> = {}) => {
  const res = await server.api('/api/sessions', { method: 'POST', json, key })
  expect(res.status).toBe(201)
  return res.body as { session_id: string; websocket_url: string; name: string }
}

const assistantMessage = async (key: string, sessionId: string, messageId: string) =>
  waitFor(
    async () => {
      const res = await server.api(`/api/sessions/${sessionId}/messages`, { key })
      const m = res.body.messages.find((x: any) => x.message_id === messageId)
      return m && m.status !== 'pending' && m.status !== 'streaming' ? m : undefined
    },
    10_000,
    `message ${messageId} to finish`,
  )

describe('sessions CRUD', () => {
  test('create, get by id and by name, list newest first, patch, delete', async () => {
    const a = await newSession(bob.key, { name: 'first', title: 'First' })
    expect(a.session_id).toStartWith('sess-')
    expect(a.websocket_url).toBe(`${server.url.replace('http', 'ws')}/ws/chat/${a.session_id}`)
    const b = await newSession(bob.key, { title: 'Second', agent: 'coder' })
    expect((await server.api(`/api/sessions/first`, { key: bob.key })).body.session_id).toBe(a.session_id)
    const list = await server.api('/api/sessions?limit=1', { key: bob.key })
    expect(list.body.sessions.map((s: any) => s.session_id)).toEqual([b.session_id])
    const next = await server.api(`/api/sessions?limit=1&cursor=${list.body.next_cursor}`, { key: bob.key })
    expect(next.body.sessions.map((s: any) => s.session_id)).toEqual([a.session_id])
    const patched = await server.api(`/api/sessions/${a.session_id}`, {
      method: 'PATCH',
      json: { title: 'Renamed', agent: 'researcher' },
      key: bob.key,
    })
    expect(patched.status).toBe(200)
    expect(patched.body).toMatchObject({ title: 'Renamed', agent: 'researcher' })
    expect(
      (await server.api(`/api/sessions/${a.session_id}`, { method: 'DELETE', key: bob.key })).status,
    ).toBe(200)
    expect((await server.api(`/api/sessions/${a.session_id}`, { key: bob.key })).status).toBe(404)
  })

  test("another user's session is not found, and names are per user", async () => {
    const mine = await newSession(bob.key, { name: 'shared_name' })
    const theirs = await newSession(carol.key, { name: 'shared_name' })
    expect(theirs.session_id).not.toBe(mine.session_id)
    for (const path of ['', '/messages'])
      expect((await server.api(`/api/sessions/${mine.session_id}${path}`, { key: carol.key })).status).toBe(
        404,
      )
    const chat = await server.api(`/api/sessions/${mine.session_id}/chat`, {
      method: 'POST',
      json: { message: 'hi' },
      key: carol.key,
    })
    expect(chat.status).toBe(404)
    expect(
      (await server.api(`/api/sessions/${mine.session_id}`, { method: 'DELETE', key: carol.key })).status,
    ).toBe(404)
  })

  test('bad input: unknown fields, unknown agent, empty and 200 KB messages', async () => {
    const extra = await server.api('/api/sessions', { method: 'POST', json: { bogus: 1 }, key: bob.key })
    expect(extra.status).toBe(422)
    const unknownAgent = await server.api('/api/sessions', {
      method: 'POST',
      json: { agent: 'nope' },
      key: bob.key,
    })
    expect(unknownAgent.status).toBe(422)
    expect(unknownAgent.body.details.valid_agents).toEqual(
      expect.arrayContaining(['assistant', 'researcher', 'coder']),
    )
    const s = await newSession(bob.key)
    const chat = (json: unknown) =>
      server.api(`/api/sessions/${s.session_id}/chat`, { method: 'POST', json, key: bob.key })
    for (const message of ['', '   ']) {
      const res = await chat({ message })
      expect(res.status).toBe(422)
      expect(res.body.error).toBe('validation_failed')
    }
    const big = await chat({ message: 'x'.repeat(200 * 1024) })
    expect(big.status).toBe(422)
    expect(big.body.message).toContain('message')
    const agent = await chat({ message: 'hi', agent_name: 'nobody' })
    expect(agent.status).toBe(422)
    expect(agent.body.message).toContain('assistant, researcher, coder')
    expect(ollama.requests.filter((r) => r.path === '/api/chat')).toHaveLength(0)
  })
})

describe('chat over REST and the event log', () => {
  test('a reasoning answer is streamed through the log in order and stored', async () => {
    const s = await newSession(bob.key, { model: 'qwen3' })
    ollama.enqueue({
      thinking: 'Let me think about greetings.',
      content: 'Hello there, Bob!',
      tokensPerSecond: 200,
    })
    const res = await server.api(`/api/sessions/${s.session_id}/chat`, {
      method: 'POST',
      json: { message: 'Say hello', enable_reasoning: true },
      key: bob.key,
    })
    expect(res.status).toBe(202)
    const { assistant_message_id, since } = res.body
    const m = await assistantMessage(bob.key, s.session_id, assistant_message_id)
    expect(m).toMatchObject({
      role: 'assistant',
      content: 'Hello there, Bob!',
      thinking: 'Let me think about greetings.',
      status: 'complete',
      incomplete: false,
      model: 'qwen3',
    })
    expect(m.completion_tokens).toBeGreaterThan(0)
    expect(m.timings.total_ms).toBeGreaterThan(0)
    const events = await server.running.gantry.events.readSince(s.session_id, since)
    const types = events.map((e) => e.type)
    expect(types[0]).toBe('message')
    expect(types.at(-1)).toBe('response')
    expect(types.indexOf('reasoning_complete')).toBeGreaterThan(types.indexOf('reasoning'))
    expect(types.indexOf('content')).toBeGreaterThan(types.indexOf('reasoning_complete'))
    const text = (type: string) =>
      events
        .filter((e) => e.type === type)
        .map((e) => (e.data as any).content)
        .join('')
    expect(text('content')).toBe('Hello there, Bob!')
    expect(text('reasoning')).toBe('Let me think about greetings.')
    expect((events.at(-1)!.data as any).content).toBe('Hello there, Bob!')
    const sent = ollama.requests.find((r) => r.path === '/api/chat')!.body
    expect(sent.think).toBe(true)
    expect(sent.messages.at(-1)).toEqual({ role: 'user', content: 'Say hello' })
    expect(sent.messages[0].role).toBe('system')
  })

  test('a model that cannot think answers anyway, with a notice', async () => {
    const s = await newSession(bob.key, { model: 'llama3.2' })
    ollama.enqueue({ content: 'Plain answer.' })
    const res = await server.api(`/api/sessions/${s.session_id}/chat`, {
      method: 'POST',
      json: { message: 'Think hard', enable_reasoning: true },
      key: bob.key,
    })
    const m = await assistantMessage(bob.key, s.session_id, res.body.assistant_message_id)
    expect(m.content).toBe('Plain answer.')
    const events = await server.running.gantry.events.readSince(s.session_id, res.body.since)
    expect(events.find((e) => e.type === 'notice')?.data).toMatchObject({ code: 'reasoning_unsupported' })
    expect(events.some((e) => e.type === 'error')).toBe(false)
    expect(ollama.requests.find((r) => r.path === '/api/chat')!.body.think).toBeUndefined()
  })

  test('an unknown model ends in an error with the ollama pull hint', async () => {
    const s = await newSession(bob.key, { model: 'mistral:7b' })
    const res = await server.api(`/api/sessions/${s.session_id}/chat`, {
      method: 'POST',
      json: { message: 'hi' },
      key: bob.key,
    })
    const m = await assistantMessage(bob.key, s.session_id, res.body.assistant_message_id)
    expect(m.status).toBe('failed')
    expect(m.error.code).toBe('model_not_found')
    const events = await server.running.gantry.events.readSince(s.session_id, res.body.since)
    expect(events.at(-1)!.type).toBe('error')
    expect((events.at(-1)!.data as any).message).toContain('ollama pull mistral:7b')
    // The session is free again.
    expect((await server.api(`/api/sessions/${s.session_id}`, { key: bob.key })).body.generating).toBe(false)
  })

  test('Ollama failing mid-answer keeps the partial answer, marked incomplete', async () => {
    const s = await newSession(bob.key)
    ollama.enqueue({ content: 'one two three four five six', failAfterTokens: 3, tokensPerSecond: 100 })
    const res = await server.api(`/api/sessions/${s.session_id}/chat`, {
      method: 'POST',
      json: { message: 'count' },
      key: bob.key,
    })
    const m = await assistantMessage(bob.key, s.session_id, res.body.assistant_message_id)
    expect(m).toMatchObject({ content: 'one two three', status: 'incomplete', incomplete: true })
    expect(m.error.code).toBe('ollama_error')
  })

  test('a second chat while one runs is busy; cancel stops it within a second and keeps the partial', async () => {
    const s = await newSession(bob.key)
    ollama.enqueue({ content: 'a b c d e f g h i j k l m n o p', hang: true, tokensPerSecond: 50 })
    const first = await server.api(`/api/sessions/${s.session_id}/chat`, {
      method: 'POST',
      json: { message: 'long one' },
      key: bob.key,
    })
    expect(first.status).toBe(202)
    const second = await server.api(`/api/sessions/${s.session_id}/chat`, {
      method: 'POST',
      json: { message: 'another' },
      key: bob.key,
    })
    expect(second.status).toBe(409)
    expect(second.body.error).toBe('busy')
    await waitFor(async () => {
      const events = await server.running.gantry.events.readSince(s.session_id, first.body.since)
      return events.filter((e) => e.type === 'content').length >= 2
    })
    const asked = Date.now()
    const cancel = await server.api(`/api/sessions/${s.session_id}/cancel`, { method: 'POST', key: bob.key })
    expect(cancel.body).toEqual({ cancelled: true, message_id: first.body.assistant_message_id })
    const m = await assistantMessage(bob.key, s.session_id, first.body.assistant_message_id)
    expect(Date.now() - asked).toBeLessThan(1000)
    expect(m.status).toBe('incomplete')
    expect(m.incomplete).toBe(true)
    expect(m.content.length).toBeGreaterThan(0)
    expect('a b c d e f g h i j k l m n o p').toStartWith(m.content)
    await waitFor(() => ollama.activeGenerations === 0, 2000, 'Ollama to see the abort')
  })
})
