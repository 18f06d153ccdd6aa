/**
 * `--follow`: a task's live progress. On a terminal, a bar per module (test pass rate, iteration, quality
 * score) under the current step, drawn by cli-progress; piped or under CI, one line per event; with --json,
 * the events as NDJSON. Ctrl-C asks whether to cancel the task or only stop watching.
 */
import { MultiBar, type SingleBar } from 'cli-progress'
import { call } from './client.ts'
import type { Context } from './context.ts'
import { EXIT } from './errors.ts'
import { clip, percent, score } from './output.ts'
import { describeEvent, type ModuleProgress, TaskProgress } from './progress.ts'
import { writeResults } from './results.ts'
import { followStream, type StreamEvent } from './stream.ts'

interface FollowView {
  event(e: StreamEvent): void
  note(text: string): void
  /** Stops drawing while a question is asked; `resume` draws again. */
  pause(): void
  resume(): void
  stop(): void
}

const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g')

/** The line as it is if it fits; else its text without colour, clipped to the width. */
export function fitToWidth(line: string, width: number): string {
  const visible = line.replace(ANSI, '')
  return visible.length <= width ? line : clip(visible, width)
}

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']
const BAR_WIDTH = 20

class BarsView implements FollowView {
  private multibar: MultiBar | undefined
  private bars = new Map<string, SingleBar>()
  private held: string[] = []

  constructor(
    private readonly ctx: Context,
    private readonly progress: TaskProgress,
    private readonly taskId: string,
  ) {
    this.resume()
  }

  private nameWidth() {
    return Math.max(8, ...this.progress.modules.map((m) => m.name.length))
  }

  private moduleLine(m: ModuleProgress): string {
    const c = this.ctx.out.color
    const frame = SPINNER[Math.floor(Date.now() / 100) % SPINNER.length]!
    const icon =
      m.state === 'passed'
        ? c.green('✓')
        : m.state === 'kept'
          ? c.yellow('!')
          : m.state === 'running'
            ? c.cyan(frame)
            : m.state === 'stopped'
              ? c.red('✗')
              : c.dim('·')
    const filled = Math.round((m.passRate ?? 0) * BAR_WIDTH)
    const bar =
      (m.state === 'kept' ? c.yellow : c.green)('█'.repeat(filled)) + c.dim('░'.repeat(BAR_WIDTH - filled))
    // While a module runs, the iteration under way is the one after the last reported.
    const max = this.progress.maxIterations
    const current =
      m.state === 'running' ? Math.min(m.iteration + 1, max || Number.POSITIVE_INFINITY) : m.iteration
    const iter = max ? `${current}/${max}` : `${current}`
    const detail =
      m.state === 'pending'
        ? c.dim('waiting')
        : `tests ${percent(m.passRate).padStart(4)}  iteration ${iter}  quality ${score(m.quality)}`
    return ` ${icon} ${m.name.padEnd(this.nameWidth())}  ${bar}  ${detail}`
  }

  private stepLine(): string {
    const c = this.ctx.out.color
    const p = this.progress
    const frame = p.finished
      ? p.finished === 'completed'
        ? c.green('●')
        : c.red('●')
      : c.cyan(SPINNER[Math.floor(Date.now() / 100) % SPINNER.length]!)
    const width = (process.stdout.columns || 100) - 4
    return ` ${frame} ${clip(p.step, width)}`
  }

  private sync() {
    if (!this.multibar) return
    for (const m of this.progress.modules) {
      const value = Math.round((m.passRate ?? 0) * 100)
      const bar = this.bars.get(m.name)
      if (bar) bar.update(value)
      else this.bars.set(m.name, this.multibar.create(100, value, { module: m.name }))
    }
    this.multibar.update()
  }

  event(e: StreamEvent) {
    const c = this.ctx.out.color
    if (e.type === 'TASK_STARTED')
      this.note(`${c.bold(this.taskId)}  ${JSON.stringify(e.data.goal)}  ${c.dim(`with ${e.data.model}`)}`)
    else if (e.type === 'LOG' && e.data.level !== 'INFO')
      this.note((e.data.level === 'ERROR' ? c.red : c.yellow)(describeEvent(e)))
    else if (
      e.type.startsWith('INTERVENTION') ||
      e.type === 'MODULE_COMPLETE' ||
      e.type === 'PLANNING_COMPLETE'
    )
      this.note(c.dim(describeEvent(e)))
    this.sync()
  }

  note(text: string) {
    // Line wrapping is off while the bars are drawn: a longer note is clipped rather than garbled.
    if (this.multibar) this.multibar.log(`${fitToWidth(text, (process.stdout.columns || 80) - 1)}\n`)
    else this.held.push(text)
  }

  pause() {
    this.multibar?.stop()
    this.multibar = undefined
    this.bars.clear()
  }

  resume() {
    const formatter = (_options: unknown, _params: unknown, payload: { module?: string }) => {
      const m = payload.module ? this.progress.modules.find((x) => x.name === payload.module) : undefined
      return fitToWidth(m ? this.moduleLine(m) : this.stepLine(), (process.stdout.columns || 80) - 1)
    }
    this.multibar = new MultiBar({
      format: formatter as never,
      stream: process.stdout,
      hideCursor: true,
      clearOnComplete: false,
      linewrap: false,
      fps: 10,
      forceRedraw: true,
    })
    // cli-progress cuts its final frame at the terminal width counting colour escapes as characters, which
    // clips coloured lines that fit; fitToWidth keeps every line within the width by its visible length.
    const terminal = (this.multibar as unknown as { terminal: { write(s: string, raw?: boolean): void } })
      .terminal
    terminal.write = (text: string) => void process.stdout.write(text)
    this.multibar.create(1, 0, {})
    for (const text of this.held.splice(0)) this.note(text)
    this.sync()
  }

  stop() {
    this.sync()
    this.pause()
  }
}

class LinesView implements FollowView {
  constructor(protected readonly ctx: Context) {}
  event(e: StreamEvent) {
    this.ctx.out.line(`${e.seq} ${e.type} ${describeEvent(e)}`)
  }
  note(text: string) {
    this.ctx.out.note(text)
  }
  pause() {}
  resume() {}
  stop() {}
}

class JsonView extends LinesView {
  override event(e: StreamEvent) {
    this.ctx.out.jsonLine(e)
  }
}

/** Reads one key press from the terminal (raw mode), for the Ctrl-C question. */
function readKey(): Promise<string> {
  const stdin = process.stdin
  return new Promise((resolve) => {
    stdin.setRawMode(true)
    stdin.resume()
    stdin.once('data', (chunk: Buffer) => {
      stdin.setRawMode(false)
      stdin.pause()
      resolve(chunk.toString('utf8'))
    })
  })
}

export interface FollowResult {
  exitCode: number
  status?: string
}

/**
 * Follows a task to its end and returns the exit code: 0 completed, 1 failed or cancelled, 130 when the
 * user only stopped watching. `outDir` gets each module's code and tests once it is done.
 */
export async function followTask(
  ctx: Context,
  taskId: string,
  opts: { outDir?: string } = {},
): Promise<FollowResult> {
  const { out } = ctx
  const progress = new TaskProgress()
  const view: FollowView = out.json
    ? new JsonView(ctx)
    : out.interactive
      ? new BarsView(ctx, progress, taskId)
      : new LinesView(ctx)
  const watching = new AbortController()
  let stoppedWatching = false
  let lastInterrupt = 0
  let asking = false

  const stopWatching = () => {
    stoppedWatching = true
    watching.abort()
  }
  const cancelTask = async () => {
    const res = await ctx.api.tasks({ id: taskId }).cancel.post()
    if (res.status === 200 || res.status === 202) view.note(`cancelling ${taskId}…`)
    else if (res.status === 409) view.note(`${taskId} has already finished`)
    else view.note(`could not cancel ${taskId}: ${res.status}`)
  }
  const onInterrupt = async () => {
    // A terminal's Ctrl-C reaches both the wrapper and this process; one key press may arrive as several.
    const now = Date.now()
    if (now - lastInterrupt < 300) return
    lastInterrupt = now
    if (asking) return stopWatching()
    if (!out.interactive || !process.stdin.isTTY) return stopWatching()
    asking = true
    view.pause()
    process.stdout.write(
      `\n${out.color.bold('Ctrl-C:')} [c] cancel ${taskId}, [w] stop watching (it goes on), [k] keep watching? `,
    )
    const key = (await readKey()).toLowerCase()
    process.stdout.write(`${key === '\u0003' ? '^C' : key.trim()}\n`)
    asking = false
    if (key.startsWith('c')) {
      view.resume()
      await cancelTask().catch((err) => view.note(`could not cancel: ${(err as Error).message}`))
    } else if (key.startsWith('k')) view.resume()
    else stopWatching()
  }
  const sigint = () => void onInterrupt()
  process.on('SIGINT', sigint)

  try {
    await followStream(
      ctx.connection,
      taskId,
      {
        onEvent: (e) => {
          progress.apply(e)
          view.event(e)
        },
        onRetry: ({ attempt, delayMs, reason }) =>
          view.note(
            out.color.yellow(
              `connection to ${ctx.connection.url} lost (${reason}); reconnecting in ${(delayMs / 1000).toFixed(1)} s (attempt ${attempt}, from seq ${progress.lastSeq})`,
            ),
          ),
        onConnected: ({ reconnect, since }) => {
          if (reconnect) view.note(out.color.green(`reconnected; resuming after seq ${since}`))
        },
      },
      { signal: watching.signal },
    )
  } finally {
    process.off('SIGINT', sigint)
    if (asking) {
      // The task ended while the question was open: give the terminal back as it was.
      process.stdin.setRawMode(false)
      process.stdin.pause()
      process.stdout.write('\n')
    }
    view.stop()
  }

  if (stoppedWatching) {
    out.note(`stopped watching; ${taskId} goes on. Follow it again: gantry task follow ${taskId}`)
    return { exitCode: EXIT.interrupted }
  }
  let status: string = progress.finished ?? ''
  if (!status) {
    const task = await call(ctx.connection, ctx.api.tasks({ id: taskId }).get(), {
      notFound: `no task ${taskId}`,
    })
    status = task.status
  }
  if (opts.outDir) await writeResults(ctx, taskId, opts.outDir)
  if (!out.json) {
    const c = out.color
    const summary =
      status === 'completed'
        ? c.green(`${taskId} completed`)
        : c.red(`${taskId} ${status}${progress.reason ? `: ${progress.reason}` : ''}`)
    if (out.interactive) out.line(summary)
    if (out.interactive && status === 'completed') out.line(c.dim(`results: gantry task results ${taskId}`))
  }
  return { exitCode: status === 'completed' ? EXIT.ok : EXIT.failed, status }
}
