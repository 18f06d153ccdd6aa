import { useSignal } from '@preact/signals'
import { api, call, messageOf } from '../api.ts'
import { ErrorLine, ollamaModels, usePolling } from '../ui.tsx'

type Discovery = {
  name: string
  version: string
  status: string
  plugins: { name: string; status: string; error?: string }[]
}
type Ready = { status: string; database: string; ollama: string }

/** Status: version, plugins, database and Ollama health (GET /ready), and the models Ollama has. */
export function StatusPage() {
  const discovery = useSignal<Discovery | null>(null)
  const ready = useSignal<Ready | null>(null)
  const models = useSignal<string[] | null>(null)
  const error = useSignal('')
  usePolling(async () => {
    try {
      const [d, r, m] = await Promise.all([
        call(api.get({ headers: { accept: 'application/json' } })) as Promise<Discovery>,
        // /ready answers 503 with the same body while the database is down: that is a status, not an error.
        fetch('/ready').then((res) => res.json() as Promise<Ready>),
        ollamaModels(),
      ])
      discovery.value = d
      ready.value = r
      models.value = m
      error.value = ''
    } catch (err) {
      error.value = messageOf(err)
    }
  }, 5000)
  const d = discovery.value
  const r = ready.value
  return (
    <div class="columns">
      <ErrorLine text={error.value} />
      <section class="card" aria-labelledby="server-title">
        <h1 id="server-title">Server</h1>
        <p>
          Gantry <strong>{d?.version ?? '…'}</strong> · {d?.status ?? ''}
        </p>
        <p>
          API documentation: <a href="/docs">/docs</a>
        </p>
      </section>
      <section class="card" aria-labelledby="health-title">
        <h2 id="health-title">Health</h2>
        <ul class="health">
          <li>
            Database:{' '}
            <span class={`badge ${r?.database === 'ok' ? 'completed' : 'failed'}`}>{r?.database ?? '…'}</span>
          </li>
          <li>
            Ollama:{' '}
            <span class={`badge ${r?.ollama === 'ok' ? 'completed' : 'failed'}`}>{r?.ollama ?? '…'}</span>
          </li>
        </ul>
      </section>
      <section class="card" aria-labelledby="models-title">
        <h2 id="models-title">Models</h2>
        {models.value && models.value.length > 0 ? (
          <ul>
            {models.value.map((m) => (
              <li key={m}>
                <code>{m}</code>
              </li>
            ))}
          </ul>
        ) : (
          <p>
            {r?.ollama === 'down'
              ? 'Ollama cannot be reached, so no models are listed. '
              : 'Ollama has no models yet. '}
            Pull one on the server: <code>ollama pull llama3.2</code>
          </p>
        )}
      </section>
      <section class="card" aria-labelledby="plugins-title">
        <h2 id="plugins-title">Plugins</h2>
        <ul>
          {d?.plugins.map((p) => (
            <li key={p.name}>
              <code>{p.name}</code>{' '}
              <span class={`badge ${p.status === 'loaded' ? 'completed' : 'failed'}`}>{p.status}</span>
              {p.error && <span class="hint"> {p.error}</span>}
            </li>
          ))}
        </ul>
      </section>
    </div>
  )
}
