import { useEffect, useRef } from 'preact/hooks'

export type TaskStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled'
export const TASK_STATUSES: TaskStatus[] = ['queued', 'running', 'completed', 'failed', 'cancelled']

export const StatusBadge = ({ status }: { status: string }) => <span class={`badge ${status}`}>{status}</span>

export const ErrorLine = ({ text }: { text: string }) =>
  text ? (
    <p class="error" role="alert">
      {text}
    </p>
  ) : null

/** Runs `fn` now and every `ms` while the tab is visible; stops on unmount. */
export function usePolling(fn: () => unknown, ms: number, deps: unknown[] = []) {
  const saved = useRef(fn)
  saved.current = fn
  useEffect(() => {
    saved.current()
    const timer = setInterval(() => {
      if (document.visibilityState === 'visible') saved.current()
    }, ms)
    return () => clearInterval(timer)
  }, deps)
}

export const time = (iso: string | null | undefined) => (iso ? new Date(iso).toLocaleString() : '–')
export const clock = (iso: string | null | undefined) => (iso ? new Date(iso).toLocaleTimeString() : '')

/** Ollama's models from /v1/models (agents are listed there too; only Ollama's own are models). */
export async function ollamaModels(): Promise<string[]> {
  const res = await fetch('/v1/models', { credentials: 'same-origin' })
  if (!res.ok) return []
  const body = (await res.json()) as { data: { id: string; owned_by: string }[] }
  return body.data.filter((m) => m.owned_by === 'ollama').map((m) => m.id)
}
