import { useSignal } from '@preact/signals'
import { useEffect, useRef } from 'preact/hooks'
import { api, call, messageOf } from '../api.ts'
import { type Frame, follow } from '../live.ts'
import { go, href } from '../route.ts'
import { clock, ErrorLine, StatusBadge } from '../ui.tsx'
import { VirtualList } from '../virtual.tsx'
import { Modules } from './modules.tsx'

type View = Awaited<ReturnType<typeof loadView>>
type Results = Awaited<ReturnType<typeof loadResults>>
const loadView = (id: string) => call(api.tasks({ id }).get())
const loadResults = (id: string) => call(api.tasks({ id }).results.get())

interface TaskEvent {
  seq: number
  type: string
  timestamp: string
  data: Record<string, unknown>
}

const TERMINAL = new Set(['TASK_COMPLETE', 'TASK_FAILED', 'TASK_CANCELLED'])
// Events that change the task's view or its modules: refetch them (throttled) when one arrives.
const CHANGES = /^(TASK_|PLANNING_|MODULE_|TEST_)/

/** One line for any event, known or not: the type and the data's fields as text (never as markup). */
function summary(e: TaskEvent): string {
  const d = e.data ?? {}
  if (e.type === 'LOG') return `[${String(d.level ?? 'INFO')}] ${String(d.message ?? '').slice(0, 2000)}`
  if (e.type === 'MODULE_ITERATION')
    return `${d.module} iteration ${d.iteration}: pass rate ${d.test_pass_rate}, quality ${d.quality_score ?? '–'}`
  return Object.entries(d)
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' · ')
    .slice(0, 500)
}

/** Guidance that the task never applied, and why: an explicit "too late" event, or the task ended first. */
function lateGuidance(events: TaskEvent[], finished: boolean): string[] {
  const received = new Map<number, string>()
  const applied = new Set<number>()
  const notes: string[] = []
  for (const e of events) {
    if (e.type === 'INTERVENTION_RECEIVED') received.set(e.seq, String(e.data.guidance ?? ''))
    else if (e.type === 'INTERVENTION_APPLIED') applied.add(Number(e.data.received_seq))
    else if (
      /^INTERVENTION_/.test(e.type) &&
      /LATE|IGNORED|REJECTED|NOT_APPLIED|DISCARDED|DROPPED/.test(e.type)
    ) {
      const seq = Number(e.data.received_seq ?? e.data.seq)
      if (received.has(seq)) applied.add(seq)
      // Both what was said and why it was not used: the reason tells "cancelled" from "finished".
      const said = e.data.guidance === undefined ? '' : `“${String(e.data.guidance)}”`
      const why = e.data.reason === undefined ? '' : String(e.data.reason)
      notes.push(
        `Guidance came too late to be applied: ${[said, why].filter(Boolean).join('. ') || summary(e)}`,
      )
    }
  }
  if (finished)
    for (const [seq, guidance] of received)
      if (!applied.has(seq))
        notes.push(
          `Guidance “${guidance}” came too late to be applied: the task had made its last model call.`,
        )
  return notes
}

export function TaskPage({ id }: { id: string }) {
  const view = useSignal<View | null>(null)
  const results = useSignal<Results | null>(null)
  const error = useSignal('')
  const events = useRef<TaskEvent[]>([])
  const version = useSignal(0)
  const guidance = useSignal('')
  const sent = useSignal('')
  const confirmDelete = useSignal(false)

  const refresh = async () => {
    try {
      const [v, r] = await Promise.all([loadView(id), loadResults(id)])
      view.value = v
      results.value = r
      error.value = ''
    } catch (err) {
      error.value = messageOf(err)
    }
  }

  useEffect(() => {
    refresh()
    let frame = 0
    let refetch: ReturnType<typeof setTimeout> | undefined
    const live = follow(`/ws/${encodeURIComponent(id)}`, 0, (f: Frame) => {
      if (typeof f.seq !== 'number') return
      const e = {
        seq: f.seq,
        type: f.type,
        timestamp: String(f.timestamp ?? ''),
        data: (f.data ?? {}) as Record<string, unknown>,
      }
      events.current.push(e)
      // One render per animation frame however fast events come (a replay of thousands included).
      frame ||= requestAnimationFrame(() => {
        frame = 0
        version.value++
      })
      if (CHANGES.test(e.type) && !refetch)
        refetch = setTimeout(
          () => {
            refetch = undefined
            refresh()
          },
          TERMINAL.has(e.type) ? 0 : 400,
        )
    })
    return () => {
      live.close()
      cancelAnimationFrame(frame)
      clearTimeout(refetch)
    }
  }, [id])

  void version.value
  const all = events.current
  const timeline = all.filter((e) => e.type !== 'LOG')
  const logs = all.filter((e) => e.type === 'LOG')
  const v = view.value
  const finished = v ? ['completed', 'failed', 'cancelled'].includes(v.status) : false
  const notes = lateGuidance(all, finished || all.some((e) => TERMINAL.has(e.type)))
  const pct = v ? Math.round((v.status === 'completed' ? 1 : v.progress) * 100) : 0

  return (
    <div class="task-page">
      <p>
        <a href={href('tasks')}>← All tasks</a>
      </p>
      <ErrorLine text={error.value} />
      {v && (
        <section class="card" aria-labelledby="task-title">
          <h1 id="task-title">{v.prompt}</h1>
          <div class="meta">
            <StatusBadge status={v.status} /> <code>{v.task_id}</code> · model {v.model} · up to{' '}
            {v.max_iterations} iterations
            {v.current_module && !finished && (
              <>
                {' '}
                · working on <strong>{v.current_module}</strong> (iteration {v.iteration})
              </>
            )}
          </div>
          <div class="row">
            <progress max={100} value={pct} aria-label="Task progress" />
            <span class="nowrap">
              {pct}% · {v.modules_complete}/{v.total_modules || '?'} modules
            </span>
          </div>
          {v.error && <p class="error">{v.error}</p>}
          <div class="row wrap">
            <button
              type="button"
              class="secondary"
              disabled={finished}
              onClick={async () => {
                try {
                  await call(api.tasks({ id }).cancel.post())
                  refresh()
                } catch (err) {
                  error.value = messageOf(err)
                }
              }}
            >
              Cancel task
            </button>
            {!confirmDelete.value ? (
              <button
                type="button"
                class="danger"
                disabled={!finished}
                onClick={() => (confirmDelete.value = true)}
              >
                Delete task
              </button>
            ) : (
              <span class="row">
                <span>Delete the task with its modules, events and logs?</span>
                <button
                  type="button"
                  class="danger"
                  onClick={async () => {
                    try {
                      await call(api.tasks({ id }).delete())
                      go('tasks')
                    } catch (err) {
                      error.value = messageOf(err)
                    }
                  }}
                >
                  Confirm delete
                </button>
                <button type="button" class="secondary" onClick={() => (confirmDelete.value = false)}>
                  Keep it
                </button>
              </span>
            )}
          </div>
        </section>
      )}
      <div class="columns">
        <section class="card" aria-labelledby="timeline-title">
          <h2 id="timeline-title">Timeline</h2>
          <VirtualList
            label="Timeline"
            items={timeline}
            rowHeight={26}
            render={(e) => (
              <span class="event" data-seq={e.seq} data-type={e.type} title={summary(e)}>
                <span class="seq">{e.seq}</span> <span class="time">{clock(e.timestamp)}</span>{' '}
                <strong>{e.type}</strong> <span class="data">{summary(e)}</span>
              </span>
            )}
          />
          <form
            class="intervene"
            onSubmit={async (event) => {
              event.preventDefault()
              try {
                const res = await call(api.tasks({ id }).interventions.post({ guidance: guidance.value }))
                sent.value = `Guidance sent (event ${res.seq}); it applies from the next model call.`
                guidance.value = ''
              } catch (err) {
                sent.value = messageOf(err)
              }
            }}
          >
            <label for="guidance">Guidance</label>
            <div class="row">
              <input
                id="guidance"
                required
                maxLength={4000}
                placeholder="e.g. Follow RFC 5322 for the local part"
                disabled={finished}
                value={guidance.value}
                onInput={(e) => {
                  guidance.value = e.currentTarget.value
                }}
              />
              <button type="submit" disabled={finished}>
                Send guidance
              </button>
            </div>
            {sent.value && <p class="hint">{sent.value}</p>}
            {notes.map((n) => (
              <p key={n} class="note" role="note">
                {n}
              </p>
            ))}
          </form>
        </section>
        <section class="card" aria-labelledby="log-title">
          <h2 id="log-title">Live log</h2>
          <VirtualList
            label="Live log"
            class="log"
            items={logs}
            rowHeight={22}
            render={(e) => (
              <span class={`logline ${String(e.data.level ?? '').toLowerCase()}`} title={summary(e)}>
                {summary(e)}
              </span>
            )}
          />
        </section>
      </div>
      <Modules modules={results.value?.modules ?? []} />
    </div>
  )
}
