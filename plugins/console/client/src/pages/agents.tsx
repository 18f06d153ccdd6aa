import { useSignal } from '@preact/signals'
import { api, call, messageOf } from '../api.ts'
import { href } from '../route.ts'
import { ErrorLine, usePolling } from '../ui.tsx'
import { listAgents } from './chat.tsx'

type Agent = Awaited<ReturnType<typeof listAgents>>[number]

export function AgentsPage() {
  const agents = useSignal<Agent[]>([])
  const name = useSignal('')
  const model = useSignal('')
  const prompt = useSignal('')
  const error = useSignal('')
  const load = async () => {
    try {
      agents.value = await listAgents()
    } catch (err) {
      error.value = messageOf(err)
    }
  }
  usePolling(load, 30_000)
  return (
    <div class="columns">
      <section class="card" aria-labelledby="agents-title">
        <p>
          <a href={href('chat')}>← Chat</a>
        </p>
        <h1 id="agents-title">Agents</h1>
        <ul aria-label="Agents" class="agents">
          {agents.value.map((a) => (
            <li key={a.name}>
              <strong>{a.name}</strong> <span class="badge">{a.source}</span> {a.model ?? 'default model'}
              {a.tools.length > 0 && <span class="hint"> · tools: {a.tools.join(', ')}</span>}
              {a.description && <p class="hint">{a.description}</p>}
              {a.source === 'user' && (
                <button
                  type="button"
                  class="danger"
                  aria-label={`Delete agent ${a.name}`}
                  onClick={async () => {
                    try {
                      await call(api.v1.agents({ name: a.name }).delete())
                      load()
                    } catch (err) {
                      error.value = messageOf(err)
                    }
                  }}
                >
                  Delete
                </button>
              )}
            </li>
          ))}
        </ul>
      </section>
      <form
        class="card"
        aria-label="New agent"
        onSubmit={async (event) => {
          event.preventDefault()
          try {
            await call(
              api.v1.agents.post({
                name: name.value.trim(),
                ...(model.value.trim() ? { model: model.value.trim() } : {}),
                ...(prompt.value.trim() ? { system_prompt: prompt.value } : {}),
              }),
            )
            name.value = ''
            prompt.value = ''
            error.value = ''
            load()
          } catch (err) {
            error.value = messageOf(err)
          }
        }}
      >
        <h2>New agent</h2>
        <label for="agent-name">Agent name</label>
        <input
          id="agent-name"
          required
          value={name.value}
          onInput={(e) => (name.value = e.currentTarget.value)}
        />
        <label for="agent-model">Agent model</label>
        <input
          id="agent-model"
          placeholder="server default"
          value={model.value}
          onInput={(e) => (model.value = e.currentTarget.value)}
        />
        <label for="agent-prompt">System prompt</label>
        <textarea
          id="agent-prompt"
          rows={4}
          value={prompt.value}
          onInput={(e) => (prompt.value = e.currentTarget.value)}
        />
        <button type="submit">Create agent</button>
        <ErrorLine text={error.value} />
      </form>
    </div>
  )
}
