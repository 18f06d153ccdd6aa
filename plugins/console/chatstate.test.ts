/**
 * The console's conversation state (client/src/chatstate.ts) under the chat socket's live tokens
 * (`?tentative=1`): tentative text shown at once and kept apart per message, committed by `ack`, dropped by
 * `retract` and when the socket closes; after a resume by seq the text is exactly the durable log. The last test
 * plays a simulated server against both the console and the reference client (plugins/sessions/chat-client.ts).
 */
import { describe, expect, test } from 'bun:test'
import { ChatFrames } from '../sessions/chat-client.ts'
import { type ChatMessage, Conversation } from './client/src/chatstate.ts'
import type { Frame } from './client/src/live.ts'

const message = (conv: Conversation, id: string): ChatMessage => {
  const m = conv.messages.value.find((x) => x.id === id)
  if (!m) throw new Error(`no message ${id}`)
  return m
}

/** A conversation with one question asked and its answer `a1` begun, as a live socket shows it. */
function asked() {
  const conv = new Conversation()
  conv.load([])
  conv.apply({ type: 'connected', since: 0, generating: false, tentative: true })
  conv.apply({ type: 'message', seq: 1, message_id: 'u1', content: 'Why?', assistant_message_id: 'a1' })
  return conv
}
const delta = (tentative: number, content: string, type = 'content', message_id = 'a1'): Frame => ({
  type,
  message_id,
  content,
  tentative,
})

describe('Conversation with live tokens (?tentative=1)', () => {
  test('tentative text shows at once, apart per message and field; acks commit it in their order', () => {
    const conv = asked()
    const a1 = message(conv, 'a1')
    conv.apply(delta(1, 'Think ', 'reasoning'))
    conv.apply(delta(2, 'Because ', 'content'))
    conv.apply(delta(3, 'light '))
    expect([a1.thinking.value, a1.content.value]).toEqual(['Think ', 'Because light '])
    expect(a1.kept).toEqual({ content: '', thinking: '' })
    expect(conv.unacknowledged).toBe(3)
    conv.apply({ type: 'ack', seq: 3, tentative: [1, 2] })
    expect(a1.kept).toEqual({ content: 'Because ', thinking: 'Think ' })
    expect(a1.content.value).toBe('Because light ')
    conv.apply(delta(4, 'scatters.'))
    conv.apply({ type: 'ack', seq: 4, tentative: [3, 4] })
    expect(a1.kept.content).toBe('Because light scatters.')
    expect(a1.content.value).toBe('Because light scatters.')
    expect(conv.unacknowledged).toBe(0)
    conv.apply({
      type: 'response',
      seq: 5,
      message_id: 'a1',
      content: 'Because light scatters.',
      metrics: {},
    })
    expect(a1.status.value).toBe('complete')

    // The next answer's tentative text never lands in the first one.
    conv.apply({ type: 'message', seq: 6, message_id: 'u2', content: 'And?', assistant_message_id: 'a2' })
    conv.apply(delta(5, 'Also ', 'content', 'a2'))
    expect(message(conv, 'a1').content.value).toBe('Because light scatters.')
    expect(message(conv, 'a2').content.value).toBe('Also ')
    // A committed delta (one nobody took live) goes after the committed text, before the tentative one.
    conv.apply({ type: 'content', seq: 7, message_id: 'a2', content: 'so ' })
    expect(message(conv, 'a2').content.value).toBe('so Also ')
    expect(message(conv, 'a2').kept.content).toBe('so ')
  })

  test('a retraction drops exactly its frames; the rest keeps its place', () => {
    const conv = asked()
    const a1 = message(conv, 'a1')
    conv.apply(delta(1, 'one '))
    conv.apply({ type: 'ack', seq: 2, tentative: [1] })
    conv.apply(delta(2, 'two '))
    conv.apply(delta(3, 'three '))
    conv.apply(delta(4, 'four '))
    conv.apply({ type: 'retract', tentative: [2, 3] })
    expect(a1.content.value).toBe('one four ')
    expect(a1.kept.content).toBe('one ')
    // Unknown ids (already settled) change nothing.
    conv.apply({ type: 'retract', tentative: [1, 99] })
    conv.apply({ type: 'ack', seq: 3, tentative: [4, 98] })
    expect([a1.kept.content, a1.content.value]).toEqual(['one four ', 'one four '])
  })

  test('a socket that closes takes its unacknowledged text; the resume keeps what is committed and adds the rest once', () => {
    const conv = asked()
    const a1 = message(conv, 'a1')
    conv.apply(delta(1, 'alpha ', 'reasoning'))
    conv.apply({ type: 'ack', seq: 2, tentative: [1] })
    conv.apply(delta(2, 'beta '))
    conv.apply({ type: 'ack', seq: 3, tentative: [2] })
    conv.apply(delta(3, 'gamma '))
    conv.apply(delta(4, 'delta '))
    expect(a1.content.value).toBe('beta gamma delta ')
    conv.closed()
    expect([a1.thinking.value, a1.content.value]).toEqual(['alpha ', 'beta '])
    expect(conv.unacknowledged).toBe(0)
    // The server had committed "gamma " (its ack was lost with the socket) and the next instance wrote "epsilon "
    // where "delta " was: the resume after seq 3 replays both, and says the answer is still being written.
    conv.apply({ type: 'connected', since: 3, generating: true, active_message_id: 'a1', tentative: true })
    expect(a1.content.value).toBe('beta ')
    conv.apply({ type: 'content', seq: 4, message_id: 'a1', content: 'gamma ' })
    conv.apply({ type: 'content', seq: 5, message_id: 'a1', content: 'epsilon ' })
    conv.apply(delta(1, 'zeta'))
    expect(a1.content.value).toBe('beta gamma epsilon zeta')
    conv.apply({ type: 'ack', seq: 6, tentative: [1] })
    expect(a1.kept).toEqual({ content: 'beta gamma epsilon zeta', thinking: 'alpha ' })
  })

  test('a first connection mid-answer replays it from its start: the message begins again from nothing', () => {
    const conv = new Conversation()
    conv.load([
      {
        message_id: 'a1',
        role: 'assistant',
        content: 'stale partial',
        thinking: null,
        tool_calls: [],
        tool_results: [],
        status: 'streaming',
        error: null,
        completion_tokens: null,
        timings: null,
      },
    ])
    conv.apply({ type: 'connected', since: 4, generating: true, active_message_id: 'a1', tentative: true })
    const a1 = message(conv, 'a1')
    expect([a1.content.value, a1.kept.content]).toEqual(['', ''])
    conv.apply({ type: 'content', seq: 5, message_id: 'a1', content: 'fresh ' })
    conv.apply(delta(1, 'start'))
    expect(a1.content.value).toBe('fresh start')
  })

  test('a simulated server with acks, lost acks, retractions and drops: always what the reference client shows, and in the end exactly the durable log', () => {
    const seen = { tentative: 0, ack: 0, retracted: 0, dropped: 0, resumes: 0 }
    for (let seed = 1; seed <= 400; seed++) {
      const counts = simulate(seed)
      for (const key of Object.keys(seen) as (keyof typeof seen)[]) seen[key] += counts[key]
    }
    // Every path was taken, many times over.
    for (const count of Object.values(seen)) expect(count).toBeGreaterThan(100)
  })
})

/** A small deterministic generator (mulberry32), so that a failing seed can be replayed. */
function random(seed: number) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * Three answers with reasoning, generated token by token as the server does it: while a socket is open each
 * token goes to it as a tentative frame and into the next append; an append commits (its ack sent at once or
 * later, always before the next event, or lost when the socket closes) or fails (retracted; the text never
 * reaches the log). The socket drops at random; meanwhile tokens are appended directly; the client resumes
 * after its last seq and gets the log's events after it. After every frame the console shows what the reference
 * client shows; before each `response` the answer shown is exactly the durable text, with no token twice.
 */
function simulate(seed: number) {
  let resumes = 0
  const rand = random(seed)
  const log: Frame[] = []
  const conv = new Conversation()
  const ref = new ChatFrames()
  let last: number | undefined
  let open = true
  let nextTentative = 0
  let batch: { id: number; type: string; message_id: string; text: string }[] = []
  let acks: { seq: number; ids: number[] } | undefined
  const where = () => `seed ${seed}`

  const check = (ids: string[]) => {
    for (const id of ids) {
      const m = conv.messages.value.find((x) => x.id === id)
      if (!m) continue
      expect(m.content.value, where()).toBe(ref.text('content', id))
      expect(m.thinking.value, where()).toBe(ref.text('reasoning', id))
    }
  }
  // Frames reach both clients as follow() passes them on: a seq at or before the resume point is dropped.
  const deliver = (f: Frame) => {
    if (typeof f.seq === 'number') {
      if (last !== undefined && f.seq <= last) return
      last = f.seq
    } else if (f.type === 'connected' && last === undefined) last = f.since as number
    conv.apply(f)
    ref.apply(f)
    check(['a1', 'a2', 'a3'])
  }
  const flushAcks = () => {
    if (!acks) return
    const frame = { type: 'ack', seq: acks.seq, tentative: acks.ids }
    acks = undefined
    if (open) deliver(frame)
  }
  const append = (type: string, message_id: string, content: string) => {
    const event = { type, seq: log.length + 1, message_id, content }
    log.push(event)
    return event
  }
  // An event the socket sees as it is committed (every event but a delta shown live).
  const publish = (type: string, fields: Record<string, unknown>) => {
    const event = { ...fields, type, seq: log.length + 1 }
    log.push(event)
    flushAcks()
    if (open) deliver(event)
  }
  const commitBatch = (mayFail: boolean) => {
    if (!batch.length) return
    const parts = batch
    batch = []
    const ids = parts.map((p) => p.id)
    if (mayFail && rand() < 0.1) {
      if (open) deliver({ type: 'retract', tentative: ids })
      return
    }
    const event = append(parts[0]!.type, parts[0]!.message_id, parts.map((p) => p.text).join(''))
    acks = { seq: event.seq, ids: [...(acks?.ids ?? []), ...ids] }
    if (rand() < 0.5) flushAcks()
  }
  const drop = () => {
    // The generating side still appends what it had gathered; the socket and its unsent acks are gone.
    const parts = batch
    batch = []
    if (parts.length) append(parts[0]!.type, parts[0]!.message_id, parts.map((p) => p.text).join(''))
    acks = undefined
    open = false
    conv.closed()
    ref.closed()
    check(['a1', 'a2', 'a3'])
  }
  const reopen = (active: string) => {
    open = true
    resumes++
    deliver({ type: 'connected', since: last, generating: true, active_message_id: active, tentative: true })
    for (const e of log) if ((e.seq as number) > (last ?? 0)) deliver(e)
  }

  conv.load([])
  deliver({ type: 'connected', since: 0, generating: false, tentative: true })
  for (let n = 1; n <= 3; n++) {
    const a = `a${n}`
    publish('message', { message_id: `u${n}`, content: `question ${n}`, assistant_message_id: a })
    const tokens = [
      ...Array.from({ length: 8 + Math.floor(rand() * 12) }, (_, i) => ['reasoning', `${a}r${i} `]),
      ...Array.from({ length: 10 + Math.floor(rand() * 30) }, (_, i) => ['content', `${a}c${i} `]),
    ] as [string, string][]
    for (const [type, text] of tokens) {
      if (batch.length && batch[0]!.type !== type) commitBatch(true)
      if (!open) {
        append(type, a, text)
        if (rand() < 0.25) reopen(a)
        continue
      }
      const id = ++nextTentative
      deliver({ type, message_id: a, content: text, tentative: id })
      batch.push({ id, type, message_id: a, text })
      const r = rand()
      if (r < 0.3) commitBatch(true)
      else if (r < 0.4) flushAcks()
      else if (r < 0.44) drop()
    }
    commitBatch(false)
    if (!open) reopen(a)
    flushAcks()
    const durable = (type: string) =>
      log
        .filter((e) => e.type === type && e.message_id === a)
        .map((e) => e.content)
        .join('')
    const m = message(conv, a)
    // Everything tentative was settled: the answer shown is the log's, and no token shows twice.
    expect(conv.unacknowledged, where()).toBe(0)
    expect([m.thinking.value, m.content.value], where()).toEqual([durable('reasoning'), durable('content')])
    expect(m.kept, where()).toEqual({ content: durable('content'), thinking: durable('reasoning') })
    const shown = m.content.value.split(' ').filter(Boolean)
    expect(new Set(shown).size, where()).toBe(shown.length)
    publish('response', { message_id: a, content: durable('content'), metrics: {} })
    expect(m.content.value, where()).toBe(durable('content'))
  }
  expect(ref.problems, where()).toEqual([])
  return { ...ref.counts, resumes }
}
