import { resolve } from 'node:path'
import { defineConfig } from 'vite'

/**
 * The console's build: Preact through Vite's own JSX transform (no preset plugin), hashed files under
 * `/console/`, noVNC and highlight.js left in chunks of their own so the first page stays small.
 */
export default defineConfig({
  root: resolve(import.meta.dirname, 'client'),
  base: '/',
  publicDir: false,
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: resolve(import.meta.dirname, 'dist'),
    emptyOutDir: true,
    assetsDir: 'console',
    // noVNC uses top-level await; every browser the console supports has it.
    target: 'es2022',
    sourcemap: false,
    reportCompressedSize: false,
    modulePreload: { polyfill: false },
  },
})
