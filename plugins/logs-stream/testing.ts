import { nextMatching } from '../../test/helpers.ts'
/** An SSE test client over fetch: records every message (and comment) as it arrives. */
export interface SseMessageSeen {
  id?: string
  event?: string
  data: string
}

export interface SseClient {
  status: number
  headers: Headers
  messages: SseMessageSeen[]
  comments: string[]
  /** Resolves when the server ends the stream. */
  done: Promise<void>
  next(match?: (m: SseMessageSeen) => boolean, timeoutMs?: number): Promise<SseMessageSeen>
  close(): void
}

/** Opens an SSE stream; `tls` goes to Bun's fetch as is (a `ca` for a test certificate, say). */
export async function openSse(
  url: string,
  headers: Record<string, string> = {},
  tls?: { ca?: string },
): Promise<SseClient> {
  const abort = new AbortController()
  const res = await fetch(url, { headers, signal: abort.signal, ...(tls ? { tls } : {}) })
  const messages: SseMessageSeen[] = []
  const comments: string[] = []
  const waiters = new Set<() => void>()
  const notify = () => {
    for (const w of waiters) w()
  }
  const done = (async () => {
    if (!res.body || !res.headers.get('content-type')?.startsWith('text/event-stream')) return
    const decoder = new TextDecoder()
    let buffer = ''
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true })
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          const message: SseMessageSeen = { data: '' }
          const data: string[] = []
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push(line.slice(1).trim())
            else if (line.startsWith('id: ')) message.id = line.slice(4)
            else if (line.startsWith('event: ')) message.event = line.slice(7)
            else if (line.startsWith('data: ')) data.push(line.slice(6))
          }
          if (data.length) {
            message.data = data.join('\n')
            messages.push(message)
          }
          notify()
        }
      }
    } catch {
      // aborted by close()
    }
    notify()
  })()
  return {
    status: res.status,
    headers: res.headers,
    messages,
    comments,
    done,
    next: (match = () => true, timeoutMs = 5000) =>
      nextMatching(messages, waiters, match, timeoutMs, 'SSE message'),
    close: () => abort.abort(),
  }
}
