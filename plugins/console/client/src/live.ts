/**
 * Live streams over the server's WebSocket, resumed from the last seq after any drop (network, server restart,
 * a slow-reader close): the server replays exactly what was missed. Cookie-authenticated, same origin.
 */
import { signal } from '@preact/signals'
import { needsSignIn, online } from './api.ts'

export interface Frame {
  type: string
  seq?: number
  [key: string]: unknown
}

/** How many live streams are currently down and retrying (the offline banner shows while any is). */
export const streamsDown = signal(0)

export interface Live {
  /** Sends a JSON frame when connected; false when it could not. */
  send(frame: unknown): boolean
  close(): void
}

export interface FollowOptions {
  /**
   * Called as each socket closes, before any frame of the next one: whatever that socket showed without a seq
   * (the chat's tentative frames) is void, and the next socket resumes after the last seq. Not called after
   * close().
   */
  onClose?: (code: number) => void
}

/**
 * Follows `path` (`/ws/task-…` or `/ws/chat/sess-…`, query allowed) from `since` (undefined: the server's
 * default start). `onFrame` gets every frame; frames with a seq (events, the chat's acks) advance the resume
 * point. Closes for good on code 1000 (stream deleted) or when close() is called.
 */
export function follow(
  path: string,
  since: number | undefined,
  onFrame: (frame: Frame) => void,
  options: FollowOptions = {},
): Live {
  let last = since
  let socket: WebSocket | undefined
  let closed = false
  let down = false
  let attempt = 0
  let timer: ReturnType<typeof setTimeout> | undefined
  const setDown = (value: boolean) => {
    if (value === down) return
    down = value
    streamsDown.value += value ? 1 : -1
  }
  const open = () => {
    const url = new URL(path, location.href)
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:'
    if (last !== undefined) url.searchParams.set('since', String(last))
    const ws = new WebSocket(url)
    socket = ws
    ws.onopen = () => {
      attempt = 0
      setDown(false)
      online.value = true
    }
    ws.onmessage = (message) => {
      let frame: Frame
      try {
        frame = JSON.parse(message.data as string)
      } catch {
        return
      }
      if (typeof frame.seq === 'number') {
        if (last !== undefined && frame.seq <= last) return
        last = frame.seq
      } else if (frame.type === 'connected' && typeof frame.since === 'number' && last === undefined) {
        last = frame.since
      }
      onFrame(frame)
    }
    ws.onclose = (event) => {
      if (socket !== ws || closed) return
      options.onClose?.(event.code)
      if (event.code === 1000) return
      setDown(true)
      // A refused upgrade (401 after a sign-out elsewhere) looks like 1006: ask who we are before retrying.
      attempt++
      if (attempt === 2)
        fetch('/api/me', { credentials: 'same-origin' }).then(
          (r) => {
            if (r.status === 401) needsSignIn.value = true
          },
          () => {
            online.value = false
          },
        )
      timer = setTimeout(open, Math.min(500 * 2 ** Math.min(attempt, 4), 5000))
    }
  }
  open()
  return {
    send(frame) {
      if (socket?.readyState !== WebSocket.OPEN) return false
      socket.send(JSON.stringify(frame))
      return true
    },
    close() {
      closed = true
      clearTimeout(timer)
      setDown(false)
      socket?.close(1000)
    },
  }
}
