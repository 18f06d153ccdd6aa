// Drives the simulated Ollama with the real `ollama` npm client over HTTP, so
// the simulator is checked against what the client actually parses.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import { Ollama } from 'ollama'
import { type MockOllama, ollamaErrors, startMockOllama, tokensOf } from './ollama.ts'

let mock: MockOllama
let client: Ollama

beforeAll(async () => {
  mock = await startMockOllama()
  client = new Ollama({ host: mock.url })
})
afterAll(() => mock.stop())
beforeEach(() => mock.reset())

const ask = (content: string) => [{ role: 'user', content }]

/** Iterates a stream to its end or first error, keeping what arrived before it. */
async function drain<T>(stream: AsyncIterable<T>): Promise<{ chunks: T[]; error?: Error }> {
  const chunks: T[] = []
  try {
    for await (const chunk of stream) chunks.push(chunk)
    return { chunks }
  } catch (error) {
    return { chunks, error: error as Error }
  }
}

/** The client's ResponseError is not exported; it carries `status_code` (not `status`) and the server's message. */
async function responseError(
  promise: Promise<unknown>,
): Promise<{ name: string; status: number; message: string }> {
  const error = (await promise.then(
    () => undefined,
    (e) => e,
  )) as (Error & { status_code?: number }) | undefined
  if (!error) throw new Error('expected the request to fail')
  return { name: error.name, status: error.status_code ?? -1, message: error.message }
}

async function waitFor(condition: () => boolean, timeoutMs = 2000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!condition() && Date.now() < deadline) await Bun.sleep(10)
  return condition()
}

describe('model endpoints', () => {
  test('version, tags and show describe the installed models', async () => {
    expect((await client.version()).version).toBe('0.12.6')
    const { models } = await client.list()
    expect(models.map((m) => m.name)).toEqual(['llama3.2:latest', 'qwen3:latest', 'llava:latest'])
    expect(models[1]?.details.family).toBe('qwen3')

    const qwen = await client.show({ model: 'qwen3' })
    expect(qwen.capabilities).toEqual(['completion', 'tools', 'thinking'])
    const info = qwen.model_info as unknown as Record<string, unknown>
    expect(info['general.architecture']).toBe('qwen3')
    expect(info['qwen3.context_length']).toBe(40960)
    expect((await client.show({ model: 'llava:latest' })).capabilities).toContain('vision')

    const missing = await responseError(client.show({ model: 'nope' }))
    expect(missing).toEqual({ name: 'ResponseError', status: 404, message: "model 'nope' not found" })
  })

  test('ps lists models once used, and keep_alive 0 unloads them', async () => {
    expect((await client.ps()).models).toEqual([])
    await client.chat({ model: 'llama3.2', messages: ask('hi') })
    const running = (await client.ps()).models
    expect(running.map((m) => m.name)).toEqual(['llama3.2:latest'])
    expect(new Date(running[0]!.expires_at).getTime()).toBeGreaterThan(Date.now())

    const unload = await client.chat({ model: 'llama3.2', messages: [], keep_alive: 0 })
    expect(unload.done_reason).toBe('unload')
    expect((await client.ps()).models).toEqual([])
  })

  test('setModels replaces the installed models', async () => {
    mock.setModels([{ name: 'mistral', capabilities: ['completion'] }])
    expect((await client.list()).models.map((m) => m.name)).toEqual(['mistral:latest'])
    expect((await responseError(client.chat({ model: 'llama3.2', messages: ask('x') }))).status).toBe(404)
    expect((await client.chat({ model: 'MISTRAL:latest', messages: ask('x') })).message.content).toBe(
      'Simulated answer to: x',
    )
    const tools = [{ type: 'function', function: { name: 'f' } }]
    expect(await responseError(client.chat({ model: 'mistral', messages: ask('x'), tools }))).toEqual({
      name: 'ResponseError',
      status: 400,
      message: 'registry.ollama.ai/library/mistral:latest does not support tools',
    })
  })
})

describe('chat and generate', () => {
  test('a non-streamed chat answers the last user message with final metrics', async () => {
    const prompt = 'Explain, in detail, why the sky appears blue during the day and red at sunset.'
    const res = await client.chat({ model: 'llama3.2', messages: [...ask('earlier'), ...ask(prompt)] })
    expect(res.message).toEqual({ role: 'assistant', content: `Simulated answer to: ${prompt.slice(0, 60)}` })
    expect(res.done).toBe(true)
    expect(res.done_reason).toBe('stop')
    expect(res.eval_count).toBe(tokensOf(res.message.content).length)
    expect(res.prompt_eval_count).toBe(tokensOf(`earlier ${prompt}`).length)
    for (const field of [
      'total_duration',
      'load_duration',
      'prompt_eval_duration',
      'eval_duration',
    ] as const) {
      expect(Number.isInteger(res[field]) && res[field] > 0).toBe(true)
    }
    expect(Number.isNaN(new Date(res.created_at).getTime())).toBe(false)
  })

  test('a streamed chat reassembles exactly to the scripted content', async () => {
    const content = 'Hello,  world!\n\tIndented line   with  gaps. '
    mock.enqueue({ content })
    const { chunks, error } = await drain(
      await client.chat({ model: 'llama3.2', messages: ask('hi'), stream: true }),
    )
    expect(error).toBeUndefined()
    const final = chunks.at(-1)!
    const parts = chunks.slice(0, -1)
    expect(parts.map((c) => c.message.content)).toEqual(tokensOf(content))
    expect(parts.map((c) => c.message.content).join('')).toBe(content)
    expect(parts.every((c) => !c.done)).toBe(true)
    expect(final).toMatchObject({
      done: true,
      done_reason: 'stop',
      message: { role: 'assistant', content: '' },
    })
    expect(final.eval_count).toBe(tokensOf(content).length)
  })

  test('thinking streams before content, and needs a thinking model', async () => {
    mock.enqueue({ thinking: 'Let me think.\nStep two.', content: 'The answer.' })
    const { chunks } = await drain(
      await client.chat({ model: 'qwen3', messages: ask('q'), think: true, stream: true }),
    )
    const thinkingAt = chunks.flatMap((c, i) => (c.message.thinking ? [i] : []))
    const contentAt = chunks.flatMap((c, i) => (c.message.content ? [i] : []))
    expect(thinkingAt.length).toBe(tokensOf('Let me think.\nStep two.').length)
    expect(Math.max(...thinkingAt)).toBeLessThan(Math.min(...contentAt))
    expect(chunks.map((c) => c.message.thinking ?? '').join('')).toBe('Let me think.\nStep two.')
    expect(chunks.map((c) => c.message.content).join('')).toBe('The answer.')

    // Like Ollama >= 0.12.6: a thinking model thinks unless told `think: false`.
    expect((await client.chat({ model: 'qwen3', messages: ask('q') })).message.thinking).toBe(
      'Simulated reasoning about: q',
    )
    expect(
      (await client.chat({ model: 'qwen3', messages: ask('q'), think: false })).message.thinking,
    ).toBeUndefined()
    expect(await responseError(client.chat({ model: 'llama3.2', messages: ask('q'), think: true }))).toEqual({
      name: 'ResponseError',
      status: 400,
      message: '"llama3.2" does not support thinking',
    })
  })

  test('tool calls reach the client as message.tool_calls', async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }]
    const call = { name: 'get_weather', arguments: { city: 'Tokyo', days: 3 } }
    mock.enqueue({ tool_calls: [call] }, { content: 'Checking.', tool_calls: [call] })
    const res = await client.chat({ model: 'llama3.2', messages: ask('weather?'), tools })
    expect(res.message.tool_calls?.[0]?.function.name).toBe('get_weather')
    expect(res.message.tool_calls?.[0]?.function.arguments).toEqual({ city: 'Tokyo', days: 3 })
    expect(res.message.content).toBe('')

    const { chunks } = await drain(
      await client.chat({ model: 'llama3.2', messages: ask('weather?'), tools, stream: true }),
    )
    const withCalls = chunks.filter((c) => c.message.tool_calls?.length)
    expect(withCalls).toHaveLength(1)
    expect(withCalls[0]?.message.tool_calls?.[0]?.function).toMatchObject(call)
    expect(chunks.indexOf(withCalls[0]!)).toBe(chunks.length - 2)
    expect((await responseError(client.chat({ model: 'llava', messages: ask('x'), tools }))).message).toBe(
      ollamaErrors.toolsUnsupported('llava'),
    )
  })

  test('format with a JSON schema yields conforming JSON', async () => {
    const format = {
      type: 'object',
      $defs: { level: { type: 'string', enum: ['low', 'high'] } },
      properties: {
        name: { type: 'string', minLength: 20 },
        age: { type: 'integer', minimum: 18, maximum: 65 },
        score: { type: 'number', exclusiveMinimum: 0.5, maximum: 0.9 },
        tags: { type: 'array', items: { type: 'string' }, minItems: 2, uniqueItems: true },
        level: { $ref: '#/$defs/level' },
        nickname: { anyOf: [{ type: 'null' }, { type: 'string' }] },
        active: { type: 'boolean' },
        address: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      },
      required: ['name', 'age', 'score', 'tags', 'level', 'nickname', 'active', 'address'],
    }
    const res = await client.chat({ model: 'llama3.2', messages: ask('who?'), format })
    const value = JSON.parse(res.message.content)
    expect(Object.keys(value).sort()).toEqual([...format.required].sort())
    expect(typeof value.name === 'string' && value.name.length >= 20).toBe(true)
    expect(Number.isInteger(value.age) && value.age >= 18 && value.age <= 65).toBe(true)
    expect(value.score > 0.5 && value.score <= 0.9).toBe(true)
    expect(value.tags.length).toBeGreaterThanOrEqual(2)
    expect(new Set(value.tags).size).toBe(value.tags.length)
    expect(['low', 'high']).toContain(value.level)
    expect(typeof value.nickname).toBe('string')
    expect(typeof value.active).toBe('boolean')
    expect(typeof value.address.city).toBe('string')

    const json = await client.generate({ model: 'llama3.2', prompt: 'p', format: 'json' })
    expect(JSON.parse(json.response ?? '')).toEqual({ answer: 'Simulated answer to: p' })
    const bad = await drain(
      await client.chat({ model: 'llama3.2', messages: ask('x'), format: 'xml', stream: true }),
    )
    expect(bad.error?.message).toBe(ollamaErrors.invalidFormat('xml'))
  })

  test('generate streams `response` chunks, thinking first', async () => {
    mock.enqueue({ thinking: 'hmm', content: 'Once upon a time' })
    const { chunks } = await drain(await client.generate({ model: 'qwen3', prompt: 'story', stream: true }))
    expect(chunks[0]).toMatchObject({ thinking: 'hmm', response: '', done: false })
    expect(chunks.map((c) => c.response).join('')).toBe('Once upon a time')
    expect(chunks.at(-1)).toMatchObject({ done: true, done_reason: 'stop', response: '' })
    expect(chunks.at(-1)?.context.length).toBeGreaterThan(0)
  })

  test('options.num_predict truncates with done_reason "length"', async () => {
    mock.enqueue({ content: 'one two three four five' })
    const res = await client.chat({ model: 'llama3.2', messages: ask('x'), options: { num_predict: 2 } })
    expect(res.message.content).toBe('one two')
    expect(res.done_reason).toBe('length')
  })
})

describe('scripting', () => {
  test('enqueued replies come first, then the script handler, then the default', async () => {
    mock.enqueue({ content: 'queued' })
    const seen: number[] = []
    mock.script(({ index, path, body }) => {
      seen.push(index)
      return body.messages.at(-1).content === 'default please' ? undefined : { content: `${path} #${index}` }
    })
    const say = async (text: string) =>
      (await client.chat({ model: 'llama3.2', messages: ask(text) })).message.content
    expect(await say('a')).toBe('queued')
    expect(await say('b')).toBe('/api/chat #1')
    expect(await say('default please')).toBe('Simulated answer to: default please')
    expect(seen).toEqual([1, 2])
  })

  test('requests are recorded with their bodies', async () => {
    await client.list()
    await client.chat({
      model: 'llama3.2',
      messages: [{ role: 'system', content: 'Be brief.' }, ...ask('Hi!')],
    })
    expect(mock.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /api/tags', 'POST /api/chat'])
    const chat = mock.requests[1]!
    expect(chat.body).toMatchObject({ model: 'llama3.2', stream: false })
    expect(chat.body.messages.map((m: { content: string }) => m.content)).toEqual(['Be brief.', 'Hi!'])
    expect(chat.at).toBeInstanceOf(Date)
    expect(mock.requests[0]!.body).toBeUndefined()
  })

  test('whole-request errors and unknown models arrive as ResponseError', async () => {
    mock.enqueue({
      error: { status: 503, message: 'server busy, please try again.  maximum pending requests exceeded' },
    })
    expect(await responseError(client.chat({ model: 'llama3.2', messages: ask('x'), stream: true }))).toEqual(
      {
        name: 'ResponseError',
        status: 503,
        message: 'server busy, please try again.  maximum pending requests exceeded',
      },
    )
    const unknown = await responseError(client.generate({ model: 'ghost:7b', prompt: 'x' }))
    expect(unknown).toEqual({ name: 'ResponseError', status: 404, message: "model 'ghost:7b' not found" })
  })
})

describe('failures and timing', () => {
  test('failAfterTokens: the stream yields N tokens, then the iterator throws', async () => {
    const content = 'a b c d e f g h i j'
    mock.enqueue({ content, failAfterTokens: 4, failMessage: 'llama runner process has terminated' })
    const { chunks, error } = await drain(
      await client.chat({ model: 'llama3.2', messages: ask('x'), stream: true }),
    )
    expect(chunks.map((c) => c.message.content)).toEqual(tokensOf(content).slice(0, 4))
    expect(error?.message).toBe('llama runner process has terminated')

    mock.enqueue({ failAfterTokens: 1, failMessage: 'boom' })
    expect(await responseError(client.chat({ model: 'llama3.2', messages: ask('x') }))).toMatchObject({
      status: 500,
      message: 'boom',
    })
  })

  test('hang + client.abort(): iteration ends and the server stays healthy', async () => {
    mock.enqueue({ content: 'first second third', hang: true, tokensPerSecond: 200 })
    const stream = await client.chat({ model: 'llama3.2', messages: ask('x'), stream: true })
    const received: string[] = []
    let error: Error | undefined
    try {
      for await (const chunk of stream) {
        received.push(chunk.message.content)
        if (received.length === 3) client.abort()
      }
    } catch (e) {
      error = e as Error
    }
    expect(received.join('')).toBe('first second third')
    expect(error?.name).toBe('AbortError')
    expect(await waitFor(() => mock.activeGenerations === 0)).toBe(true)

    // With nothing to stream, a hang still sends headers (one empty chunk) so the client can abort.
    mock.enqueue({ content: '', hang: true })
    const silent = await client.chat({ model: 'llama3.2', messages: ask('x'), stream: true })
    setTimeout(() => silent.abort(), 50)
    expect((await drain(silent)).error?.name).toBe('AbortError')
    expect(await waitFor(() => mock.activeGenerations === 0)).toBe(true)

    expect((await client.chat({ model: 'llama3.2', messages: ask('still there?') })).done).toBe(true)
  })

  test('tokensPerSecond paces the stream (lower bound only)', async () => {
    const content = Array.from({ length: 20 }, (_, i) => `w${i}`).join(' ')
    mock.enqueue({ content, tokensPerSecond: 100 }, { content, delayMs: 150 })
    const started = performance.now()
    const { chunks } = await drain(await client.chat({ model: 'llama3.2', messages: ask('x'), stream: true }))
    expect(performance.now() - started).toBeGreaterThanOrEqual(150)
    expect(chunks).toHaveLength(21)
    expect(chunks.at(-1)!.eval_duration).toBeGreaterThanOrEqual(150e6)

    const delayed = performance.now()
    await client.chat({ model: 'llama3.2', messages: ask('x') })
    expect(performance.now() - delayed).toBeGreaterThanOrEqual(140)
  })

  test('breakConnection: the client errors instead of seeing a clean end', async () => {
    mock.enqueue(
      { content: 'one two three four', breakConnection: true, failAfterTokens: 2 },
      { breakConnection: true },
    )
    const { chunks, error } = await drain(
      await client.chat({ model: 'llama3.2', messages: ask('x'), stream: true }),
    )
    expect(chunks.map((c) => c.message.content)).toEqual(['one', ' two'])
    // A network failure (fetch's TypeError), not an NDJSON error line or a truncated-but-clean stream.
    expect(error?.name).toBe('TypeError')
    await expect(client.chat({ model: 'llama3.2', messages: ask('x') })).rejects.toThrow()
  })

  test('stop() ends hanging streams and pending unstreamed requests', async () => {
    const own = await startMockOllama()
    const ownClient = new Ollama({ host: own.url })
    own.enqueue({ content: 'partial', hang: true }, { hang: true })
    const stream = await ownClient.chat({ model: 'llama3.2', messages: ask('x'), stream: true })
    const pending = ownClient.chat({ model: 'llama3.2', messages: ask('x') }).then(
      () => 'resolved',
      () => 'rejected',
    )
    expect(await waitFor(() => own.activeGenerations === 2)).toBe(true)
    await own.stop()
    const { chunks, error } = await drain(stream)
    expect(chunks.map((c) => c.message.content)).toEqual(['partial'])
    expect(error).toBeInstanceOf(Error)
    expect(await pending).toBe('rejected')
    expect(own.activeGenerations).toBe(0)
  })
})

describe('raw HTTP', () => {
  const post = (path: string, body: string) => fetch(`${mock.url}${path}`, { method: 'POST', body })

  test('malformed bodies get 400 JSON errors like Ollama', async () => {
    const malformed = await post('/api/chat', '{"model": ')
    expect(malformed.status).toBe(400)
    expect(typeof ((await malformed.json()) as { error: unknown }).error).toBe('string')
    expect(await (await post('/api/generate', '')).json()).toEqual({ error: 'missing request body' })
    expect(await (await post('/api/chat', '[1]')).json()).toEqual({
      error: 'json: cannot unmarshal array into Go value of type api.ChatRequest',
    })
    expect(await (await post('/api/chat', '{"messages": []}')).json()).toEqual({ error: 'model is required' })
  })

  test('unknown paths are plain-text 404s; / reports that Ollama is running', async () => {
    const missing = await fetch(`${mock.url}/api/nope`)
    expect(missing.status).toBe(404)
    expect(await missing.text()).toBe('404 page not found')
    expect(await (await fetch(`${mock.url}/`)).text()).toBe('Ollama is running')
    const stream = await post('/api/chat', JSON.stringify({ model: 'llama3.2', messages: ask('x') }))
    expect(stream.headers.get('content-type')).toBe('application/x-ndjson')
    const lines = (await stream.text()).trim().split('\n')
    expect(JSON.parse(lines.at(-1)!).done).toBe(true)
  })

  test('an aborted unstreamed request is noticed by the server', async () => {
    mock.enqueue({ hang: true }, { delayMs: 60_000 })
    for (const stream of [false, true]) {
      const abort = new AbortController()
      const body = JSON.stringify({ model: 'llama3.2', messages: ask('x'), stream })
      const request = fetch(`${mock.url}/api/chat`, { method: 'POST', body, signal: abort.signal })
      expect(await waitFor(() => mock.activeGenerations === 1)).toBe(true)
      abort.abort()
      expect(
        await request.then(
          () => 'answered',
          (e: Error) => e.name,
        ),
      ).toBe('AbortError')
      expect(await waitFor(() => mock.activeGenerations === 0)).toBe(true)
    }
  })

  test('tokensOf keeps whitespace so tokens join back to the text', () => {
    expect(tokensOf('Hi  there,\nfriend ')).toEqual(['Hi', '  there,', '\nfriend', ' '])
    expect(tokensOf('')).toEqual([])
  })
})
