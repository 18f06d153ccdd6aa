/**
 * The README's promise for browsers and header-less clients: a single-use ticket from POST /api/ws-ticket opens
 * the chat socket (`/ws/chat/:id?ticket=`) as it opens the event socket — once.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import { startTestServer, type TestServer } from './helpers.ts'

let mock: MockOllama
let server: TestServer
beforeAll(async () => {
  mock = await startMockOllama()
  server = await startTestServer({ OLLAMA_HOST: mock.url })
}, 60_000)
afterAll(async () => {
  await server?.stop()
  await mock?.stop()
}, 30_000)

const ticket = async () => (await server.api('/api/ws-ticket', { method: 'POST' })).body.ticket as string

/** The first frame of a socket, or how it was refused or closed. */
function firstFrame(url: string): Promise<{ frame?: any; refused?: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url)
    ws.onmessage = (m) => {
      resolve({ frame: JSON.parse(String(m.data)) })
      ws.close()
    }
    ws.onerror = () => resolve({ refused: 'error' })
    ws.onclose = (e) => resolve({ refused: `closed ${e.code}` })
  })
}

describe('a WebSocket ticket on the chat socket', () => {
  test('opens /ws/chat/:id once; the same ticket again is refused', async () => {
    const base = server.url.replace('http', 'ws')
    const once = await ticket()
    const opened = await firstFrame(`${base}/ws/chat/ticketed?ticket=${once}`)
    expect(opened.frame).toMatchObject({ type: 'connected', name: 'ticketed' })
    const replay = await fetch(`${server.url}/ws/chat/ticketed?ticket=${once}`, {
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': btoa('0123456789abcdef'),
      },
    })
    expect(replay.status).toBe(401)
    expect(((await replay.json()) as { error: string }).error).toBe('invalid_ticket')
  })

  test('and chats over it: the answer streams back', async () => {
    const ws = new WebSocket(
      `${server.url.replace('http', 'ws')}/ws/chat/ticketed-chat?ticket=${await ticket()}`,
    )
    const frames: any[] = []
    const answered = new Promise<void>((resolve, reject) => {
      ws.onmessage = (m) => {
        const frame = JSON.parse(String(m.data))
        frames.push(frame)
        if (frame.type === 'connected')
          ws.send(JSON.stringify({ type: 'chat', payload: { message: 'Hello over a ticket' } }))
        if (frame.type === 'response') resolve()
      }
      ws.onclose = (e) => reject(new Error(`closed ${e.code} ${e.reason}`))
    })
    await answered
    ws.close()
    expect(frames.find((f) => f.type === 'response').content).toBe('Simulated answer to: Hello over a ticket')
  })
})
