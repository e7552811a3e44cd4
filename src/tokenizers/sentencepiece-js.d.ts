// sentencepiece-js ships JavaScript only; these are the parts of its API this package uses.
declare module 'sentencepiece-js' {
  export class SentencePieceProcessor {
    load(path: string): Promise<void>;
    encodeIds(text: string): number[];
    encodePieces(text: string): string[];
    decodeIds(ids: number[] | Int32Array): string;
  }
  const _default: { SentencePieceProcessor: typeof SentencePieceProcessor };
  export default _default;
}
