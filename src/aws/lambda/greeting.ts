/** Lambda entry: the protected demo service behind the authorizer, and the REST API's CORS preflights. */
import { readProtocolSettings } from '../../core/settings.ts'
import { createGreeting } from '../rest.ts'

export const handler = createGreeting(readProtocolSettings(process.env).corsOrigins)
