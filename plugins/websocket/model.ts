import { t } from 'elysia'

export const WsTicket = t.Object(
  {
    ticket: t.String({ description: 'Pass as ?ticket= on the WebSocket URL; valid once' }),
    expires_at: t.String({ format: 'date-time' }),
    expires_in_seconds: t.Integer(),
  },
  { description: 'A single-use, short-lived ticket for one WebSocket upgrade' },
)

export const MAX_GUIDANCE_CHARS = 10_000
