// jsdom ships no types; bench/engine-emulators.ts uses only new JSDOM('').window.DOMParser.
declare module 'jsdom' {
  export class JSDOM {
    constructor(html: string)
    window: { DOMParser: new () => { parseFromString(html: string, type: string): { body: unknown } } }
  }
}
