import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { createUserKey, startTestServer, type TestServer } from '../../test/helpers.ts'

let ollama: MockOllama
let server: TestServer
let client: OpenAI

beforeAll(async () => {
  ollama = await startMockOllama()
  server = await startTestServer({ OLLAMA_HOST: ollama.url, OLLAMA_MODEL: 'llama3.2' })
  const bob = await createUserKey(server, 'bob')
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: bob.key, maxRetries: 0 })
}, 60_000)
afterAll(async () => {
  await server?.stop()
  await ollama?.stop()
})
beforeEach(() => ollama.reset())

describe('OpenAI-compatible API with the official client', () => {
  test('non-streaming completion with usage, on an Ollama model', async () => {
    ollama.enqueue({ content: 'Paris is the capital of France.' })
    const completion = await client.chat.completions.create({
      model: 'llama3.2',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Capital of France?' },
      ],
      temperature: 0.2,
      max_tokens: 50,
    })
    expect(completion.object).toBe('chat.completion')
    expect(completion.choices[0]!.message).toMatchObject({
      role: 'assistant',
      content: 'Paris is the capital of France.',
    })
    expect(completion.choices[0]!.finish_reason).toBe('stop')
    expect(completion.usage!.completion_tokens).toBeGreaterThan(0)
    expect(completion.usage!.total_tokens).toBe(
      completion.usage!.prompt_tokens + completion.usage!.completion_tokens,
    )
    const sent = ollama.requests.find((r) => r.path === '/api/chat')!.body
    expect(sent.model).toBe('llama3.2')
    expect(sent.options).toMatchObject({ temperature: 0.2, num_predict: 50 })
    expect(sent.messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Capital of France?' },
    ])
  })

  test('streaming: chunks in order, reasoning as reasoning_content, usage, then [DONE]', async () => {
    ollama.enqueue({ thinking: 'Two plus two.', content: 'The answer is 4.', tokensPerSecond: 200 })
    const agent = await client.post('/agents', {
      body: { name: 'thinker', model: 'qwen3', system_prompt: 'Think, then answer.', think: true },
    })
    expect(agent).toMatchObject({ name: 'thinker', source: 'user' })
    const stream = await client.chat.completions.create({
      model: 'thinker',
      messages: [{ role: 'user', content: '2+2?' }],
      stream: true,
      stream_options: { include_usage: true },
    })
    let content = ''
    let reasoning = ''
    let finish: string | null = null
    let usage: OpenAI.CompletionUsage | undefined
    let chunks = 0
    for await (const chunk of stream) {
      chunks++
      const choice = chunk.choices[0]
      if (choice?.delta.content) content += choice.delta.content
      if ((choice?.delta as any)?.reasoning_content) reasoning += (choice!.delta as any).reasoning_content
      if (choice?.finish_reason) finish = choice.finish_reason
      if (chunk.usage) usage = chunk.usage
    }
    expect(content).toBe('The answer is 4.')
    expect(reasoning).toBe('Two plus two.')
    expect(finish).toBe('stop')
    expect(usage!.completion_tokens).toBeGreaterThan(0)
    expect(chunks).toBeGreaterThan(5)
    // The agent's system prompt and thinking were applied.
    const sent = ollama.requests.find((r) => r.path === '/api/chat')!.body
    expect(sent.messages[0]).toEqual({ role: 'system', content: 'Think, then answer.' })
    expect(sent.think).toBe(true)
    expect(sent.model).toBe('qwen3')
  })

  test('the raw stream ends with data: [DONE]', async () => {
    ollama.enqueue({ content: 'ok' })
    const bob = await createUserKey(server, 'raw-user')
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bob.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'llama3.2', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    })
    expect(res.headers.get('content-type')).toContain('text/event-stream')
    const text = await res.text()
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true)
    expect(
      text
        .split('\n\n')
        .filter(Boolean)
        .every((block) => block.startsWith('data: ')),
    ).toBe(true)
  })

  test('an unknown model is a 404 with the ollama pull hint; bad bodies are 422', async () => {
    const err = await client.chat.completions
      .create({ model: 'mistral:7b', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e) => e)
    expect(err).toBeInstanceOf(OpenAI.NotFoundError)
    expect(String(err.message)).toContain('ollama pull mistral:7b')
    const bad = await client.chat.completions
      .create({ model: 'llama3.2', messages: [] } as any)
      .catch((e) => e)
    expect(bad.status).toBe(422)
  })

  test('Ollama failing mid-stream surfaces as an error in the stream', async () => {
    ollama.enqueue({ content: 'a b c d e f', failAfterTokens: 2 })
    const stream = await client.chat.completions.create({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'go' }],
      stream: true,
    })
    let content = ''
    const err = await (async () => {
      for await (const chunk of stream) content += chunk.choices[0]?.delta.content ?? ''
    })().catch((e) => e)
    expect(content).toBe('a b')
    expect(err).toBeInstanceOf(Error)
    expect(String(err.message)).toContain('simulated failure')
  })

  test('GET /v1/models lists agents and Ollama models', async () => {
    const models = await client.models.list()
    const ids = models.data.map((m) => m.id)
    expect(ids).toEqual(
      expect.arrayContaining(['assistant', 'researcher', 'coder', 'llama3.2:latest', 'qwen3:latest']),
    )
  })
})
