import { signal } from '@preact/signals'

/** The console's place, from the URL's hash (`#/tasks/task-…`), so console paths never clash with API paths. */
export const route = signal(parse())

function parse(): string[] {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent)
  return parts.length ? parts : ['tasks']
}

addEventListener('hashchange', () => {
  route.value = parse()
})

export const href = (...parts: string[]) => `#/${parts.map(encodeURIComponent).join('/')}`
export const go = (...parts: string[]) => {
  location.hash = href(...parts)
}
