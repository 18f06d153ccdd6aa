/**
 * The chat socket's frames as a client keeps them (README "The chat socket protocol"), used by the tests and
 * bench/chat: committed frames by seq; tentative ones apart until acknowledged (then committed, in order, and
 * the resume point moves to the ack's seq) or retracted (then dropped); every tentative frame dropped when the
 * socket closes. `text()` is what the client goes on showing; `last` is where it resumes (`?since=`).
 */
export interface KeptFrame {
  type: string
  seq: number
  [key: string]: unknown
}

export class ChatFrames {
  /** Committed frames in order: events as sent, acknowledged tentative frames with the seq of their ack. */
  readonly committed: KeptFrame[] = []
  /** Tentative frames not acknowledged yet, by their id, in arrival order. */
  readonly provisional = new Map<number, Record<string, any>>()
  /** Protocol violations seen (a seq out of order, an ack or retraction of unknown frames). */
  readonly problems: string[] = []
  counts = { tentative: 0, ack: 0, retract: 0, retracted: 0, dropped: 0 }
  last: number | undefined

  constructor(since?: number) {
    this.last = since
  }

  /** Takes one frame; returns true when it changed the text a reader sees. */
  apply(frame: Record<string, any>): boolean {
    if (frame.type === 'connected') {
      if (this.last === undefined && typeof frame.since === 'number') this.last = frame.since
      return false
    }
    if (typeof frame.tentative === 'number' && frame.seq === undefined) {
      this.counts.tentative++
      this.provisional.set(frame.tentative, frame)
      return true
    }
    if (frame.type === 'ack') {
      this.counts.ack++
      const ids = frame.tentative as number[]
      if (!ids.length || ids.some((id) => !this.provisional.has(id)))
        this.problems.push(`ack ${frame.seq} of unknown ${ids}`)
      if (this.last !== undefined && frame.seq <= this.last)
        this.problems.push(`ack ${frame.seq} after ${this.last}`)
      for (const id of ids) {
        const part = this.provisional.get(id)
        if (!part) continue
        this.provisional.delete(id)
        const { tentative: _, ...kept } = part
        this.committed.push({ ...kept, type: String(kept.type), seq: Number(frame.seq) })
      }
      this.last = Number(frame.seq)
      return false
    }
    if (frame.type === 'retract') {
      this.counts.retract++
      for (const id of frame.tentative as number[]) {
        if (this.provisional.delete(id)) this.counts.retracted++
        else this.problems.push(`retract of unknown ${id}`)
      }
      return true
    }
    if (typeof frame.seq === 'number') {
      if (this.last !== undefined && frame.seq !== this.last + 1)
        this.problems.push(`seq ${frame.seq} after ${this.last}`)
      this.last = frame.seq
      this.committed.push(frame as KeptFrame)
      return true
    }
    return false
  }

  /** The socket closed: nothing tentative survives it. */
  closed(): void {
    this.counts.dropped += this.provisional.size
    this.provisional.clear()
  }

  /** The text of one kind (`content`, `reasoning`) a reader sees: committed, then provisional. */
  text(type = 'content', messageId?: string): string {
    const of = (f: Record<string, any>) =>
      f.type === type && (messageId === undefined || f.message_id === messageId) ? String(f.content) : ''
    let text = ''
    for (const f of this.committed) text += of(f)
    for (const f of this.provisional.values()) text += of(f)
    return text
  }

  /** The committed text only: what the client keeps for good. */
  committedText(type = 'content', messageId?: string): string {
    return this.committed
      .filter((f) => f.type === type && (messageId === undefined || f.message_id === messageId))
      .map((f) => String(f.content))
      .join('')
  }
}
