// A simulated Ollama server speaking the real HTTP API over real sockets, so
// Gantry's tests can drive it with the real `ollama` npm client. Routes, status
// codes, error wording, NDJSON framing and default thinking mirror ollama
// v0.12.6 (server/routes.go); what the "model" answers is scripted per test.
import {
  errorJson,
  isRecord,
  lifecycleChunk,
  planGeneration,
  produceResponse,
  type Timeline,
} from './ollama-generation.ts'
import {
  type Capability,
  canonicalName,
  DEFAULT_MODELS,
  type MockModel,
  ollamaErrors,
  parseKeepAlive,
  runningEntry,
  showEntry,
  tagEntry,
} from './ollama-models.ts'

export { tokensOf } from './ollama-generation.ts'
export { type Capability, DEFAULT_MODELS, type MockModel, ollamaErrors } from './ollama-models.ts'

export interface ToolCallReply {
  name: string
  arguments: Record<string, unknown>
}

/** What the simulated model answers to one chat/generate call. Every field is optional. */
export interface Reply {
  /** Defaults to `Simulated answer to: <last user message>` (or schema-conformant JSON when `format` is set). */
  content?: string
  /** Emitted only when thinking is on: a thinking model, and `think` not false (Ollama's default). */
  thinking?: string
  tool_calls?: ToolCallReply[]
  /** Stream pace; unpaced (no timers) when absent and no server default is set. */
  tokensPerSecond?: number
  /** Emit N tokens (thinking + content), then fail: an NDJSON `{"error"}` line, or a 500 when not streaming. */
  failAfterTokens?: number
  failMessage?: string
  /** Whole-request error, sent as `{"error": message}` with this status before anything else. */
  error?: { status: number; message: string }
  /** Stream the tokens, then never send `done` until the client aborts or the server stops. */
  hang?: boolean
  /** Reset the socket after `failAfterTokens ?? 1` streamed tokens (at once when not streaming). */
  breakConnection?: boolean
  /** Wait before the first byte (response headers included). */
  delayMs?: number
  done_reason?: string
}

export type GenerationPath = '/api/chat' | '/api/generate'

export interface ScriptRequest {
  path: GenerationPath
  body: any
  /** 0-based number of this chat/generate call since start or reset() (load/unload calls excluded). */
  index: number
}

/** Returning undefined falls back to the default reply. */
export type ScriptHandler = (request: ScriptRequest) => Reply | undefined | Promise<Reply | undefined>

export interface RecordedRequest {
  method: string
  path: string
  /** Parsed JSON body; the raw text when it is not JSON; undefined when empty. */
  body: any
  at: Date
}

export interface MockOllamaOptions {
  port?: number
  hostname?: string
  models?: MockModel[]
  /** Default pace for replies that set none. */
  tokensPerSecond?: number
  version?: string
  onRequest?: (request: RecordedRequest) => void
}

export interface MockOllama {
  readonly url: string
  readonly port: number
  readonly requests: RecordedRequest[]
  readonly models: readonly MockModel[]
  /** Chat/generate responses still being produced: lets tests assert an abort was noticed. */
  readonly activeGenerations: number
  setModels(models: MockModel[]): void
  /** Decides replies once the enqueue()d ones are used up; undefined removes it. */
  script(handler: ScriptHandler | undefined): void
  enqueue(...replies: Reply[]): void
  /** Forgets requests, queued replies, the script, loaded models, and restores the initial models. */
  reset(): void
  /** Ends every open response (hanging ones included) and closes all connections. */
  stop(): Promise<void>
}

const DEFAULT_KEEP_ALIVE_MS = 5 * 60_000
const DEFAULT_NUM_CTX = 4096
const GO_REQUEST_TYPES: Record<string, string> = {
  'POST /api/show': 'ShowRequest',
  'POST /api/chat': 'ChatRequest',
  'POST /api/generate': 'GenerateRequest',
}

export async function startMockOllama(options: MockOllamaOptions = {}): Promise<MockOllama> {
  const sim = new SimulatedOllama(options)
  const server = Bun.serve({
    port: options.port ?? 0,
    hostname: options.hostname ?? '127.0.0.1',
    // Hanging replies must stay open as long as a test wants; Ollama sets no timeouts either.
    idleTimeout: 0,
    fetch: (req) => sim.handle(req),
  })
  const port = server.port ?? 0
  const host = server.hostname?.includes(':') ? `[${server.hostname}]` : server.hostname
  return {
    url: `http://${host}:${port}`,
    port,
    requests: sim.requests,
    get models() {
      return sim.models
    },
    get activeGenerations() {
      return sim.open.size
    },
    setModels: (models) => sim.setModels(models),
    script: (handler) => {
      sim.handler = handler
    },
    enqueue: (...replies) => {
      sim.queue.push(...replies)
    },
    reset: () => sim.reset(),
    stop: async () => {
      // Ending our own streams first lets them clear their timers before the sockets go.
      for (const generation of sim.open) generation.abort()
      await server.stop(true)
    },
  }
}

type ParsedBody = { value: unknown } | { error: string }
type LoadedModel = { model: MockModel; expiresAt: Date; contextLength: number }

class SimulatedOllama {
  readonly requests: RecordedRequest[] = []
  readonly queue: Reply[] = []
  readonly open = new Set<AbortController>()
  handler: ScriptHandler | undefined
  models: MockModel[]
  private generations = 0
  /** What /api/ps reports: models used since reset, like Ollama's scheduler keeps them loaded. */
  private loaded = new Map<string, LoadedModel>()

  constructor(private readonly options: MockOllamaOptions) {
    this.models = copyModels(options.models ?? DEFAULT_MODELS)
  }

  setModels(models: MockModel[]): void {
    this.models = copyModels(models)
    for (const key of this.loaded.keys()) if (!this.findModel(key)) this.loaded.delete(key)
  }

  reset(): void {
    this.requests.length = 0
    this.queue.length = 0
    this.handler = undefined
    this.generations = 0
    this.loaded.clear()
    this.models = copyModels(this.options.models ?? DEFAULT_MODELS)
  }

  async handle(req: Request): Promise<Response> {
    const received = Bun.nanoseconds()
    const path = new URL(req.url).pathname
    const text = await req.text()
    const body = parseBody(text)
    const recorded = 'value' in body ? body.value : text || undefined
    this.requests.push({ method: req.method, path, body: recorded, at: new Date() })
    this.options.onRequest?.(this.requests.at(-1)!)
    try {
      return await this.route(`${req.method} ${path}`, body, req, received)
    } catch (error) {
      // A throwing script handler surfaces like an Ollama 500 instead of a dropped socket.
      return errorJson(500, error instanceof Error ? error.message : String(error))
    }
  }

  private route(
    route: string,
    body: ParsedBody,
    req: Request,
    received: number,
  ): Response | Promise<Response> {
    switch (route) {
      case 'GET /':
      case 'HEAD /':
        return new Response('Ollama is running', { headers: { 'Content-Type': 'text/plain; charset=utf-8' } })
      case 'GET /api/version':
        return Response.json({ version: this.options.version ?? '0.12.6' })
      case 'GET /api/tags':
        return Response.json({ models: this.models.map(tagEntry) })
      case 'GET /api/ps':
        return Response.json({ models: this.runningModels() })
    }
    const goType = GO_REQUEST_TYPES[route]
    // Gin's default for unknown routes (and wrong methods): a plain-text 404.
    if (!goType)
      return new Response('404 page not found', { status: 404, headers: { 'Content-Type': 'text/plain' } })
    if ('error' in body) return errorJson(400, body.error)
    if (!isRecord(body.value)) {
      return errorJson(
        400,
        `json: cannot unmarshal ${goKind(body.value)} into Go value of type api.${goType}`,
      )
    }
    if (route === 'POST /api/show') return this.show(body.value)
    return this.generate(
      route === 'POST /api/chat' ? '/api/chat' : '/api/generate',
      body.value,
      req,
      received,
    )
  }

  private findModel(name: unknown): MockModel | undefined {
    if (typeof name !== 'string' || name === '') return undefined
    return this.models.find((m) => canonicalName(m.name) === canonicalName(name))
  }

  private show(body: Record<string, any>): Response {
    const name = body.model || body.name
    if (!name) return errorJson(400, 'model is required')
    const model = this.findModel(name)
    return model ? Response.json(showEntry(model)) : errorJson(404, ollamaErrors.modelNotFound(String(name)))
  }

  private runningModels() {
    const now = Date.now()
    return [...this.loaded.values()]
      .filter((entry) => entry.expiresAt.getTime() > now)
      .sort((a, b) => b.expiresAt.getTime() - a.expiresAt.getTime())
      .map(({ model, expiresAt, contextLength }) => runningEntry(model, expiresAt, contextLength))
  }

  // Checks run in Ollama's order: model lookup, unload, thinking, capabilities, load-only request.
  private async generate(
    path: GenerationPath,
    body: Record<string, any>,
    req: Request,
    received: number,
  ): Promise<Response> {
    const name = typeof body.model === 'string' ? body.model : ''
    if (!name && path === '/api/chat') return errorJson(400, 'model is required')
    const model = this.findModel(name)
    if (!model) return errorJson(404, ollamaErrors.modelNotFound(name))
    const keepAliveMs = parseKeepAlive(body.keep_alive)
    const loadOnly =
      path === '/api/chat' ? !(Array.isArray(body.messages) && body.messages.length > 0) : !body.prompt
    if (loadOnly && keepAliveMs === 0) {
      this.loaded.delete(canonicalName(model.name))
      return Response.json(lifecycleChunk(path, name, 'unload'))
    }
    const rejection = capabilityError(path, body, model)
    if (rejection) return rejection
    this.markLoaded(model, keepAliveMs, body.options?.num_ctx)
    if (loadOnly) return Response.json(lifecycleChunk(path, name, 'load'))

    const reply = await this.nextReply(path, body)
    if (reply.error) return errorJson(reply.error.status, reply.error.message)
    const plan = planGeneration(path, body, model, reply, this.options.tokensPerSecond)
    return this.track(req, (generation, finish) => {
      const timeline: Timeline = { received, loaded: Bun.nanoseconds(), firstToken: 0 }
      return produceResponse(path, body, plan, timeline, generation, finish)
    })
  }

  private markLoaded(model: MockModel, keepAliveMs: number | undefined, numCtx: unknown): void {
    const lifetime = keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS
    this.loaded.set(canonicalName(model.name), {
      model,
      // A negative keep_alive keeps the model loaded forever (the latest representable Date).
      expiresAt: new Date(lifetime < 0 ? 8.64e15 : Date.now() + lifetime),
      contextLength: typeof numCtx === 'number' ? numCtx : DEFAULT_NUM_CTX,
    })
  }

  private async nextReply(path: GenerationPath, body: Record<string, any>): Promise<Reply> {
    const index = this.generations++
    const queued = this.queue.shift()
    if (queued) return queued
    return (await this.handler?.({ path, body, index })) ?? {}
  }

  /** Registers an open response, aborted when its client disconnects or the server stops. */
  private track(
    req: Request,
    run: (generation: AbortController, finish: () => void) => Promise<Response>,
  ): Promise<Response> {
    const generation = new AbortController()
    const onClientGone = () => generation.abort()
    req.signal.addEventListener('abort', onClientGone, { once: true })
    if (req.signal.aborted) generation.abort()
    this.open.add(generation)
    return run(generation, () => {
      this.open.delete(generation)
      req.signal.removeEventListener('abort', onClientGone)
    })
  }
}

function capabilityError(
  path: GenerationPath,
  body: Record<string, any>,
  model: MockModel,
): Response | undefined {
  const has = (capability: Capability) => model.capabilities.includes(capability)
  // `think: false` is always allowed; true or a level ("high") needs a thinking model.
  if (body.think && !has('thinking')) return errorJson(400, ollamaErrors.thinkingUnsupported(body.model))
  if (!has('completion')) {
    return errorJson(
      400,
      ollamaErrors.completionUnsupported(body.model, path === '/api/chat' ? 'chat' : 'generate'),
    )
  }
  if (path === '/api/chat' && Array.isArray(body.tools) && body.tools.length > 0 && !has('tools')) {
    return errorJson(400, ollamaErrors.toolsUnsupported(model.name))
  }
  if (path === '/api/generate' && body.raw && (body.template || body.system || body.context?.length)) {
    return errorJson(400, 'raw mode does not support template, system, or context')
  }
  return undefined
}

function copyModels(models: readonly MockModel[]): MockModel[] {
  return models.map((model) => ({ ...model, capabilities: [...model.capabilities] }))
}

function parseBody(text: string): ParsedBody {
  if (text.trim() === '') return { error: 'missing request body' }
  try {
    // Go unmarshals `null` into an empty request struct.
    return { value: JSON.parse(text) ?? {} }
  } catch (error) {
    return {
      error: `invalid JSON in request body: ${error instanceof Error ? error.message : String(error)}`,
    }
  }
}

/** The JSON kind as Go's encoding/json names it in unmarshal errors. */
function goKind(value: unknown): string {
  if (Array.isArray(value)) return 'array'
  return typeof value === 'boolean' ? 'bool' : typeof value
}
