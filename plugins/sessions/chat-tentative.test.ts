/**
 * Live tokens before the commit on the chat socket (`?tentative=1`): deltas without a seq, then an ack with
 * the seq or a retraction; what a client keeps is exactly the durable log, for opted-in and stock sockets
 * alike. The kill -9 case, with two processes, is test/tentative-kill9.test.ts.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from '../../test/helpers.ts'
import { ChatFrames } from './chat-client.ts'

let ollama: MockOllama
let server: TestServer

beforeAll(async () => {
  ollama = await startMockOllama()
  server = await startTestServer({ OLLAMA_HOST: ollama.url, OLLAMA_MODEL: 'qwen3' })
}, 60_000)
afterAll(async () => {
  await server?.stop()
  await ollama?.stop()
})
beforeEach(() => ollama.reset())

const words = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`).join(' ')

/** A socket whose frames go through the client contract (ChatFrames); `raw` keeps every frame as sent. */
async function connect(path: string) {
  const raw: any[] = []
  const ws = new WebSocket(`${server.url.replace('http', 'ws')}${path}`, {
    headers: { authorization: `Bearer ${ADMIN_KEY}` },
  } as any)
  const kept = new ChatFrames()
  const closed = new Promise<number>((resolve) =>
    ws.addEventListener('close', (e) => {
      kept.closed()
      resolve(e.code)
    }),
  )
  ws.addEventListener('message', (e) => {
    const frame = JSON.parse(String(e.data))
    raw.push(frame)
    kept.apply(frame)
  })
  await new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve, { once: true })
    ws.addEventListener('error', reject, { once: true })
  })
  const next = (type: string) => waitFor(() => raw.find((f) => f.type === type), 10_000, `a ${type} frame`)
  return { ws, raw, kept, closed, next, send: (v: unknown) => ws.send(JSON.stringify(v)) }
}

/** The session's durable events of one answer, from the table. */
async function durable(sessionId: string, messageId: string) {
  const events = await server.running.gantry.events.readSince(sessionId, 0, 10_000)
  return events.filter((e) => (e.data as any)?.message_id === messageId)
}
const durableText = async (sessionId: string, messageId: string, type = 'content') =>
  (await durable(sessionId, messageId))
    .filter((e) => e.type === type)
    .map((e) => (e.data as any).content)
    .join('')

describe('WS /ws/chat/:session_id?tentative=1', () => {
  test('deltas come without a seq, then acks carry it; the kept text is the durable log, as a stock socket has it', async () => {
    const answer = words('w', 120)
    ollama.enqueue({ thinking: words('r', 20), content: answer, tokensPerSecond: 400 })
    const fast = await connect('/ws/chat/tentative_basic?tentative=1')
    const connected = await fast.next('connected')
    expect(connected.tentative).toBe(true)
    const stock = await connect(`/ws/chat/${connected.session_id}`)
    expect((await stock.next('connected')).tentative).toBeUndefined()
    fast.send({ type: 'chat', payload: { message: 'count', enable_reasoning: true } })
    const response = await fast.next('response')
    await stock.next('response')
    const messageId = response.message_id as string

    const tentative = fast.raw.filter((f) => typeof f.tentative === 'number')
    expect(tentative.length).toBeGreaterThan(0)
    // A tentative frame has no seq and is only ever a delta; every seq-bearing frame is an event or an ack.
    expect(tentative.every((f) => f.seq === undefined && ['content', 'reasoning'].includes(f.type))).toBe(
      true,
    )
    expect(fast.raw.filter((f) => f.type === 'ack').length).toBeGreaterThan(0)
    expect(fast.kept.problems).toEqual([])
    expect(fast.kept.provisional.size).toBe(0)
    expect(fast.kept.counts.retract).toBe(0)
    // Nothing else arrives tentatively: the user message, reasoning_complete and response come with a seq.
    for (const type of ['message', 'reasoning_complete', 'response'])
      expect(fast.raw.find((f) => f.type === type)?.seq).toBeNumber()

    expect(fast.kept.text('content', messageId)).toBe(answer)
    expect(fast.kept.text('reasoning', messageId)).toBe(words('r', 20))
    expect(await durableText(connected.session_id, messageId)).toBe(answer)
    // Both sockets end at the head, with every other event at the same seq.
    const head = await server.running.gantry.events.head(connected.session_id)
    expect([fast.kept.last, stock.kept.last]).toEqual([head, head])
    const others = (frames: any[]) =>
      frames.filter((f) => !['content', 'reasoning'].includes(f.type)).map((f) => `${f.seq} ${f.type}`)
    expect(others(fast.kept.committed)).toEqual(others(stock.kept.committed))
    // Every tentative frame is acknowledged once (acks of consecutive events may share a frame).
    const acked = fast.raw.filter((f) => f.type === 'ack').reduce((n, f) => n + f.tentative.length, 0)
    expect(acked).toBe(tentative.length)
    // The old protocol is unchanged for a stock socket: no tentative, ack or retract frame ever.
    expect(stock.raw.some((f) => f.tentative !== undefined || ['ack', 'retract'].includes(f.type))).toBe(
      false,
    )
    fast.ws.close()
    stock.ws.close()
  })

  test('a socket that joins mid-answer replays committed events, then goes live; resume by an acked seq is exact', async () => {
    ollama.enqueue({ content: words('j', 200), tokensPerSecond: 200 })
    const first = await connect('/ws/chat/tentative_join?tentative=1')
    const { session_id: sid } = await first.next('connected')
    first.send({ type: 'chat', payload: { message: 'go' } })
    await waitFor(() => first.kept.counts.ack >= 10, 10_000, 'ten acks')
    // Comes back mid-answer without since: the text so far (replayed), then the rest live and tentative.
    const joiner = await connect(`/ws/chat/${sid}?tentative=1`)
    // Leaves with acked text only, resumes by its last seq, and must end with the same text.
    const cut = first.kept.last!
    first.ws.close()
    await first.closed
    const resumed = await connect(`/ws/chat/${sid}?tentative=1&since=${cut}`)
    const response = await resumed.next('response')
    await joiner.next('response')
    const messageId = response.message_id as string
    const text = await durableText(sid, messageId)
    expect(text).toBe(words('j', 200))
    expect(joiner.kept.text('content', messageId)).toBe(text)
    expect(joiner.kept.counts.tentative).toBeGreaterThan(0)
    const resumedText =
      first.kept.committedText('content', messageId) + resumed.kept.text('content', messageId)
    expect(resumedText).toBe(text)
    for (const c of [joiner, resumed]) expect(c.kept.problems).toEqual([])
    joiner.ws.close()
    resumed.ws.close()
  })

  test('a takeover mid-answer: what the old attempt showed and could not commit is retracted; nothing kept past the log', async () => {
    ollama.enqueue({ content: words('t', 400), tokensPerSecond: 200 })
    const fast = await connect('/ws/chat/tentative_fenced?tentative=1')
    const { session_id: sid } = await fast.next('connected')
    const stock = await connect(`/ws/chat/${sid}`)
    await stock.next('connected')
    fast.send({ type: 'chat', payload: { message: 'go' } })
    const accepted = await fast.next('accepted')
    const messageId = accepted.assistant_message_id as string
    await waitFor(() => fast.kept.counts.ack >= 10, 10_000, 'ten acks')
    // Another instance claims the job (as after this one's lease ran out): this attempt's appends are fenced.
    await server.running.gantry.store.query(
      `update jobs set lease_epoch = lease_epoch + 1, lease_owner = 'another-instance',
              lease_expires_at = now() + interval '1 minute'
        where id = $1 and status = 'running'`,
      [messageId],
    )
    await waitFor(() => fast.kept.counts.retract > 0, 10_000, 'a retraction')
    await waitFor(
      () => server.log.records().some((r) => r.msg === 'job taken over by another attempt; stopping'),
      15_000,
      'the old attempt to stop',
    )
    await Bun.sleep(300) // whatever the stopped attempt still had in hand, it has sent by now
    const text = await durableText(sid, messageId)
    expect(text.length).toBeGreaterThan(0)
    expect(words('t', 400).startsWith(text)).toBe(true)
    // Shown before the commit, never committed: proof the tokens did not wait for one.
    expect(fast.kept.counts.retracted).toBeGreaterThan(0)
    expect(fast.kept.provisional.size).toBe(0)
    expect(fast.kept.problems).toEqual([])
    expect(fast.kept.text('content', messageId)).toBe(text)
    expect(stock.kept.text('content', messageId)).toBe(text)
    fast.ws.close()
    stock.ws.close()
  })

  test('a bad ?tentative= is a 422 JSON answer before the upgrade', async () => {
    const res = await fetch(`${server.url}/ws/chat/tentative_bad?tentative=maybe`, {
      headers: {
        authorization: `Bearer ${ADMIN_KEY}`,
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      },
    })
    expect(res.status).toBe(422)
    expect((await res.json()).error).toBe('validation_failed')
  })
})
