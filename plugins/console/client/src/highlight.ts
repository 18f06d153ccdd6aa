// Loaded on demand (a chunk of its own): only TypeScript, the language tasks write.
import hljs from 'highlight.js/lib/core'
import typescript from 'highlight.js/lib/languages/typescript'

hljs.registerLanguage('typescript', typescript)

/** Highlighted HTML for code; highlight.js escapes the source, so the result holds only its own spans. */
export const highlightTypeScript = (code: string) => hljs.highlight(code, { language: 'typescript' }).value
