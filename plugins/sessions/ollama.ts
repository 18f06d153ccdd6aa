import { Ollama } from 'ollama'
import type { Gantry } from '../../src/core/context.ts'
import { ollamaFetch } from '../../src/core/metrics.ts'

/** What a generation needs to know about a model before calling it. */
export interface ModelInfo {
  name: string
  capabilities: string[]
  /** The model's trained context window (`<arch>.context_length` of /api/show). */
  contextLength: number
}

/** A failure the client is told about as `error {code, message}`; never a crash. */
export class GenerationError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message)
    this.name = 'GenerationError'
  }
}

const MODEL_INFO_TTL_MS = 60_000
const FALLBACK_CONTEXT = 4096

interface OllamaState {
  client: Ollama
  models: Map<string, { info: ModelInfo; until: number }>
}

function ollamaState(gantry: Gantry): OllamaState {
  let state = gantry.state.get('sessions:ollama') as OllamaState | undefined
  if (!state) {
    state = { client: new Ollama({ host: gantry.config.ollamaHost, fetch: ollamaFetch }), models: new Map() }
    gantry.state.set('sessions:ollama', state)
  }
  return state
}

export const ollamaClient = (gantry: Gantry) => ollamaState(gantry).client

const pullHint = (model: string) =>
  `Model "${model}" is not installed on the Ollama server. Pull it first: ollama pull ${model}`

/** Turns whatever the ollama client threw into a GenerationError with a code a client can act on. */
export function asGenerationError(err: unknown, model: string, host: string): GenerationError {
  if (err instanceof GenerationError) return err
  const e = err as { status_code?: number; message?: string; name?: string; code?: string; cause?: any }
  const message = String(e?.message ?? err)
  if (e?.status_code === 404 || /model ['"].*['"] not found/i.test(message))
    return new GenerationError('model_not_found', pullHint(model))
  if (
    e?.name === 'TypeError' ||
    /ECONNREFUSED|ECONNRESET|Unable to connect|fetch failed|socket|connection/i.test(
      `${message} ${e?.code ?? ''} ${e?.cause?.code ?? ''}`,
    )
  )
    return new GenerationError(
      'ollama_unavailable',
      `The Ollama server at ${host} is not reachable or dropped the connection (${message}).`,
    )
  return new GenerationError('ollama_error', `Ollama failed: ${message}`)
}

/** Capabilities and context window of a model, from /api/show; cached for a minute, failures never cached. */
export async function modelInfo(gantry: Gantry, model: string): Promise<ModelInfo> {
  const state = ollamaState(gantry)
  const hit = state.models.get(model)
  if (hit && hit.until > Date.now()) return hit.info
  let shown: Awaited<ReturnType<Ollama['show']>>
  try {
    shown = await state.client.show({ model })
  } catch (err) {
    throw asGenerationError(err, model, gantry.config.ollamaHost)
  }
  const modelInfo = (shown.model_info ?? {}) as unknown as Record<string, unknown>
  const key = Object.keys(modelInfo).find((k) => k.endsWith('.context_length'))
  const contextLength = Number(key ? modelInfo[key] : FALLBACK_CONTEXT) || FALLBACK_CONTEXT
  const info = { name: model, capabilities: shown.capabilities ?? [], contextLength }
  state.models.set(model, { info, until: Date.now() + MODEL_INFO_TTL_MS })
  return info
}

/** The models installed on the Ollama server, or [] when it is not reachable. */
export async function installedModels(gantry: Gantry): Promise<{ name: string; modifiedAt: Date }[]> {
  try {
    const { models } = await ollamaClient(gantry).list()
    return models.map((m) => ({ name: m.name, modifiedAt: new Date(m.modified_at) }))
  } catch {
    return []
  }
}
