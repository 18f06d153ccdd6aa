import type { ComponentChildren } from 'preact'
import { useLayoutEffect, useRef, useState } from 'preact/hooks'

/**
 * A list that renders only the rows in view (fixed row height), so a timeline of thousands of events stays
 * scrollable. It keeps to the bottom while the reader is there, like a terminal.
 */
export function VirtualList<T>(props: {
  items: T[]
  rowHeight: number
  label: string
  render: (item: T, index: number) => ComponentChildren
  class?: string
}) {
  const { items, rowHeight } = props
  const box = useRef<HTMLDivElement>(null)
  const [scroll, setScroll] = useState({ top: 0, height: 320 })
  const stick = useRef(true)
  useLayoutEffect(() => {
    const el = box.current
    if (el && stick.current) el.scrollTop = el.scrollHeight
  }, [items.length])
  const first = Math.max(0, Math.floor(scroll.top / rowHeight) - 10)
  const last = Math.min(items.length, Math.ceil((scroll.top + scroll.height) / rowHeight) + 10)
  const rows = []
  for (let i = first; i < last; i++)
    rows.push(
      <li key={i} class="vrow" style={{ top: `${i * rowHeight}px`, height: `${rowHeight}px` }}>
        {props.render(items[i] as T, i)}
      </li>,
    )
  return (
    <div
      ref={box}
      class={`virtual ${props.class ?? ''}`}
      role="log"
      aria-label={props.label}
      // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling log must be reachable by keyboard
      tabIndex={0}
      onScroll={(e) => {
        const el = e.currentTarget
        stick.current = el.scrollTop + el.clientHeight >= el.scrollHeight - rowHeight
        setScroll({ top: el.scrollTop, height: el.clientHeight })
      }}
    >
      <ul class="vspace" aria-label={props.label} style={{ height: `${items.length * rowHeight}px` }}>
        {rows}
      </ul>
    </div>
  )
}
