import { effect, type Signal } from '@preact/signals'
import DOMPurify from 'dompurify'
import { Marked } from 'marked'
import { useEffect, useRef } from 'preact/hooks'
import { stableEnd } from './blocks.ts'

const escapeHtml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

// Model output is untrusted. Raw HTML in it is shown as the text it is (never parsed as markup), then DOMPurify
// removes whatever markup Markdown itself could produce that runs or leaves the page (javascript: links...).
const marked = new Marked({
  gfm: true,
  breaks: true,
  renderer: {
    html: ({ text }) => escapeHtml(text),
    image: ({ text }) => escapeHtml(text),
  },
})

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A') {
    node.setAttribute('rel', 'noopener noreferrer')
    node.setAttribute('target', '_blank')
  }
})

// Markdown of a huge answer or of one very long line costs seconds per parse and means nothing: plain text.
const PLAIN_LIMIT = 200_000
const LONG_LINE = /[^\n]{5000}/

export function renderMarkdown(text: string): string {
  if (text.length > PLAIN_LIMIT || LONG_LINE.test(text))
    return `<div class="plain huge" tabindex="0">${escapeHtml(text)}</div>`
  return DOMPurify.sanitize(marked.parse(text, { async: false }) as string, {
    FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'img', 'svg', 'math', 'iframe'],
  })
}

/**
 * Markdown that follows a growing text: the text signal changes per token, the DOM at most once per animation
 * frame. Finished blocks are rendered once and kept; each frame re-renders only the block still being written,
 * so painting a token costs the same at the end of a long answer as at its start.
 */
export function Markdown({ text }: { text: Signal<string> }) {
  const el = useRef<HTMLDivElement>(null)
  useEffect(() => {
    let frame = 0
    let done = ''
    let stable: HTMLDivElement | undefined
    let tail: HTMLDivElement | undefined
    const paint = () => {
      frame = 0
      const root = el.current
      if (!root) return
      const now = text.peek()
      // Anything but an extension of what is shown (a replay from the start, a corrected final text): start over.
      if (!stable || !tail || !now.startsWith(done) || now.length > 200_000) {
        root.replaceChildren()
        stable = root.appendChild(document.createElement('div'))
        tail = root.appendChild(document.createElement('div'))
        done = ''
        if (now.length > 200_000) {
          tail.innerHTML = renderMarkdown(now)
          return
        }
      }
      const end = stableEnd(now, done.length)
      if (end > done.length) {
        stable.insertAdjacentHTML('beforeend', renderMarkdown(now.slice(done.length, end)))
        done = now.slice(0, end)
      }
      tail.innerHTML = renderMarkdown(now.slice(done.length))
    }
    const dispose = effect(() => {
      void text.value
      frame ||= requestAnimationFrame(paint)
    })
    return () => {
      dispose()
      cancelAnimationFrame(frame)
    }
  }, [text])
  return <div class="md" ref={el} />
}
