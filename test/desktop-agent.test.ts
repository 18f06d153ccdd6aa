/** The desktop agent end to end: a model asks for a screenshot, the vnc plugin's tool takes it, the PNG reaches the model. */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import { startTestServer, type TestServer, waitFor } from './helpers.ts'

const haveDesktop = ['Xvfb', 'x11vnc', 'xdotool', 'import'].every((b) => Bun.which(b))
let ollama: MockOllama
let server: TestServer

beforeAll(async () => {
  if (!haveDesktop) return
  // A vision model that can call tools, as the desktop agent needs.
  ollama = await startMockOllama({
    models: [{ name: 'qwen2.5vl:latest', capabilities: ['completion', 'tools', 'vision'] }],
  })
  server = await startTestServer({ OLLAMA_HOST: ollama.url, OLLAMA_MODEL: 'qwen2.5vl' })
}, 60_000)
afterAll(async () => {
  await server?.api('/api/vnc/disconnect', { method: 'POST' })
  await server?.stop()
  await ollama?.stop()
})

test.skipIf(!haveDesktop)(
  'a screenshot from the computer tool reaches the model as an image, and the call is recorded',
  async () => {
    ollama.enqueue(
      { tool_calls: [{ name: 'computer', arguments: { action: 'screenshot' } }] },
      { content: 'I see an empty desktop.' },
    )
    const session = await server.api('/api/sessions', { method: 'POST', json: { agent: 'desktop' } })
    expect(session.status).toBe(201)
    const id = session.body.session_id
    const chat = await server.api(`/api/sessions/${id}/chat`, {
      method: 'POST',
      json: { message: 'What is on the screen?' },
    })
    expect(chat.status).toBe(202)
    const done = await waitFor(
      async () => {
        const res = await server.api(`/api/sessions/${id}/messages`)
        const last = res.body.messages.at(-1)
        return last?.role === 'assistant' && last.status === 'complete' ? res.body.messages : undefined
      },
      30_000,
      'the answer',
    )
    expect(done.at(-1).content).toBe('I see an empty desktop.')
    const second = ollama.requests.filter((r) => r.path === '/api/chat')[1]!
    const toolMessage = second.body.messages.find((m: any) => m.role === 'tool')
    expect(toolMessage.images).toHaveLength(1)
    const png = Buffer.from(toolMessage.images[0], 'base64')
    expect(png.subarray(1, 4).toString()).toBe('PNG')
    expect(JSON.stringify(done)).toContain('computer')
  },
)
