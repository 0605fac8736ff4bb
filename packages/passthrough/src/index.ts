/** @layerfs/passthrough: placeholder entry point until the package lands. */
export {};
