import { useComputed, useSignal } from '@preact/signals'
import { useEffect, useLayoutEffect, useMemo, useRef } from 'preact/hooks'
import { api, call, messageOf } from '../api.ts'
import { type ChatMessage, Conversation, type StoredMessage } from '../chatstate.ts'
import { follow } from '../live.ts'
import { Markdown } from '../markdown.tsx'
import { go, href } from '../route.ts'
import { ErrorLine, usePolling } from '../ui.tsx'
import { AgentsPage } from './agents.tsx'

const top = (e: Element) => e.getBoundingClientRect().top

/** Messages per page: a conversation opens at its newest page and pages back from there. */
const PAGE = 200
const messagesPage = (id: string, cursor?: string) =>
  call(
    api.api
      .sessions({ id })
      .messages.get({ query: { limit: PAGE, order: 'desc', ...(cursor ? { cursor } : {}) } }),
  )

type Session = Awaited<ReturnType<typeof listSessions>>['sessions'][number]
const listSessions = () => call(api.api.sessions.get({ query: { limit: 100 } }))
export const listAgents = async () => (await call(api.v1.agents.get())).agents

function NewSession({ onCreated }: { onCreated: (s: Session) => void }) {
  const title = useSignal('')
  const agent = useSignal('assistant')
  const model = useSignal('')
  const agents = useSignal<string[]>([])
  const error = useSignal('')
  useEffect(() => {
    listAgents().then(
      (list) => (agents.value = list.map((a) => a.name)),
      () => {},
    )
  }, [])
  return (
    <form
      class="new-session"
      aria-label="New session"
      onSubmit={async (event) => {
        event.preventDefault()
        try {
          const created = await call(
            api.api.sessions.post({
              agent: agent.value,
              ...(title.value.trim() ? { title: title.value.trim() } : {}),
              ...(model.value.trim() ? { model: model.value.trim() } : {}),
            }),
          )
          title.value = ''
          onCreated(created as Session)
        } catch (err) {
          error.value = messageOf(err)
        }
      }}
    >
      <label for="session-title">Session name</label>
      <input
        id="session-title"
        maxLength={200}
        value={title.value}
        onInput={(e) => (title.value = e.currentTarget.value)}
      />
      <div class="row wrap">
        <span class="field">
          <label for="session-agent">Agent</label>
          <select
            id="session-agent"
            value={agent.value}
            onChange={(e) => (agent.value = e.currentTarget.value)}
          >
            {(agents.value.length ? agents.value : ['assistant']).map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </span>
        <span class="field">
          <label for="session-model">Model</label>
          <input
            id="session-model"
            placeholder="the agent's"
            value={model.value}
            onInput={(e) => (model.value = e.currentTarget.value)}
          />
        </span>
      </div>
      <button type="submit">Create session</button>
      <ErrorLine text={error.value} />
    </form>
  )
}

function Message({ m }: { m: ChatMessage }) {
  // Not m.content.value: that would re-render the whole message per token; the Markdown paints the text itself.
  const hasText = useComputed(() => m.content.value !== '')
  return (
    <article
      class={`msg ${m.role}`}
      data-role={m.role}
      data-message-id={m.id}
      aria-label={m.role === 'user' ? 'You' : 'Answer'}
    >
      {m.thinking.value && (
        <details class="reasoning" open={m.status.value === 'streaming' && !hasText.value}>
          <summary>Reasoning</summary>
          <div class="plain">{m.thinking.value}</div>
        </details>
      )}
      {m.tools.value.map((t, i) => (
        <details key={i} class={`tool ${t.isError ? 'failed' : ''}`}>
          <summary>
            {t.kind === 'call' ? 'Tool call' : 'Tool result'}: {t.name}
          </summary>
          <pre class="plain">{t.text}</pre>
        </details>
      ))}
      {m.role === 'user' ? <div class="plain">{m.content}</div> : <Markdown text={m.content} />}
      {m.status.value === 'streaming' && !hasText.value && !m.error.value && <p class="hint">Thinking…</p>}
      {m.notices.value.map((n) => (
        <p key={n} class="hint">
          {n}
        </p>
      ))}
      {m.error.value && <p class="error">{m.error.value}</p>}
      {m.status.value === 'incomplete' && <p class="hint">Stopped before the end.</p>}
      {m.metrics.value && (
        <p class="metrics" data-testid="metrics">
          {m.metrics.value}
        </p>
      )}
    </article>
  )
}

function Conversation_({ session, onChanged }: { session: Session; onChanged: () => void }) {
  const conv = useMemo(() => new Conversation(), [session.session_id])
  const text = useSignal('')
  const reasoning = useSignal(false)
  const error = useSignal('')
  const renaming = useSignal<string | null>(null)
  const scroller = useRef<HTMLDivElement>(null)
  // The cursor of the page before the oldest one shown; null when the conversation is shown from its start.
  const earlier = useSignal<string | null>(null)
  // Set while an earlier page goes in: the message the reader was looking at and how far down it sat.
  const keep = useRef<{ anchor: Element; offset: number } | null>(null)
  const id = session.session_id

  useEffect(() => {
    let live: ReturnType<typeof follow> | undefined
    let stopped = false
    const reload = async () => {
      const page = await messagesPage(id)
      conv.load((page.messages as StoredMessage[]).reverse())
      earlier.value = page.next_cursor
    }
    reload()
      .then(() => {
        if (stopped) return
        // Live tokens before their commit (shown at once, kept apart until acknowledged); a socket that
        // closes takes its unacknowledged text with it, and the next one resumes after the last seq.
        live = follow(
          `/ws/chat/${encodeURIComponent(id)}?tentative=1`,
          undefined,
          (f) => {
            conv.apply(f)
            // The stored copy may say "streaming" for an answer that ended before the socket opened.
            if (f.type === 'connected' && !f.generating && conv.hasUnfinished()) reload().catch(() => {})
          },
          { onClose: () => conv.closed() },
        )
      })
      .catch((err) => (error.value = messageOf(err)))
    return () => {
      stopped = true
      live?.close()
    }
  }, [id])

  const loadEarlier = async () => {
    if (!earlier.value) return
    try {
      const page = await messagesPage(id, earlier.value)
      const el = scroller.current
      const anchor = el?.querySelector('[data-message-id]')
      keep.current = el && anchor ? { anchor, offset: top(anchor) - top(el) } : null
      conv.prepend((page.messages as StoredMessage[]).reverse())
      earlier.value = page.next_cursor
    } catch (err) {
      error.value = messageOf(err)
    }
  }

  // Keep to the newest message while the reader is at the bottom; an earlier page keeps the place instead.
  const count = conv.messages.value.length
  useLayoutEffect(() => {
    const el = scroller.current
    const place = keep.current
    keep.current = null
    if (!el) return
    if (!place) {
      el.scrollTop = el.scrollHeight
      return
    }
    // The answers above paint their Markdown a frame or two later and grow: hold the place until they have.
    const hold = () => (el.scrollTop += top(place.anchor) - top(el) - place.offset)
    hold()
    let frames = 0
    const again = () => {
      hold()
      if (++frames < 6) requestAnimationFrame(again)
    }
    requestAnimationFrame(again)
  }, [count])

  return (
    <section class="conversation card" aria-labelledby="conv-title">
      <div class="row spread wrap">
        {renaming.value === null ? (
          <h1 id="conv-title">{session.title ?? session.name}</h1>
        ) : (
          <form
            class="row"
            onSubmit={async (e) => {
              e.preventDefault()
              try {
                await call(api.api.sessions({ id }).patch({ title: renaming.value || null }))
                renaming.value = null
                onChanged()
              } catch (err) {
                error.value = messageOf(err)
              }
            }}
          >
            <input
              aria-label="New session name"
              value={renaming.value}
              onInput={(e) => (renaming.value = e.currentTarget.value)}
            />
            <button type="submit">Save name</button>
          </form>
        )}
        <div class="row wrap">
          <span class="hint">
            {session.agent}
            {session.model ? ` · ${session.model}` : ''}
          </span>
          <button
            type="button"
            class="secondary"
            onClick={() => (renaming.value = session.title ?? session.name)}
          >
            Rename session
          </button>
          <button
            type="button"
            class="danger"
            onClick={async () => {
              try {
                await call(api.api.sessions({ id }).delete())
                onChanged()
                go('chat')
              } catch (err) {
                error.value = messageOf(err)
              }
            }}
          >
            Delete session
          </button>
        </div>
      </div>
      {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling box must be reachable by keyboard */}
      <section class="messages" ref={scroller} aria-label="Conversation" tabIndex={0}>
        {earlier.value && (
          <button type="button" class="secondary earlier" onClick={loadEarlier}>
            Load earlier messages
          </button>
        )}
        {conv.messages.value.length === 0 && <p class="empty">No messages yet: say something below.</p>}
        {conv.messages.value.map((m) => (
          <Message key={m.id} m={m} />
        ))}
      </section>
      <ErrorLine text={error.value} />
      <form
        class="composer"
        onSubmit={async (event) => {
          event.preventDefault()
          const message = text.value.trim()
          if (!message) return
          error.value = ''
          try {
            await call(api.api.sessions({ id }).chat.post({ message, enable_reasoning: reasoning.value }))
            text.value = ''
          } catch (err) {
            error.value = messageOf(err)
          }
        }}
      >
        <label for="chat-input" class="visually-hidden">
          Message
        </label>
        <textarea
          id="chat-input"
          rows={2}
          placeholder="Ask something (Enter sends, Shift+Enter for a new line)"
          value={text.value}
          onInput={(e) => (text.value = e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey) {
              e.preventDefault()
              e.currentTarget.form?.requestSubmit()
            }
          }}
        />
        <div class="row">
          <label class="inline">
            <input
              type="checkbox"
              checked={reasoning.value}
              onChange={(e) => (reasoning.value = e.currentTarget.checked)}
            />
            Reasoning
          </label>
          {conv.generating.value && (
            <button
              type="button"
              class="danger"
              onClick={() => call(api.api.sessions({ id }).cancel.post()).catch(() => {})}
            >
              Stop
            </button>
          )}
          <button type="submit" disabled={conv.generating.value}>
            Send
          </button>
        </div>
      </form>
    </section>
  )
}

/** Chat: the sessions on the side, the open conversation beside them; `#/chat/agents` manages agents. */
export function ChatPage({ id }: { id?: string }) {
  const sessions = useSignal<Session[] | null>(null)
  const error = useSignal('')
  const creating = useSignal(false)
  const load = async () => {
    try {
      sessions.value = (await listSessions()).sessions
    } catch (err) {
      error.value = messageOf(err)
    }
  }
  usePolling(load, 10_000)
  if (id === 'agents') return <AgentsPage />
  const open = sessions.value?.find((s) => s.session_id === id || s.name === id)
  return (
    <div class={open ? 'chat has-open' : 'chat'}>
      <aside class="card sessions">
        <div class="row spread">
          <h2>Sessions</h2>
          <button
            type="button"
            class="secondary"
            aria-expanded={creating.value}
            onClick={() => (creating.value = !creating.value)}
          >
            New session
          </button>
        </div>
        {creating.value && (
          <NewSession
            onCreated={(s) => {
              creating.value = false
              load()
              go('chat', s.session_id)
            }}
          />
        )}
        <ErrorLine text={error.value} />
        <ul aria-label="Sessions">
          {sessions.value?.map((s) => (
            <li key={s.session_id}>
              <a
                href={href('chat', s.session_id)}
                aria-current={s.session_id === open?.session_id ? 'page' : undefined}
              >
                {s.title ?? s.name}
              </a>
              {s.generating && <span class="hint"> · answering</span>}
            </li>
          ))}
        </ul>
        <p>
          <a href={href('chat', 'agents')}>Agents</a>
        </p>
      </aside>
      {open ? (
        <Conversation_ key={open.session_id} session={open} onChanged={load} />
      ) : (
        <section class="card conversation">
          <h1>Chat</h1>
          <p class="empty">
            {id && sessions.value
              ? 'That session does not exist (any more).'
              : 'Pick a session or create one.'}
          </p>
        </section>
      )}
    </div>
  )
}
