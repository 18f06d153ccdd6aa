import { type Signal, signal } from '@preact/signals'
import type { Frame } from './live.ts'

export interface ToolItem {
  kind: 'call' | 'result'
  name: string
  text: string
  isError?: boolean
}

export interface ChatMessage {
  id: string
  role: string
  /** What is shown: the committed text, then this message's tentative text not acknowledged yet. */
  content: Signal<string>
  thinking: Signal<string>
  /** The committed text only (stored, from events with a seq and acknowledged tentative frames). */
  kept: { content: string; thinking: string }
  tools: Signal<ToolItem[]>
  status: Signal<string>
  metrics: Signal<string>
  error: Signal<string>
  notices: Signal<string[]>
}

export interface StoredMessage {
  message_id: string
  role: string
  content: string
  thinking: string | null
  tool_calls: { id: string; name: string; arguments: Record<string, unknown> }[]
  tool_results: { name: string; content: string; is_error: boolean }[]
  status: string
  error: { code: string; message: string } | null
  completion_tokens: number | null
  timings: Record<string, number> | null
}

export const metricsText = (m: Record<string, unknown>) => {
  const parts: string[] = []
  if (typeof m.tokens_per_second === 'number') parts.push(`${m.tokens_per_second.toFixed(1)} tokens/s`)
  if (typeof m.first_token_ms === 'number') parts.push(`first token ${Math.round(m.first_token_ms)} ms`)
  if (typeof m.completion_tokens === 'number') parts.push(`${m.completion_tokens} tokens`)
  if (typeof m.total_ms === 'number') parts.push(`${(m.total_ms / 1000).toFixed(1)} s`)
  return parts.join(' · ')
}

export function fromStored(m: StoredMessage): ChatMessage {
  return {
    id: m.message_id,
    role: m.role,
    content: signal(m.content),
    thinking: signal(m.thinking ?? ''),
    kept: { content: m.content, thinking: m.thinking ?? '' },
    tools: signal([
      ...m.tool_calls.map((c) => ({
        kind: 'call' as const,
        name: c.name,
        text: JSON.stringify(c.arguments),
      })),
      ...m.tool_results.map((r) => ({
        kind: 'result' as const,
        name: r.name,
        text: r.content,
        isError: r.is_error,
      })),
    ]),
    status: signal(m.status),
    metrics: signal(
      metricsText({ ...(m.timings ?? {}), completion_tokens: m.completion_tokens ?? undefined }),
    ),
    error: signal(m.error?.message ?? ''),
    notices: signal([]),
  }
}

export const blank = (id: string, role: string, content = '', status = 'streaming'): ChatMessage =>
  fromStored({
    message_id: id,
    role,
    content,
    thinking: null,
    tool_calls: [],
    tool_results: [],
    status,
    error: null,
    completion_tokens: null,
    timings: null,
  })

type Field = 'content' | 'thinking'

/** A tentative frame shown but not acknowledged yet: its message, where its text goes, the text. */
interface Provisional {
  id: string
  field: Field
  text: string
}

/**
 * The conversation as the chat socket tells it: deltas append to their message, `response` closes it.
 *
 * With `?tentative=1` the socket also sends answer deltas before their commit (README "Live tokens before the
 * commit"): a frame with `tentative: <id>` and no seq is shown at once but kept apart, per message, after the
 * committed text; `ack {seq, tentative}` commits those frames in the ack's order, `retract {tentative}` drops
 * them, and `closed()` (the socket went away) drops every one left. What is kept is then exactly what the log
 * holds up to the resume point, so the replay after `?since=` adds each position once.
 */
export class Conversation {
  readonly messages = signal<ChatMessage[]>([])
  readonly generating = signal(false)
  private byId = new Map<string, ChatMessage>()
  /** Tentative frames by their id, in arrival order. */
  private provisional = new Map<number, Provisional>()
  /** Set once a socket has closed: every later `connected` resumes after a seq instead of replaying. */
  private resumed = false

  load(stored: StoredMessage[]) {
    const list = stored.map(fromStored)
    this.byId = new Map(list.map((m) => [m.id, m]))
    this.provisional.clear()
    this.messages.value = list
  }

  /** An earlier page goes before what is shown; a message already shown (a page boundary moved) stays once. */
  prepend(stored: StoredMessage[]) {
    const older = stored.filter((m) => !this.byId.has(m.message_id)).map(fromStored)
    for (const m of older) this.byId.set(m.id, m)
    this.messages.value = [...older, ...this.messages.value]
  }

  /** The socket closed: its tentative text will never be acknowledged; the next one resumes after the last seq. */
  closed() {
    this.resumed = true
    const touched = new Set([...this.provisional.values()].map((p) => p.id))
    this.provisional.clear()
    for (const id of touched) this.show(id)
  }

  /** How many tentative frames are shown and not acknowledged (0 for a stock socket). */
  get unacknowledged(): number {
    return this.provisional.size
  }

  private get(id: string, role = 'assistant'): ChatMessage {
    let m = this.byId.get(id)
    if (!m) {
      m = blank(id, role)
      this.byId.set(id, m)
      this.messages.value = [...this.messages.value, m]
    }
    return m
  }

  /** Shows a message's committed text followed by its tentative text (a signal set to its own value is a no-op). */
  private show(id: string) {
    const m = this.byId.get(id)
    if (!m) return
    let content = m.kept.content
    let thinking = m.kept.thinking
    for (const p of this.provisional.values()) {
      if (p.id !== id) continue
      if (p.field === 'content') content += p.text
      else thinking += p.text
    }
    m.content.value = content
    m.thinking.value = thinking
  }

  /** Drops the tentative text of one message (its committed text replaces everything, as `response` does). */
  private forget(id: string) {
    for (const [key, p] of this.provisional) if (p.id === id) this.provisional.delete(key)
  }

  /** Appends committed text to a message. */
  private commit(m: ChatMessage, field: Field, text: string) {
    m.kept[field] += text
    this.show(m.id)
  }

  /** Whether a message is still being written per the stored copy (then the socket's replay rebuilds it). */
  hasUnfinished() {
    return this.messages.value.some(
      (m) => m.role === 'assistant' && ['pending', 'streaming'].includes(m.status.value),
    )
  }

  apply(f: Frame) {
    const id = String(f.message_id ?? '')
    if (typeof f.tentative === 'number' && f.seq === undefined) {
      if (f.type !== 'content' && f.type !== 'reasoning') return
      const m = this.get(id)
      const field: Field = f.type === 'content' ? 'content' : 'thinking'
      const text = String(f.content ?? '')
      if (this.provisional.has(f.tentative)) return
      this.provisional.set(f.tentative, { id: m.id, field, text })
      // Shown = committed + this message's tentative frames in order, and this one is the newest.
      m[field].value += text
      return
    }
    switch (f.type) {
      case 'ack':
      case 'retract': {
        const touched = new Set<string>()
        for (const key of Array.isArray(f.tentative) ? f.tentative : []) {
          const p = this.provisional.get(key)
          if (!p) continue
          this.provisional.delete(key)
          const m = this.byId.get(p.id)
          if (f.type === 'ack' && m) m.kept[p.field] += p.text
          touched.add(p.id)
        }
        for (const m of touched) this.show(m)
        return
      }
      case 'connected': {
        this.generating.value = Boolean(f.generating)
        const active = f.active_message_id ? String(f.active_message_id) : ''
        // The server replays the answer in progress from its start: begin that message from nothing. A socket
        // that resumes after a seq replays only what came after it, and what is kept stays.
        if (active && f.generating && !this.resumed) {
          const m = this.get(active)
          this.forget(active)
          m.kept = { content: '', thinking: '' }
          this.show(active)
          m.tools.value = []
          m.status.value = 'streaming'
        }
        return
      }
      case 'message': {
        if (!this.byId.has(id)) {
          const user = blank(id, 'user', String(f.content ?? ''), 'complete')
          this.byId.set(id, user)
          this.messages.value = [...this.messages.value, user]
        }
        if (f.assistant_message_id) this.get(String(f.assistant_message_id))
        this.generating.value = true
        return
      }
      case 'accepted':
        this.generating.value = true
        if (f.assistant_message_id) this.get(String(f.assistant_message_id))
        return
      case 'reasoning':
        this.commit(this.get(id), 'thinking', String(f.content ?? ''))
        return
      case 'reasoning_complete': {
        const m = this.get(id)
        if (!m.kept.thinking) this.commit(m, 'thinking', String(f.content ?? ''))
        return
      }
      case 'content':
        this.commit(this.get(id), 'content', String(f.content ?? ''))
        return
      case 'tool_call':
      case 'tool_result': {
        const m = this.get(id || this.lastAssistant())
        m.tools.value = [
          ...m.tools.value,
          f.type === 'tool_call'
            ? { kind: 'call', name: String(f.name), text: JSON.stringify(f.arguments ?? {}) }
            : {
                kind: 'result',
                name: String(f.name),
                text: String(f.content ?? ''),
                isError: Boolean(f.is_error),
              },
        ]
        return
      }
      case 'notice': {
        const m = this.get(id || this.lastAssistant())
        m.notices.value = [...m.notices.value, String(f.message ?? f.code)]
        return
      }
      case 'response': {
        const m = this.get(id)
        // The whole answer as committed: nothing tentative of this message outlives it.
        this.forget(m.id)
        if (typeof f.content === 'string') m.kept.content = f.content
        this.show(m.id)
        m.status.value = f.incomplete ? 'incomplete' : 'complete'
        m.metrics.value = metricsText((f.metrics ?? {}) as Record<string, unknown>)
        this.generating.value = false
        return
      }
      case 'error': {
        if (f.code === 'busy') return
        const target = id ? this.get(id) : this.byId.get(this.lastAssistant())
        if (target && target.status.value !== 'complete') {
          target.error.value = String(f.message ?? f.code)
          target.status.value = 'failed'
        }
        this.generating.value = false
        return
      }
    }
  }

  private lastAssistant(): string {
    return [...this.messages.value].reverse().find((m) => m.role === 'assistant')?.id ?? 'pending'
  }
}
