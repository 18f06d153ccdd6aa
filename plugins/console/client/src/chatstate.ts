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
  content: Signal<string>
  thinking: Signal<string>
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

/** The conversation as the chat socket tells it: deltas append to their message, `response` closes it. */
export class Conversation {
  readonly messages = signal<ChatMessage[]>([])
  readonly generating = signal(false)
  private byId = new Map<string, ChatMessage>()

  load(stored: StoredMessage[]) {
    const list = stored.map(fromStored)
    this.byId = new Map(list.map((m) => [m.id, m]))
    this.messages.value = list
  }

  /** An earlier page goes before what is shown; a message already shown (a page boundary moved) stays once. */
  prepend(stored: StoredMessage[]) {
    const older = stored.filter((m) => !this.byId.has(m.message_id)).map(fromStored)
    for (const m of older) this.byId.set(m.id, m)
    this.messages.value = [...older, ...this.messages.value]
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

  /** Whether a message is still being written per the stored copy (then the socket's replay rebuilds it). */
  hasUnfinished() {
    return this.messages.value.some(
      (m) => m.role === 'assistant' && ['pending', 'streaming'].includes(m.status.value),
    )
  }

  apply(f: Frame) {
    const id = String(f.message_id ?? '')
    switch (f.type) {
      case 'connected': {
        this.generating.value = Boolean(f.generating)
        const active = f.active_message_id ? String(f.active_message_id) : ''
        // The server replays the answer in progress from its start: begin that message from nothing.
        if (active && f.generating) {
          const m = this.get(active)
          m.content.value = ''
          m.thinking.value = ''
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
        this.get(id).thinking.value += String(f.content ?? '')
        return
      case 'reasoning_complete': {
        const m = this.get(id)
        if (!m.thinking.value) m.thinking.value = String(f.content ?? '')
        return
      }
      case 'content':
        this.get(id).content.value += String(f.content ?? '')
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
        if (typeof f.content === 'string') m.content.value = f.content
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
