declare module '@wsds-keys' {
  const keySet: { id: string; keys: string[] }
  export default keySet
}
