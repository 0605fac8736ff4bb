/** @layerfs/overlay: placeholder entry point until the package lands. */
export {};
