import { randomBytes } from 'node:crypto'
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js'
import { ErrorCode, isInitializeRequest, isJSONRPCNotification } from '@modelcontextprotocol/sdk/types.js'
import { Elysia, t } from 'elysia'
import { authenticate } from '../../src/core/auth.ts'
import { type Gantry, gantryContext, gantryOf } from '../../src/core/context.ts'
import { ErrorBody, Forbidden, HttpError, Unauthorized } from '../../src/core/errors.ts'
import { originAllowed, publicOrigin, requestIdOf } from '../../src/core/http.ts'
import type { PluginMeta } from '../../src/core/loader.ts'
import type { ServerHandle } from '../../src/core/runtime.ts'
import type { McpCall } from './call.ts'
import { CancelBoard, callKey } from './cancel.ts'
import { buildMcpServer } from './server.ts'

export const meta: PluginMeta = {
  dependsOn: ['tasks'],
  // An add-on: with the tasks plugin disabled the server starts without /mcp rather than not at all.
  optional: true,
  description:
    'Model Context Protocol over Streamable HTTP at /mcp: coding tasks, chat, agents and registry tools for Claude Desktop, Claude Code, Cursor',
  entryPoints: { mcp: '/mcp' },
}

const STATE = 'mcp'
const SESSION_ID = /^[\x21-\x7e]{1,128}$/

const rpcError = (status: number, code: number, message: string, headers: Record<string, string> = {}) =>
  Response.json({ jsonrpc: '2.0', id: null, error: { code, message } }, { status, headers })

/** The body as text, refusing past `limit` bytes even when no Content-Length announced it. */
async function readBody(request: Request, limit: number): Promise<string | undefined> {
  if (!request.body) return ''
  const reader = request.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > limit) {
      await reader.cancel().catch(() => {})
      return undefined
    }
    chunks.push(value)
  }
  return new Blob(chunks as BlobPart[]).text()
}

/** Origin, then credentials: a foreign page never learns whether a key works. API keys only, no cookies. */
async function caller(gantry: Gantry, request: Request) {
  if (!originAllowed(request, gantry))
    throw Forbidden(
      `Origin ${request.headers.get('origin')} may not use /mcp (add it to CORS_ORIGINS to allow it).`,
    )
  const user = await authenticate(gantry, request)
  if (user?.via !== 'api_key')
    throw Unauthorized('Send an API key as "Authorization: Bearer <key>" (see `npm run keys`).')
  return user
}

async function handlePost(gantry: Gantry, request: Request): Promise<Response> {
  const user = await caller(gantry, request)
  const limit = gantry.config.bodyLimitBytes
  const raw = await readBody(request, limit)
  if (raw === undefined)
    throw new HttpError(
      413,
      'payload_too_large',
      `The body is over the limit of ${limit} bytes (BODY_LIMIT_BYTES).`,
      {
        limit_bytes: limit,
      },
    )
  let parsed: unknown
  try {
    parsed = JSON.parse(raw)
  } catch {
    return rpcError(400, ErrorCode.ParseError, 'Parse error: the body is not valid JSON.')
  }
  const sent = request.headers.get('mcp-session-id')
  const session = sent && SESSION_ID.test(sent) ? sent : undefined
  const board = gantry.state.get(STATE) as CancelBoard
  const messages = Array.isArray(parsed) ? parsed : [parsed]
  for (const m of messages)
    if (isJSONRPCNotification(m) && m.method === 'notifications/cancelled') {
      const requestId = (m.params as { requestId?: unknown } | undefined)?.requestId
      if (typeof requestId === 'string' || typeof requestId === 'number')
        await board.announce(callKey(user.userId, session, requestId))
    }

  const call: McpCall = {
    gantry,
    user,
    origin: publicOrigin(request, gantry),
    session,
    board,
    requestId: requestIdOf(request) ?? 'unknown',
  }
  const server = buildMcpServer(call, gantry.version)
  const transport = new WebStandardStreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    maxRequestBodySize: limit,
  })
  await server.connect(transport)
  // A client that goes away stops what it was waiting for (not the task: that lives on in the job queue).
  request.signal.addEventListener('abort', () => void server.close().catch(() => {}), { once: true })
  ;(gantry.state.get('core:server') as ServerHandle | undefined)?.timeout(request, 0)
  const response = await transport.handleRequest(request, { parsedBody: parsed })
  // Not state: an id the client echoes so that its cancellations find their call on whichever instance holds it.
  if (messages.some((m) => isInitializeRequest(m)) && response.ok)
    response.headers.set('mcp-session-id', `mcp-${randomBytes(16).toString('base64url')}`)
  if (request.headers.get('origin')) response.headers.set('access-control-expose-headers', 'mcp-session-id')
  return response
}

const errors = { 401: ErrorBody, 403: ErrorBody, 413: ErrorBody, 415: ErrorBody }
const describe = (summary: string, description: string) => ({ summary, description })

/**
 * `/mcp`: Model Context Protocol over Streamable HTTP (stateless: any instance answers any request). The same
 * API keys as the REST API; a foreign Origin is refused.
 */
export default new Elysia({ name: 'mcp', tags: ['MCP'] })
  .use(gantryContext)
  .onStart(async (app) => {
    const gantry = gantryOf(app)
    const board = new CancelBoard(gantry)
    await board.start()
    gantry.state.set(STATE, board)
  })
  .onStop(async (app) => {
    const gantry = gantryOf(app)
    await (gantry.state.get(STATE) as CancelBoard | undefined)?.stop()
    gantry.state.delete(STATE)
  })
  .post('/mcp', ({ gantry, request }) => handlePost(gantry, request), {
    parse: 'none',
    response: {
      200: t.Any({ description: 'A JSON-RPC answer, as an SSE stream (text/event-stream)' }),
      202: t.Any(),
      400: t.Any(),
      ...errors,
    },
    detail: describe(
      'MCP request',
      'JSON-RPC requests, notifications and responses of the Model Context Protocol. Send `Accept: application/json, text/event-stream`; answers stream as Server-Sent Events, with progress notifications before the result.',
    ),
  })
  .get(
    '/mcp',
    async ({ gantry, request }) => {
      await caller(gantry, request)
      return rpcError(
        405,
        ErrorCode.ConnectionClosed,
        'This server is stateless and sends no unrequested messages, so it offers no GET stream: POST requests to /mcp.',
        { allow: 'POST, DELETE' },
      )
    },
    {
      response: { 405: t.Any(), ...errors },
      detail: describe('MCP server stream (not offered)', 'Always 405: every answer comes on its POST.'),
    },
  )
  .delete(
    '/mcp',
    async ({ gantry, request, set }) => {
      await caller(gantry, request)
      set.status = 204
      return ''
    },
    {
      response: { 204: t.Any(), ...errors },
      detail: describe('End an MCP session', 'Nothing to end: no session state is kept. Always 204.'),
    },
  )
