/**
 * What bench/console measures inside the page, installed before any of the page's own scripts run (the same
 * script for the console and the bare page): when a labelled control becomes usable, when each streamed token
 * arrives on a socket and when it is painted, long tasks, and frame times while a list scrolls.
 */
import type { Page } from 'playwright-core'

/** In-page state, as `window.__probe`. */
export interface ProbeState {
  /** performance.now() of the frame after the watched control appeared (null until then). */
  interactiveAt: number | null
  /** Token → when its socket frame arrived / when the frame showing it was done. */
  arrivals: Record<string, number>
  paints: Record<string, number>
  longTasks: { start: number; duration: number }[]
}

/** The init script: runs in the page, so it may use nothing from this module's scope. */
function installProbes(watchLabel: string) {
  const probe = { interactiveAt: null as number | null, arrivals: {}, paints: {}, longTasks: [] } as any
  ;(window as any).__probe = probe
  const TOKEN = /w\d{5}/g

  // When the frame showing a DOM change has been produced. A change made inside the rendering steps (a
  // requestAnimationFrame callback, as batching pages do) is painted by this frame: a message posted now runs
  // right after it. A change made in an ordinary task is painted by the next frame: post from its rAF.
  // `rendering` is set by a rAF loop of the probe's own, which runs before the page's callbacks each frame.
  let rendering = false
  const frameLoop = () => {
    rendering = true
    const channel = new MessageChannel()
    channel.port1.onmessage = () => {
      rendering = false
    }
    channel.port2.postMessage(0)
    requestAnimationFrame(frameLoop)
  }
  requestAnimationFrame(frameLoop)
  const afterFrame = (then: (at: number) => void) => {
    const channel = new MessageChannel()
    channel.port1.onmessage = () => then(performance.now())
    channel.port2.postMessage(0)
  }
  const afterPaint = (then: (at: number) => void) =>
    rendering ? afterFrame(then) : requestAnimationFrame(() => afterFrame(then))

  new PerformanceObserver((list) => {
    for (const entry of list.getEntries())
      probe.longTasks.push({ start: entry.startTime, duration: entry.duration })
  }).observe({ type: 'longtask', buffered: true })

  // Stamp arrivals before the page's own handlers see the frame (listeners run in the order they were added).
  const stamp = (data: unknown) => {
    if (typeof data !== 'string') return
    const now = performance.now()
    for (const [token] of data.matchAll(TOKEN)) probe.arrivals[token] ??= now
  }
  const NativeSocket = window.WebSocket
  window.WebSocket = class extends NativeSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols)
      this.addEventListener('message', (e) => stamp(e.data))
    }
  }
  const NativeSource = window.EventSource
  window.EventSource = class extends NativeSource {
    constructor(url: string | URL, init?: EventSourceInit) {
      super(url, init)
      const own = this.addEventListener.bind(this)
      // Named SSE events only reach listeners for their name: stamp those the page listens to as well.
      this.addEventListener = ((type: string, listener: any, options?: any) => {
        if (type !== 'open' && type !== 'error') own(type, (e: any) => stamp(e.data))
        own(type, listener, options)
      }) as any
      own('message', (e: MessageEvent) => stamp(e.data))
    }
  }

  const labelled = (name: string): Element | null => {
    const direct = document.querySelector(`[aria-label="${name}"]`)
    if (direct) return direct
    for (const label of Array.from(document.querySelectorAll('label'))) {
      if (label.textContent?.trim() !== name) continue
      return label.control ?? (label.htmlFor ? document.getElementById(label.htmlFor) : null)
    }
    return null
  }
  let pending: string[] = []
  const seen = new Set<string>()
  const observer = new MutationObserver((records) => {
    if (probe.interactiveAt === null) {
      const control = labelled(watchLabel) as HTMLInputElement | null
      if (control?.isConnected && !control.disabled) {
        probe.interactiveAt = -1
        afterPaint((at) => {
          probe.interactiveAt = at
        })
      }
    }
    if (Object.keys(probe.arrivals).length === 0) return
    const fresh: string[] = []
    for (const record of records) {
      const nodes = record.type === 'characterData' ? [record.target] : Array.from(record.addedNodes)
      for (const node of nodes) {
        for (const [token] of (node.textContent ?? '').matchAll(TOKEN)) {
          if (seen.has(token) || probe.arrivals[token] === undefined) continue
          seen.add(token)
          fresh.push(token)
        }
      }
    }
    if (fresh.length === 0) return
    const first = pending.length === 0
    pending.push(...fresh)
    if (!first) return
    afterPaint((at) => {
      for (const token of pending) probe.paints[token] = at
      pending = []
    })
  })
  const start = () => observer.observe(document, { subtree: true, childList: true, characterData: true })
  if (document.documentElement) start()
  else document.addEventListener('readystatechange', start, { once: true })
}

/** Installs the probes in every page of the context that `page` belongs to, from its next navigation on. */
export async function addProbes(page: Page, watchLabel: string): Promise<void> {
  await page.addInitScript(installProbes, watchLabel)
}

export const probeState = (page: Page) => page.evaluate(() => (window as any).__probe as ProbeState)
/** How many tokens have been painted so far (cheap to poll). */
export const paintedCount = (page: Page) =>
  page.evaluate(() => Object.keys((window as any).__probe.paints).length)

/**
 * Scrolls the page's tallest scrollable box from top to bottom, a step each frame, for `ms`, and returns the
 * time between frames (ms) and how many rows the page held (virtualized lists keep this small).
 */
export function scrollFrames(page: Page, ms: number, step = 240) {
  return page.evaluate(
    ({ ms, step }) =>
      new Promise<{ frames: number[]; scrolled: number; scrollHeight: number; nodes: number }>((resolve) => {
        const boxes = [document.scrollingElement!, ...Array.from(document.querySelectorAll('*'))].filter(
          (e) => e.scrollHeight - e.clientHeight > 0 && getComputedStyle(e).overflowY !== 'hidden',
        )
        const box = boxes.sort((a, b) => b.scrollHeight - a.scrollHeight)[0]!
        const frames: number[] = []
        let scrolled = 0
        let last = performance.now()
        const until = last + ms
        const tick = (now: number) => {
          frames.push(now - last)
          last = now
          const before = box.scrollTop
          box.scrollTop = before + step >= box.scrollHeight - box.clientHeight ? 0 : before + step
          scrolled += Math.abs(box.scrollTop - before)
          if (now < until) requestAnimationFrame(tick)
          else
            resolve({
              frames: frames.slice(1),
              scrolled,
              scrollHeight: box.scrollHeight,
              nodes: document.getElementsByTagName('*').length,
            })
        }
        requestAnimationFrame((now) => {
          last = now
          requestAnimationFrame(tick)
        })
      }),
    { ms, step },
  )
}

/** The p-th percentile (0–100) of a list of numbers. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}
