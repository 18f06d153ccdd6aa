import { useSignal } from '@preact/signals'
import { api, call, messageOf } from '../api.ts'
import { href } from '../route.ts'
import {
  ErrorLine,
  ollamaModels,
  StatusBadge,
  TASK_STATUSES,
  type TaskStatus,
  time,
  usePolling,
} from '../ui.tsx'

type TaskView = Awaited<ReturnType<typeof listTasks>>['tasks'][number]

const listTasks = (status: TaskStatus | '') =>
  call(api.tasks.get({ query: { limit: 50, ...(status ? { status } : {}) } }))

function NewTask({ onStarted }: { onStarted: (taskId: string) => void }) {
  const prompt = useSignal('')
  const answers = useSignal<string[]>([])
  const model = useSignal('')
  const maxIterations = useSignal(3)
  const models = useSignal<string[]>([])
  const error = useSignal('')
  const busy = useSignal(false)
  usePolling(async () => {
    models.value = await ollamaModels().catch(() => [])
  }, 60_000)
  const setAnswer = (i: number, text: string) => {
    answers.value = answers.value.map((a, j) => (j === i ? text : a))
  }
  return (
    <form
      class="card"
      aria-label="New task"
      onSubmit={async (event) => {
        event.preventDefault()
        busy.value = true
        error.value = ''
        try {
          const created = await call(
            api.tasks.post({
              prompt: prompt.value,
              answers: answers.value.map((a) => a.trim()).filter(Boolean),
              max_iterations: maxIterations.value,
              ...(model.value.trim() ? { model: model.value.trim() } : {}),
            }),
          )
          prompt.value = ''
          answers.value = []
          onStarted(created.task_id)
        } catch (err) {
          error.value = messageOf(err)
        } finally {
          busy.value = false
        }
      }}
    >
      <h2>New task</h2>
      <label for="task-prompt">Prompt</label>
      <textarea
        id="task-prompt"
        required
        rows={3}
        maxLength={20000}
        placeholder="Describe a small program, e.g. Build an email validator"
        value={prompt.value}
        onInput={(e) => {
          prompt.value = e.currentTarget.value
        }}
      />
      <fieldset>
        <legend>Clarifying answers</legend>
        {answers.value.map((answer, i) => (
          <div class="row" key={i}>
            <input
              aria-label={`Clarifying answer ${i + 1}`}
              value={answer}
              maxLength={4000}
              onInput={(e) => setAnswer(i, e.currentTarget.value)}
            />
            <button
              type="button"
              class="secondary"
              aria-label={`Remove answer ${i + 1}`}
              onClick={() => {
                answers.value = answers.value.filter((_, j) => j !== i)
              }}
            >
              Remove
            </button>
          </div>
        ))}
        <button
          type="button"
          class="secondary"
          onClick={() => {
            answers.value = [...answers.value, '']
          }}
        >
          Add answer
        </button>
      </fieldset>
      <div class="row wrap">
        <span class="field">
          <label for="task-model">Model</label>
          <input
            id="task-model"
            list="task-models"
            placeholder="server default"
            value={model.value}
            onInput={(e) => {
              model.value = e.currentTarget.value
            }}
          />
          <datalist id="task-models">
            {models.value.map((m) => (
              <option key={m} value={m} />
            ))}
          </datalist>
        </span>
        <span class="field">
          <label for="task-iterations">Max iterations</label>
          <input
            id="task-iterations"
            type="number"
            min={1}
            max={20}
            required
            value={maxIterations.value}
            onInput={(e) => {
              maxIterations.value = Number(e.currentTarget.value)
            }}
          />
        </span>
      </div>
      <button type="submit" disabled={busy.value}>
        Start task
      </button>
      <ErrorLine text={error.value} />
    </form>
  )
}

export function TaskRow({ task }: { task: TaskView }) {
  const pct = Math.round(task.progress * 100)
  return (
    <li class="task-row">
      <a href={href('tasks', task.task_id)} class="title">
        {task.prompt}
      </a>
      <div class="meta">
        <StatusBadge status={task.status} /> <span>{time(task.created_at)}</span>{' '}
        <span>
          {task.modules_complete}/{task.total_modules || '?'} modules
        </span>
      </div>
      <progress max={100} value={pct} aria-label={`Progress of ${task.task_id}`} />
    </li>
  )
}

/** The tasks page: the form, and the list (newest first), refreshed every two seconds so tasks started elsewhere appear. */
export function TasksPage() {
  const status = useSignal<TaskStatus | ''>('')
  const tasks = useSignal<TaskView[] | null>(null)
  const error = useSignal('')
  const started = useSignal('')
  const load = async () => {
    try {
      tasks.value = (await listTasks(status.value)).tasks
      error.value = ''
    } catch (err) {
      error.value = messageOf(err)
    }
  }
  usePolling(load, 2000, [status.value])
  return (
    <div class="columns">
      <NewTask
        onStarted={(id) => {
          started.value = id
          load()
        }}
      />
      <section class="card" aria-labelledby="tasks-title">
        <div class="row spread">
          <h1 id="tasks-title">Tasks</h1>
          <label class="inline">
            <span>Status filter</span>
            <select
              value={status.value}
              onChange={(e) => {
                status.value = e.currentTarget.value as TaskStatus | ''
              }}
            >
              <option value="">all</option>
              {TASK_STATUSES.map((s) => (
                <option key={s} value={s}>
                  {s}
                </option>
              ))}
            </select>
          </label>
        </div>
        <ErrorLine text={error.value} />
        {started.value && (
          <p class="hint" role="status">
            Task started: <a href={href('tasks', started.value)}>follow {started.value} live</a>.
          </p>
        )}
        {tasks.value?.length === 0 && (
          <p class="empty">No tasks{status.value ? ` ${status.value}` : ''} yet.</p>
        )}
        <ul class="tasks" aria-label="Tasks">
          {tasks.value?.map((t) => (
            <TaskRow key={t.task_id} task={t} />
          ))}
        </ul>
      </section>
    </div>
  )
}
