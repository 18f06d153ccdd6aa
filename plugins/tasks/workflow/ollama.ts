/**
 * Model calls for one task: one Ollama client per task (so aborting it aborts only this task's request),
 * tied to the job's signal; transient failures retried with backoff; failures that retrying cannot fix
 * (unknown model, Ollama unreachable for good) turned into a TaskFailure that says what to do.
 */
import { type Message, Ollama } from 'ollama'
import { ollamaFetch } from '../../../src/core/metrics.ts'

/** Ends the task with `reason` as TASK_FAILED. */
export class TaskFailure extends Error {
  constructor(readonly reason: string) {
    super(reason)
    this.name = 'TaskFailure'
  }
}

export interface RetryPolicy {
  attempts: number
  initialDelayMs: number
  maxDelayMs: number
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 4, initialDelayMs: 500, maxDelayMs: 8000 }

const status = (err: unknown): number | undefined => {
  const code = (err as { status_code?: unknown })?.status_code
  return typeof code === 'number' ? code : undefined
}

function unreachable(err: unknown): boolean {
  if (status(err) !== undefined) return false
  const e = err as { code?: string; message?: string; cause?: { code?: string } }
  const text = `${e?.code ?? ''} ${e?.cause?.code ?? ''} ${e?.message ?? ''}`
  return /ECONNREFUSED|ConnectionRefused|ECONNRESET|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|Unable to connect|fetch failed|socket connection was closed/i.test(
    text,
  )
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason)
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal.reason)
    }
    signal.addEventListener('abort', onAbort, { once: true })
  })

export interface ModelCall {
  model: string
  messages: Message[]
  format: object
  /** What the step is, for logs and failure reasons ("planning", "module validator"). */
  step: string
}

export class TaskModel {
  private readonly client: Ollama

  constructor(
    private readonly host: string,
    private readonly signal: AbortSignal,
    private readonly retry: RetryPolicy = DEFAULT_RETRY,
    private readonly onRetry: (message: string) => void = () => {},
  ) {
    // Every request of this task carries the job's signal: cancel or shutdown aborts it mid-flight.
    this.client = new Ollama({
      host,
      fetch: ((input: RequestInfo | URL, init?: RequestInit) =>
        ollamaFetch(input, {
          ...init,
          signal: init?.signal ? AbortSignal.any([init.signal, signal]) : signal,
        })) as typeof fetch,
    })
    signal.addEventListener('abort', () => this.client.abort(), { once: true })
  }

  /** Streams one chat reply and returns its text; retries transient errors (including mid-stream ones). */
  async complete(call: ModelCall): Promise<string> {
    let delay = this.retry.initialDelayMs
    for (let attempt = 1; ; attempt++) {
      this.signal.throwIfAborted()
      try {
        const stream = await this.client.chat({
          model: call.model,
          messages: call.messages,
          format: call.format,
          stream: true,
          options: { temperature: 0.2 },
        })
        let text = ''
        for await (const part of stream) text += part.message?.content ?? ''
        return text
      } catch (err) {
        if (this.signal.aborted) throw this.signal.reason
        const code = status(err)
        const message = (err as Error)?.message ?? String(err)
        if (code === 404 && /not found/i.test(message))
          throw new TaskFailure(
            `The model "${call.model}" is not installed in Ollama at ${this.host}: run \`ollama pull ${call.model}\` there, or choose another model (the task's "model", or OLLAMA_MODEL). Ollama said: ${message}`,
          )
        if (code !== undefined && code >= 400 && code < 500)
          throw new TaskFailure(`Ollama refused the ${call.step} request (${code}): ${message}`)
        if (attempt >= this.retry.attempts) {
          if (unreachable(err))
            throw new TaskFailure(
              `Ollama is not reachable at ${this.host} (OLLAMA_HOST) after ${attempt} attempts: ${message}. Start Ollama there or point OLLAMA_HOST at it.`,
            )
          throw new TaskFailure(
            `The ${call.step} step failed ${attempt} times; last error from Ollama: ${message}`,
          )
        }
        this.onRetry(
          `${call.step}: ${unreachable(err) ? `Ollama at ${this.host} unreachable` : 'model call failed'} (${message}); retry ${attempt}/${this.retry.attempts - 1} in ${delay} ms`,
        )
        await sleep(delay, this.signal)
        delay = Math.min(delay * 2, this.retry.maxDelayMs)
      }
    }
  }
}
