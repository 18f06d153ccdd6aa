import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { createUserKey, startTestServer, type TestServer, waitFor } from '../../test/helpers.ts'

let ollama: MockOllama
let server: TestServer
let bob: { key: string }
let carol: { key: string }
const toolCalls: Record<string, unknown>[] = []

beforeAll(async () => {
  ollama = await startMockOllama()
  server = await startTestServer({
    OLLAMA_HOST: ollama.url,
    OLLAMA_MODEL: 'qwen3',
    HEARTBEAT_INTERVAL_MS: '300',
  })
  bob = await createUserKey(server, 'bob')
  carol = await createUserKey(server, 'carol')
  const tools = server.running.gantry.tools
  tools.register({
    name: 'weather_lookup',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    async run(args, ctx) {
      toolCalls.push({ ...args, user: ctx.user.userName, session: ctx.sessionId })
      return { content: `Sunny in ${args.city}, 21 °C` }
    },
  })
  tools.register({
    name: 'broken_tool',
    description: 'Always fails',
    parameters: { type: 'object', properties: {} },
    async run() {
      throw new Error('disk on fire')
    },
  })
}, 60_000)
afterAll(async () => {
  await server?.stop()
  await ollama?.stop()
})
beforeEach(() => ollama.reset())

/** A stock WebSocket client that records every frame. */
async function connect(path: string, key: string | null = bob.key) {
  const frames: any[] = []
  const ws = new WebSocket(`${server.url.replace('http', 'ws')}${path}`, {
    headers: key ? { authorization: `Bearer ${key}` } : {},
  } as any)
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.addEventListener('close', (e) => resolve({ code: e.code, reason: e.reason })),
  )
  ws.addEventListener('message', (e) => frames.push(JSON.parse(String(e.data))))
  await new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve, { once: true })
    ws.addEventListener('error', reject, { once: true })
  })
  const next = (type: string, after = 0) =>
    waitFor(() => frames.slice(after).find((f) => f.type === type), 10_000, `a ${type} frame`)
  return {
    ws,
    frames,
    closed,
    next,
    send: (v: unknown) => ws.send(typeof v === 'string' ? v : JSON.stringify(v)),
  }
}

const textOf = (frames: any[], type: string) =>
  frames
    .filter((f) => f.type === type)
    .map((f) => f.content)
    .join('')

describe('WS /ws/chat/:session_id', () => {
  test('the original protocol: connected, reasoning, reasoning_complete, answer deltas, response; loop ends', async () => {
    ollama.enqueue({ thinking: 'Hmm, a greeting.', content: 'Hello from the agent.', tokensPerSecond: 200 })
    const c = await connect('/ws/chat/test_session')
    const connected = await c.next('connected')
    expect(connected.session_id).toStartWith('sess-')
    expect(connected.name).toBe('test_session')
    c.send({ type: 'chat', payload: { message: 'Hello!', agent_name: 'researcher', enable_reasoning: true } })
    // The original client loops until error, response or reasoning_complete.
    const seen: string[] = []
    for (let i = 0; ; i++) {
      const f = await waitFor(() => c.frames[i], 10_000, `frame ${i}`)
      seen.push(f.type)
      if (['error', 'response', 'reasoning_complete'].includes(f.type)) break
    }
    expect(seen).toContain('reasoning')
    expect(seen.at(-1)).toBe('reasoning_complete')
    const response = await c.next('response')
    expect(response.content).toBe('Hello from the agent.')
    expect(response.message_id).toStartWith('msg-')
    expect(response.metrics.completion_tokens).toBeGreaterThan(0)
    expect(textOf(c.frames, 'content')).toBe('Hello from the agent.')
    expect(textOf(c.frames, 'reasoning')).toBe('Hmm, a greeting.')
    const seqs = c.frames.filter((f) => f.seq !== undefined).map((f) => f.seq)
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
    c.ws.close()
  })

  test("ids are per user: bob's and carol's test_session never meet", async () => {
    const b = await connect('/ws/chat/same_name', bob.key)
    const c = await connect('/ws/chat/same_name', carol.key)
    const [bs, cs] = [await b.next('connected'), await c.next('connected')]
    expect(bs.session_id).not.toBe(cs.session_id)
    ollama.enqueue({ content: 'only for bob' })
    b.send({ type: 'chat', payload: { message: 'hi' } })
    await b.next('response')
    await Bun.sleep(100)
    expect(c.frames.map((f) => f.type)).not.toContain('content')
    // And carol cannot reach bob's session by its id.
    const sneaky = await connect(`/ws/chat/${bs.session_id}`, carol.key)
    const err = await sneaky.next('error')
    expect(err.code).toBe('not_found')
    expect((await sneaky.closed).code).toBe(4404)
    b.ws.close()
    c.ws.close()
  })

  test('without a key the upgrade is refused', async () => {
    const res = await fetch(`${server.url}/ws/chat/x`, {
      headers: {
        upgrade: 'websocket',
        connection: 'Upgrade',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'sec-websocket-version': '13',
      },
    })
    expect(res.status).toBe(401)
  })

  test('malformed JSON, unknown types and bad payloads get error frames; the socket stays usable', async () => {
    const c = await connect('/ws/chat/bad_input')
    await c.next('connected')
    c.send('{not json')
    expect((await c.next('error')).error).toBe('malformed_json')
    let n = c.frames.length
    c.send({ type: 'dance' })
    expect((await c.next('error', n)).code).toBe('unknown_type')
    n = c.frames.length
    c.send({ type: 'chat', payload: { message: '' } })
    expect((await c.next('error', n)).code).toBe('validation_failed')
    n = c.frames.length
    c.send({ type: 'chat', payload: { message: 'hi', agent_name: 'ghost' } })
    const unknown = await c.next('error', n)
    expect(unknown.code).toBe('validation_failed')
    expect(unknown.details.valid_agents).toContain('coder')
    n = c.frames.length
    c.send({ type: 'ping' })
    await c.next('pong', n)
    expect(await c.next('ping')).toBeTruthy() // the server's heartbeat
    // A 200 KB message is past the socket's frame limit: closed with 1009 (message too big).
    c.send({ type: 'chat', payload: { message: 'y'.repeat(200 * 1024) } })
    expect((await c.closed).code).toBe(1009)
    expect(ollama.requests.filter((r) => r.path === '/api/chat')).toHaveLength(0)
  })

  test('a second chat meanwhile is busy; cancel over the socket ends with an incomplete response', async () => {
    ollama.enqueue({ content: 'w1 w2 w3 w4 w5 w6 w7 w8', hang: true, tokensPerSecond: 40 })
    const c = await connect('/ws/chat/busy_one')
    await c.next('connected')
    c.send({ type: 'chat', payload: { message: 'first' } })
    await c.next('content')
    c.send({ type: 'chat', payload: { message: 'second' } })
    expect((await c.next('error')).code).toBe('busy')
    c.send({ type: 'cancel' })
    const response = await c.next('response')
    expect(response.incomplete).toBe(true)
    expect(response.content).toBe(textOf(c.frames, 'content'))
    c.ws.close()
  })

  test('tool calls run, are streamed and stored; unknown and failing tools go back to the model', async () => {
    const agent = await server.api('/v1/agents', {
      method: 'POST',
      key: bob.key,
      json: {
        name: 'weatherman',
        model: 'qwen3',
        system_prompt: 'You report weather.',
        tools: ['weather_lookup', 'broken_tool'],
      },
    })
    expect(agent.status).toBe(201)
    ollama.enqueue(
      {
        thinking: 'I should look it up.',
        tool_calls: [
          { name: 'weather_lookup', arguments: { city: 'Lyon' } },
          { name: 'no_such_tool', arguments: {} },
          { name: 'broken_tool', arguments: {} },
        ],
      },
      { content: 'It is sunny in Lyon.' },
    )
    const c = await connect('/ws/chat/weather')
    const connected = await c.next('connected')
    c.send({
      type: 'chat',
      payload: { message: 'Weather in Lyon?', agent_name: 'weatherman', enable_reasoning: true },
    })
    const response = await c.next('response')
    expect(response.content).toBe('It is sunny in Lyon.')
    expect(response.metrics.tool_steps).toBe(1)
    const calls = c.frames.filter((f) => f.type === 'tool_call')
    const results = c.frames.filter((f) => f.type === 'tool_result')
    expect(calls.map((f) => f.name)).toEqual(['weather_lookup', 'no_such_tool', 'broken_tool'])
    expect(results.map((f) => f.is_error)).toEqual([false, true, true])
    expect(results[0].content).toBe('Sunny in Lyon, 21 °C')
    expect(results[1].content).toContain('no tool named "no_such_tool"')
    expect(results[2].content).toContain('disk on fire')
    expect(toolCalls.at(-1)).toMatchObject({ city: 'Lyon', user: 'bob', session: connected.session_id })
    // The second call to the model carries the tool results.
    const second = ollama.requests.filter((r) => r.path === '/api/chat')[1]!.body
    expect(second.messages.filter((m: any) => m.role === 'tool').map((m: any) => m.tool_name)).toEqual([
      'weather_lookup',
      'no_such_tool',
      'broken_tool',
    ])
    // Stored with the answer.
    // The row is written just after the `response` event is committed.
    const stored = await waitFor(async () => {
      const res = await server.api('/api/sessions/weather/messages', { key: bob.key })
      const last = res.body.messages.at(-1)
      return last.status === 'complete' ? last : undefined
    })
    expect(stored.tool_calls.map((t: any) => t.name)).toEqual([
      'weather_lookup',
      'no_such_tool',
      'broken_tool',
    ])
    expect(stored.tool_results[0]).toMatchObject({ name: 'weather_lookup', is_error: false })
    expect(stored.thinking).toBe('I should look it up.')
    c.ws.close()
  })

  test('the tool loop is bounded: a model that keeps calling tools must answer after the last step', async () => {
    await server.api('/v1/agents', {
      method: 'POST',
      key: bob.key,
      json: { name: 'looper', model: 'llama3.2', tools: ['weather_lookup'] },
    })
    ollama.script(({ body }) =>
      body.tools?.length
        ? { tool_calls: [{ name: 'weather_lookup', arguments: { city: 'Nice' } }] }
        : { content: 'Enough lookups.' },
    )
    const c = await connect('/ws/chat/loop')
    await c.next('connected')
    c.send({ type: 'chat', payload: { message: 'loop', agent_name: 'looper' } })
    const response = await c.next('response')
    expect(response.content).toBe('Enough lookups.')
    expect(c.frames.filter((f) => f.type === 'tool_call')).toHaveLength(5)
    c.ws.close()
  })

  test('the browser closes mid-answer: the answer completes and is stored; since replays the exact text', async () => {
    const words = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ')
    ollama.enqueue({ content: words, tokensPerSecond: 100 })
    const c = await connect('/ws/chat/browser_close')
    const connected = await c.next('connected')
    c.send({ type: 'chat', payload: { message: 'long answer please' } })
    await waitFor(() => c.frames.filter((f) => f.type === 'content').length >= 3)
    c.ws.close()
    const lastSeen = c.frames.filter((f) => f.seq !== undefined).at(-1).seq
    const partial = textOf(c.frames, 'content')
    expect(words.startsWith(partial) && partial.length < words.length).toBe(true)
    // Back mid-answer with the last seq seen: exactly the rest, nothing twice.
    const again = await connect(`/ws/chat/browser_close?since=${lastSeen}`)
    const response = await again.next('response')
    expect(partial + textOf(again.frames, 'content')).toBe(words)
    expect(response.content).toBe(words)
    expect(again.frames.filter((f) => f.seq !== undefined).every((f) => f.seq > lastSeen)).toBe(true)
    again.ws.close()
    // A fresh client with since=0 replays the whole session, the same text.
    const replay = await connect('/ws/chat/browser_close?since=0')
    await replay.next('response')
    expect(textOf(replay.frames, 'content')).toBe(words)
    replay.ws.close()
    const stored = await waitFor(async () => {
      const res = await server.api(`/api/sessions/${connected.session_id}/messages`, { key: bob.key })
      return res.body.messages.at(-1).status === 'complete' ? res : undefined
    })
    expect(stored!.body.messages.map((m: any) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'complete'],
    ])
  })

  test('a client coming back mid-answer without since sees the text so far, then the rest', async () => {
    const words = Array.from({ length: 30 }, (_, i) => `tok${i}`).join(' ')
    ollama.enqueue({ content: words, tokensPerSecond: 100 })
    const c = await connect('/ws/chat/come_back')
    await c.next('connected')
    c.send({ type: 'chat', payload: { message: 'go' } })
    await waitFor(() => c.frames.filter((f) => f.type === 'content').length >= 3)
    c.ws.close()
    const late = await connect('/ws/chat/come_back')
    expect((await late.next('connected')).generating).toBe(true)
    await late.next('response')
    expect(textOf(late.frames, 'content')).toBe(words)
    late.ws.close()
  })

  test('deleting the session while it streams cancels the answer and tells the client', async () => {
    ollama.enqueue({ content: 'z1 z2 z3 z4 z5 z6', hang: true, tokensPerSecond: 40 })
    const c = await connect('/ws/chat/doomed')
    const connected = await c.next('connected')
    c.send({ type: 'chat', payload: { message: 'go' } })
    await c.next('content')
    const del = await server.api(`/api/sessions/${connected.session_id}`, { method: 'DELETE', key: bob.key })
    expect(del.status).toBe(200)
    expect((await c.next('error')).code).toBe('session_deleted')
    await c.closed
    await waitFor(() => ollama.activeGenerations === 0, 3000, 'the generation to stop')
    expect(
      (await server.api(`/api/sessions/${connected.session_id}/messages`, { key: bob.key })).status,
    ).toBe(404)
    // Admin sees no leftover job running for it.
    await waitFor(
      async () => {
        const jobs = await server.running.gantry.store.query<{ status: string }>(
          `select status from jobs where payload->>'session_id' = $1`,
          [connected.session_id],
        )
        return jobs.length === 1 && jobs[0]!.status === 'cancelled'
      },
      3000,
      'the job to be cancelled',
    )
  })
})
