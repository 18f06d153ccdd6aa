import { expect, test } from 'bun:test'
import { startMockOllama } from './fakes/ollama.ts'
import { startTestServer, waitFor } from './helpers.ts'

test('/ready reports whether Ollama answers at OLLAMA_HOST, without failing readiness', async () => {
  const ollama = await startMockOllama()
  const server = await startTestServer({ OLLAMA_HOST: ollama.url })
  try {
    const up = await server.api('/ready', { key: null })
    expect(up.status).toBe(200)
    expect(up.body.ollama).toBe('ok')
    expect(ollama.requests.some((r) => r.path === '/api/version')).toBe(true)
    await ollama.stop()
    // The answer is cached for a few seconds; it turns to "down" once the cache expires.
    const down = await waitFor(
      async () => {
        const r = await server.api('/ready', { key: null })
        return r.body.ollama === 'down' ? r : undefined
      },
      10_000,
      'ollama to be reported down',
    )
    expect(down.status).toBe(200)
    expect(down.body.database).toBe('ok')
  } finally {
    await server.stop()
    await ollama.stop().catch(() => {})
  }
})
