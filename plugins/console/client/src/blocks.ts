/**
 * Where the finished blocks of a growing Markdown text end: the last blank line outside a code fence. Text
 * before it will not change as tokens arrive, so it is rendered once; only the rest is rendered again.
 */
export function stableEnd(text: string, from: number): number {
  let end = from
  let inFence = false
  let lineStart = 0
  for (let i = 0; i <= text.length; i++) {
    if (i < text.length && text[i] !== '\n') continue
    const line = text.slice(lineStart, i)
    if (/^\s{0,3}(```|~~~)/.test(line)) inFence = !inFence
    else if (!inFence && line.trim() === '' && i < text.length && lineStart >= from) end = i + 1
    lineStart = i + 1
  }
  return end
}
