import { useEffect, useRef } from 'preact/hooks'

interface Module {
  name: string
  purpose: string
  status: string
  code: string | null
  tests: string | null
  quality_score: number | null
  iterations: number
  test_report: {
    passed: number
    failed: number
    pass_rate: number
    type_check: boolean | null
    timed_out: boolean
    output: string
  } | null
}

// Highlighting a huge file would stall the page; past this it stays plain text.
const HIGHLIGHT_LIMIT = 100_000

/** Code as text, then highlighted once the highlighter's chunk has loaded (its HTML escapes the source). */
function Code({ code, label }: { code: string; label: string }) {
  const el = useRef<HTMLElement>(null)
  useEffect(() => {
    const node = el.current
    if (!node) return
    node.textContent = code
    if (code.length > HIGHLIGHT_LIMIT) return
    let live = true
    import('../highlight.ts').then(({ highlightTypeScript }) => {
      if (live) node.innerHTML = highlightTypeScript(code)
    })
    return () => {
      live = false
    }
  }, [code])
  return (
    <figure class="codefig" aria-label={label}>
      {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling box must be reachable by keyboard */}
      <pre class="code" tabIndex={0}>
        <code ref={el} class="hljs" />
      </pre>
    </figure>
  )
}

export function Modules({ modules }: { modules: Module[] }) {
  if (!modules.length) return null
  return (
    <section aria-labelledby="modules-title">
      <h2 id="modules-title">Modules</h2>
      {modules.map((m) => {
        const r = m.test_report
        return (
          <article key={m.name} class="card module" aria-label={`Module ${m.name}`}>
            <h3>
              {m.name} <span class={`badge ${m.status}`}>{m.status}</span>
            </h3>
            <p class="hint">{m.purpose}</p>
            <p>
              Quality score <strong>{m.quality_score === null ? '–' : m.quality_score.toFixed(2)}</strong> ·{' '}
              {m.iterations} iteration{m.iterations === 1 ? '' : 's'}
              {r && (
                <>
                  {' '}
                  · tests {r.passed} passed, {r.failed} failed ({Math.round(r.pass_rate * 100)}%) · type check{' '}
                  {r.type_check === null ? 'not run' : r.type_check ? 'clean' : 'errors'}
                  {r.timed_out ? ' · timed out' : ''}
                </>
              )}
            </p>
            {m.code !== null && <Code code={m.code} label={`Code of ${m.name}`} />}
            {m.tests !== null && (
              <details>
                <summary>Tests of {m.name}</summary>
                <Code code={m.tests} label={`Tests of ${m.name}`} />
              </details>
            )}
            {r?.output && (
              <details>
                <summary>Test report of {m.name}</summary>
                {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling box must be reachable by keyboard */}
                <pre class="code output" tabIndex={0}>
                  {r.output}
                </pre>
              </details>
            )}
          </article>
        )
      })}
    </section>
  )
}
