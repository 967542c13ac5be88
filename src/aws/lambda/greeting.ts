/** Lambda entry: the protected demo service behind the authorizer. */
export { greeting as handler } from '../rest.ts'
