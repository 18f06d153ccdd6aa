import { useSignal } from '@preact/signals'
import { useEffect, useRef } from 'preact/hooks'
import { api, call, me, messageOf } from '../api.ts'
import { ErrorLine, time, usePolling } from '../ui.tsx'
import { VirtualList } from '../virtual.tsx'

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const
const LEVEL_NAMES: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
}
const MAX_LINES = 5000

/** One log record as a line: time, level, message; a request as `GET /path → 200 (3 ms)`; other fields as JSON. */
function logLine(record: Record<string, unknown>): string {
  const { level, time, msg, pid: _pid, hostname: _host, lvl: _lvl, ...rest } = record
  const when = new Date(Number(time)).toLocaleTimeString()
  const name = LEVEL_NAMES[Number(level)] ?? String(level)
  if (msg === 'request' && rest.method) {
    const { method, path, url, status, ms, reqId, ...more } = rest
    const extra = Object.keys(more).length ? ` ${JSON.stringify(more)}` : ''
    return `${when} ${name} ${method} ${path ?? url} → ${status} (${ms} ms) ${reqId ?? ''}${extra}`
  }
  return `${when} ${name} ${msg ?? ''} ${Object.keys(rest).length ? JSON.stringify(rest) : ''}`
}

/** The server log, live over SSE (EventSource resumes by itself after a drop). */
function ServerLog() {
  const level = useSignal<(typeof LEVELS)[number]>('info')
  const lines = useRef<string[]>([])
  const version = useSignal(0)
  useEffect(() => {
    lines.current = []
    version.value++
    const source = new EventSource(`/api/logs/stream?level=${level.value}`)
    let frame = 0
    source.onmessage = (event) => {
      let line = event.data as string
      try {
        line = logLine(JSON.parse(event.data))
      } catch {}
      lines.current.push(line)
      if (lines.current.length > MAX_LINES) lines.current.splice(0, lines.current.length - MAX_LINES)
      frame ||= requestAnimationFrame(() => {
        frame = 0
        version.value++
      })
    }
    return () => {
      source.close()
      cancelAnimationFrame(frame)
    }
  }, [level.value])
  void version.value
  return (
    <section class="card" aria-labelledby="log-title">
      <div class="row spread">
        <h2 id="log-title">Server log</h2>
        <label class="inline">
          <span>Log level</span>
          <select
            value={level.value}
            onChange={(e) => (level.value = e.currentTarget.value as (typeof LEVELS)[number])}
          >
            {LEVELS.map((l) => (
              <option key={l} value={l}>
                {l}
              </option>
            ))}
          </select>
        </label>
      </div>
      <VirtualList
        label="Server log"
        class="log"
        items={[...lines.current]}
        rowHeight={22}
        render={(l) => <span title={l}>{l}</span>}
      />
    </section>
  )
}

type Key = Awaited<ReturnType<typeof listKeys>>[number]
const listKeys = () => call(api.api.keys.get())

function Keys() {
  const keys = useSignal<Key[]>([])
  const user = useSignal('')
  const name = useSignal('')
  const role = useSignal<'user' | 'admin'>('user')
  const created = useSignal('')
  const error = useSignal('')
  const load = async () => {
    try {
      keys.value = await listKeys()
    } catch (err) {
      error.value = messageOf(err)
    }
  }
  usePolling(load, 30_000)
  return (
    <section class="card" aria-labelledby="keys-title">
      <h2 id="keys-title">API keys</h2>
      <form
        class="row wrap"
        onSubmit={async (e) => {
          e.preventDefault()
          try {
            const res = await call(
              api.api.keys.post({
                user: user.value.trim(),
                role: role.value,
                ...(name.value.trim() ? { name: name.value.trim() } : {}),
              }),
            )
            created.value = (res as { key: string }).key
            user.value = ''
            name.value = ''
            error.value = ''
            load()
          } catch (err) {
            error.value = messageOf(err)
          }
        }}
      >
        <input
          aria-label="Key user"
          placeholder="user"
          required
          value={user.value}
          onInput={(e) => (user.value = e.currentTarget.value)}
        />
        <input
          aria-label="Key name"
          placeholder="name (e.g. laptop)"
          value={name.value}
          onInput={(e) => (name.value = e.currentTarget.value)}
        />
        <select
          aria-label="Key role"
          value={role.value}
          onChange={(e) => (role.value = e.currentTarget.value as 'user' | 'admin')}
        >
          <option value="user">user</option>
          <option value="admin">admin</option>
        </select>
        <button type="submit">Create key</button>
      </form>
      <ErrorLine text={error.value} />
      {created.value && (
        <div class="note" role="note">
          <p>The new key, shown only this once:</p>
          <output class="secret" aria-label="New API key">
            {created.value}
          </output>
          <button type="button" class="secondary" onClick={() => (created.value = '')}>
            Done
          </button>
        </div>
      )}
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Key</th>
              <th scope="col">User</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {keys.value.map((k) => (
              <tr key={k.id} class={k.revoked_at ? 'revoked' : ''}>
                <td>
                  <code>{k.prefix}…</code> {k.name}
                </td>
                <td>
                  {k.user} ({k.role})
                </td>
                <td>{time(k.created_at)}</td>
                <td>{time(k.last_used_at)}</td>
                <td>
                  {k.revoked_at ? (
                    'revoked'
                  ) : (
                    <button
                      type="button"
                      class="danger"
                      aria-label={`Revoke key ${k.id}`}
                      disabled={k.id === me.value?.key_id}
                      onClick={async () => {
                        try {
                          await call(api.api.keys({ id: k.id }).delete())
                          load()
                        } catch (err) {
                          error.value = messageOf(err)
                        }
                      }}
                    >
                      Revoke
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  )
}

export function AdminPage() {
  if (me.value?.role !== 'admin')
    return (
      <section class="card">
        <h1>Admin</h1>
        <p>This page is for admins.</p>
      </section>
    )
  return (
    <div class="columns">
      <h1 class="visually-hidden">Admin</h1>
      <ServerLog />
      <Keys />
    </div>
  )
}
