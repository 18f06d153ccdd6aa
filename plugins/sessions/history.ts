import type { Message } from 'ollama'

/**
 * History trimming. A conversation is sent whole until it would not fit the model's context window; then the
 * oldest turns are dropped first. The system prompt (leading system messages) and the newest message are
 * always kept, and a tool result never loses the assistant turn that asked for it.
 *
 * Tokens are estimated at one per 3 characters plus 4 per message: deliberately on the high side, since
 * an overflowing prompt is silently truncated by Ollama from the front, which would cut the system prompt.
 */
export const estimateTokens = (m: Pick<Message, 'content'> & { thinking?: string; tool_calls?: unknown }) =>
  4 + Math.ceil(((m.content?.length ?? 0) + (m.tool_calls ? JSON.stringify(m.tool_calls).length : 0)) / 3)

/** The room left for the prompt: the window minus what the answer may take (num_predict, or a quarter). */
export function promptBudget(window: number, numPredict?: number): number {
  const reserve = numPredict && numPredict > 0 ? Math.min(numPredict, window / 2) : Math.min(2048, window / 4)
  return Math.max(256, Math.floor(window - reserve))
}

export function trimHistory(
  messages: Message[],
  budgetTokens: number,
): { messages: Message[]; dropped: number } {
  let head = 0
  while (head < messages.length && messages[head]!.role === 'system') head++
  const system = messages.slice(0, head)
  const turns = messages.slice(head)
  let used = system.reduce((n, m) => n + estimateTokens(m), 0)
  let keepFrom = turns.length
  for (let i = turns.length - 1; i >= 0; i--) {
    const cost = estimateTokens(turns[i]!)
    // The newest message always goes, even alone over budget: without it there is nothing to answer.
    if (i < turns.length - 1 && used + cost > budgetTokens) break
    used += cost
    keepFrom = i
  }
  // A kept tool result whose assistant call was dropped would confuse the model: drop it too.
  while (keepFrom < turns.length - 1 && turns[keepFrom]!.role === 'tool') keepFrom++
  return { messages: [...system, ...turns.slice(keepFrom)], dropped: keepFrom }
}
